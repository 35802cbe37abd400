"""Prompts with verifiable answers built from MNIST digits: images of several digits side by
side, whose answer is their sum."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch.utils.data import TensorDataset

from geozoo.data.base import InMemoryDataModule
from geozoo.data.mnist import stratified_split
from geozoo.data.mnist_sources import resolve_mnist

__all__ = ["DigitSumDataModule", "compose_digits"]


def compose_digits(
    images: np.ndarray, labels: np.ndarray, count: int, num_digits: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` images ``(count, 1, 28, 28 * num_digits)`` in [0, 1] of ``num_digits`` digits
    drawn uniformly (seeded) from ``images``, and the sums of their labels."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(labels), size=(count, num_digits))
    strip = np.concatenate([images[index[:, j]] for j in range(num_digits)], axis=-1)
    pictures = torch.from_numpy(np.ascontiguousarray(strip)).float().div_(255.0).unsqueeze(1)
    return pictures, torch.from_numpy(labels[index].sum(-1).astype(np.int64))


class DigitSumDataModule(InMemoryDataModule):
    """Digit-sum prompts from disjoint pools of MNIST digits.

    The digits are split as :class:`geozoo.data.MNISTDataModule` splits them (with the offline
    digits, 1,000 stratified held-out test digits, then a stratified validation fraction), so
    the held-out prompts are made of digits no training step has seen.  Training batches are
    ``(images, sums, labelled)``: a seeded ``labelled_fraction`` of the training prompts carry
    their answer for a supervised warm-up, the others are prompts for RL, whose answer only the
    verifier reads.  Validation and test batches are ``(images, sums)``.

    Args:
        num_digits: digits per image (sums up to ``9 * num_digits``).
        train_prompts, val_prompts, test_prompts: prompts per split.
        labelled_fraction: share of the training prompts marked as labelled.
        source, data_dir, download: the MNIST source (see ``resolve_mnist``).
        offline_test_size: held-out digits when the source has no test split.
        val_fraction: share of the remaining digits kept for validation prompts.
        batch_size, eval_batch_size, num_workers, seed: loader settings and the seed of every
            split and composition.
    """

    test_set_names = ("clean",)

    def __init__(
        self,
        num_digits: int = 2,
        train_prompts: int = 4000,
        val_prompts: int = 256,
        test_prompts: int = 500,
        labelled_fraction: float = 0.25,
        source: Literal["auto", "idx", "cache", "download", "offline"] = "offline",
        data_dir: str | None = None,
        download: bool = False,
        offline_test_size: int = 1000,
        val_fraction: float = 0.1,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, seed)
        if not 0.0 <= labelled_fraction <= 1.0:
            raise ValueError(f"labelled_fraction must be in [0, 1], got {labelled_fraction}")
        if num_digits < 1:
            raise ValueError(f"num_digits must be >= 1, got {num_digits}")
        self.num_digits = num_digits
        self.sizes = {"train": train_prompts, "val": val_prompts, "test": test_prompts}
        self.labelled_fraction = labelled_fraction
        self.source = source
        self.data_dir = data_dir
        self.download = download
        self.offline_test_size = offline_test_size
        self.val_fraction = val_fraction
        self.source_used: str | None = None

    def build_datasets(self) -> dict[str, TensorDataset]:
        digits = resolve_mnist(self.data_dir, self.source, self.download)
        self.source_used = digits.source
        images, labels = digits.train_images, digits.train_labels
        if digits.test_images is None:
            rest, held_out = stratified_split(labels, self.offline_test_size, self.seed)
            pools = {"test": (images[held_out], labels[held_out])}
            images, labels = images[rest], labels[rest]
        else:
            pools = {"test": (digits.test_images, digits.test_labels)}
        train_idx, val_idx = stratified_split(
            labels, round(self.val_fraction * len(labels)), self.seed + 1
        )
        pools["train"] = (images[train_idx], labels[train_idx])
        pools["val"] = (images[val_idx], labels[val_idx])
        made = {
            split: compose_digits(*pools[split], size, self.num_digits, self.seed + 10 + i)
            for i, (split, size) in enumerate(self.sizes.items())
        }
        count = self.sizes["train"]
        labelled = torch.zeros(count, dtype=torch.bool)
        chosen = np.random.default_rng(self.seed + 20).permutation(count)
        labelled[chosen[: round(self.labelled_fraction * count)]] = True
        return {
            "train": TensorDataset(*made["train"], labelled),
            "val": TensorDataset(*made["val"]),
            "test_clean": TensorDataset(*made["test"]),
        }
