"""geoopt ManifoldParameter layers: constraints held by Riemannian optimisers, from Python and
from YAML through the geozoo CLI (ClassificationTask and RegressionTask)."""

from __future__ import annotations

import functools
import inspect

import geoopt
import pytest
import torch
import yaml

from geozoo.cli import build_cli
from geozoo.nn import RiemannianAdam
from geozoo.nn.riemannian import (
    MahalanobisDistance,
    OrthogonalLinear,
    OrthogonalMLP,
    manifold_violation,
)

# Cayley / exponential-map retractions keep the constraint to float32 rounding after every
# step; 1e-5 leaves room for a few hundred steps of accumulated rounding.
ON_MANIFOLD = 1e-5


def test_layers_against_closed_forms():
    torch.manual_seed(0)
    up = OrthogonalLinear(5, 9, bias=False)
    x = torch.randn(7, 5)
    assert torch.allclose(up(x).norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # isometry
    down = OrthogonalLinear(9, 4, bias=False)
    w = down.weight
    assert torch.allclose(w @ w.T, torch.eye(4), atol=1e-5)  # orthonormal rows
    metric = MahalanobisDistance(3)
    with torch.no_grad():
        a = torch.randn(3, 3)
        metric.metric.copy_(a @ a.T + 3 * torch.eye(3))
    p, q = torch.randn(6, 3), torch.randn(6, 3)
    brute = torch.stack([(p[i] - q[i]) @ metric.metric @ (p[i] - q[i]) for i in range(6)])
    assert torch.allclose(metric(p, q), brute, atol=1e-5)
    assert max(manifold_violation(torch.nn.ModuleList([up, down, metric])).values()) < 1e-5
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 5\) inputs"):
        up(torch.zeros(2, 4))


def _procrustes(optimizer_cls, steps: int = 60):
    """Fit an orthogonal map to a rotated point set; returns (first loss, last loss, layer)."""
    torch.manual_seed(1)
    layer = OrthogonalLinear(6, 6, bias=False)
    target, _ = torch.linalg.qr(torch.randn(6, 6))
    x = torch.randn(64, 6)
    y = x @ target.T
    metric = MahalanobisDistance(6)
    optimizer = optimizer_cls([*layer.parameters(), *metric.parameters()], lr=0.05)
    losses = []
    for _ in range(steps):
        loss = metric(layer(x), y).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses[0], losses[-1], torch.nn.ModuleList([layer, metric])


def test_riemannian_adam_keeps_parameters_on_their_manifolds():
    first, last, modules = _procrustes(geoopt.optim.RiemannianAdam)
    assert last < 0.5 * first
    violation = manifold_violation(modules)
    assert max(violation.values()) < ON_MANIFOLD, violation
    # the same loop with Euclidean Adam leaves the Stiefel manifold: the check has teeth
    _, _, euclidean = _procrustes(torch.optim.Adam)
    assert manifold_violation(euclidean)["0.factor"] > 1e-3


def _fit(tmp_path, config: dict, steps: int):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return build_cli(
        [
            "fit",
            "--config",
            str(path),
            f"--trainer.max_steps={steps}",
            "--trainer.accelerator=cpu",
            "--trainer.logger=false",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.limit_val_batches=0",
            "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={tmp_path}",  # the saved config.yaml goes here
        ]
    )


RIEMANNIAN_ADAM = {"class_path": "geozoo.nn.RiemannianAdam", "init_args": {"lr": 0.01}}


def test_classification_task_with_riemannian_adam_from_yaml(tmp_path):
    from geozoo.data.pointclouds import tetris_dataset

    config = {
        "seed_everything": 0,
        "model": {
            "class_path": "geozoo.tasks.ClassificationTask",
            "init_args": {
                "network": {
                    "class_path": "geozoo.nn.riemannian.OrthogonalMLP",
                    "init_args": {"in_features": 12, "hidden": [32, 32], "num_classes": 8},
                },
                "num_classes": 8,
                "optimizer": RIEMANNIAN_ADAM,
            },
        },
        "data": {
            "class_path": "geozoo.data.TetrisDataModule",
            "init_args": {"train_copies": 16, "train_group": "so3", "batch_size": 32},
        },
    }
    x, y = tetris_dataset(16, seed=1, group="so3")
    torch.manual_seed(0)
    before = torch.nn.functional.cross_entropy(OrthogonalMLP(12, (32, 32), 8)(x), y)
    cli = _fit(tmp_path, config, steps=40)
    assert type(cli.trainer.optimizers[0]) is RiemannianAdam
    assert cli.trainer.optimizers[0].defaults["lr"] == 0.01
    network = cli.model.network
    with torch.no_grad():
        after = torch.nn.functional.cross_entropy(network(x), y)
    assert after < 0.8 * before
    violation = manifold_violation(network)
    assert len(violation) == 2 and max(violation.values()) < ON_MANIFOLD, violation


@pytest.mark.slow
def test_regression_task_with_riemannian_adam_from_yaml(tmp_path):
    pytest.importorskip("e3nn")
    config = {
        "seed_everything": 0,
        "model": {
            "class_path": "geozoo.tasks.RegressionTask",
            "init_args": {
                "network": {
                    "class_path": "geozoo.nets.E3TensorRegressor",
                    "init_args": {"mul": 2, "lmax": 2, "layers": 1},
                },
                "optimizer": RIEMANNIAN_ADAM,
            },
        },
        "data": {
            "class_path": "geozoo.data.InertiaDataModule",
            "init_args": {"train_size": 64, "val_size": 8, "test_size": 8, "batch_size": 16},
        },
    }
    from geozoo.data.pointclouds import inertia_dataset

    positions, masses, inertia = inertia_dataset(64, seed=1)
    cli = _fit(tmp_path, config, steps=12)
    assert type(cli.trainer.optimizers[0]) is RiemannianAdam
    network = cli.model.network.eval()
    with torch.no_grad():
        after = torch.nn.functional.mse_loss(network(positions, masses), inertia)
    torch.manual_seed(0)
    from geozoo.nets.e3nn_nets import E3TensorRegressor

    fresh = E3TensorRegressor(mul=2, lmax=2, layers=1).eval()
    with torch.no_grad():
        before = torch.nn.functional.mse_loss(fresh(positions, masses), inertia)
    assert after < before


def test_riemannian_adam_is_geoopts_with_an_explicit_signature():
    """The subclass names Adam's parameters (what jsonargparse needs) and steps exactly as
    geoopt's class with the same arguments."""
    parameters = inspect.signature(RiemannianAdam.__init__).parameters
    assert list(parameters)[:7] == [
        "self",
        "params",
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "amsgrad",
    ]
    assert parameters["stabilize"].kind is inspect.Parameter.KEYWORD_ONLY
    assert not any(p.kind is p.VAR_POSITIONAL for p in parameters.values())
    kwargs = {"betas": (0.8, 0.99), "weight_decay": 0.01, "stabilize": 2}
    ours = _procrustes(functools.partial(RiemannianAdam, **kwargs))[2]
    theirs = _procrustes(functools.partial(geoopt.optim.RiemannianAdam, **kwargs))[2]
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
