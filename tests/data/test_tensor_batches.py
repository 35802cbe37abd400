"""Whole-tensor minibatches: the same batches as a DataLoader, rank shards, and through a
RegressionTask the same losses and epoch logs as the DataLoader path with per-step logging."""

from __future__ import annotations

import functools
import logging
import warnings

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from geozoo.data.symmetry_tasks import ModifiedInertiaDataModule
from geozoo.data.tensor_batches import TensorBatches
from geozoo.nets.equivariant_mlp import EquivariantMLP
from geozoo.objectives import MeanSquaredError, MixedSymmetryRegularizer
from geozoo.tasks import RegressionTask


def test_shuffled_batches_match_a_dataloader_on_the_same_seed() -> None:
    x, y = torch.randn(23, 3), torch.randn(23, 1)
    torch.manual_seed(5)
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True)
    expected = [b for _ in range(2) for b in loader]
    after_loader = torch.rand(())
    torch.manual_seed(5)
    fast = TensorBatches(x, y, batch_size=5, shuffle=True)
    got = [b for _ in range(2) for b in fast]
    assert len(fast) == len(loader) == 5 and len(got) == len(expected)
    for (xa, ya), (xb, yb) in zip(got, expected):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(torch.rand(()), after_loader)  # the global generator advanced alike


def test_unshuffled_and_rank_shards() -> None:
    x = torch.arange(10.0)[:, None]
    assert [b[0].flatten().tolist() for b in TensorBatches(x, batch_size=4)] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]
    torch.manual_seed(0)
    shards = [TensorBatches(x, batch_size=3, shuffle=True, rank=r, world_size=3) for r in range(3)]
    seen = []
    for shard in shards:
        torch.manual_seed(1)  # every rank draws the same permutation ...
        seen.append(torch.cat([b[0] for b in shard]).flatten())
    assert [len(s) for s in seen] == [s.local_examples for s in shards] == [4, 3, 3]
    assert sorted(torch.cat(seen).tolist()) == list(range(10))  # ... and takes a disjoint share
    with pytest.raises(ValueError, match="same first dimension"):
        TensorBatches(x, torch.zeros(3), batch_size=2)
    with pytest.raises(ValueError, match="rank < world_size"):
        TensorBatches(x, batch_size=2, rank=2, world_size=2)


class _Losses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def _fit(fast: bool, log_every: int = 3) -> tuple[list[float], dict[str, float], dict]:
    L.seed_everything(0, verbose=False)
    data = ModifiedInertiaDataModule(
        num_train=120, num_val=40, num_test=40, batch_size=50, seed=3, tensor_batches=fast
    )
    network = EquivariantMLP([5, 5], [0, 0, 1], hidden=(4, 2, 1), num_blocks=1, bilinear=(2, 2))
    regularizer = MixedSymmetryRegularizer(
        ["o3", "o2_x", "o2_z"], init_strength=[0.0, 1.0, 1.0], adjust_at=2, window=2
    )
    task = RegressionTask(
        network,
        [MeanSquaredError(), regularizer],
        optimizer=functools.partial(torch.optim.Adam, lr=1e-2),
        step_logs=not fast,
    )
    losses = _Losses()
    trainer = L.Trainer(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[losses],
        num_sanity_val_steps=0,
        log_every_n_steps=log_every,  # 3 = one epoch: the fast path logs every epoch's means
        accelerator="cpu",
        devices=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        trainer.fit(task, data)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return losses.losses, metrics, regularizer.strength_dict()


def test_fast_path_gives_the_dataloader_path_losses_and_logs() -> None:
    slow_losses, slow_logs, slow_strengths = _fit(fast=False)
    fast_losses, fast_logs, fast_strengths = _fit(fast=True)
    assert len(fast_losses) == len(slow_losses) == 9  # 3 epochs of 3 batches
    torch.testing.assert_close(fast_losses, slow_losses, rtol=1e-5, atol=1e-6)
    assert fast_strengths == pytest.approx(slow_strengths, rel=1e-5)
    assert fast_strengths["o2_x"] != 1.0  # the adjustment happened on both paths
    # the epoch means logged once per epoch equal Lightning's per-step epoch aggregation
    for key in ("train/loss_epoch", "train/mse", "train/mixed_symmetry/R_o2_z_epoch", "val/mse"):
        fast_key = key.removesuffix("_epoch")
        assert fast_logs[fast_key] == pytest.approx(slow_logs[key], rel=1e-5), key
    assert not any(k.endswith("_step") for k in fast_logs)


def test_fast_path_pools_the_steps_between_logs() -> None:
    losses, logs, _ = _fit(fast=True, log_every=50)  # fewer steps than that: one log at the end
    sizes = [50, 50, 20] * 3
    expected = sum(b * v for b, v in zip(sizes, losses)) / sum(sizes)
    assert logs["train/loss"] == pytest.approx(expected, rel=1e-5)
