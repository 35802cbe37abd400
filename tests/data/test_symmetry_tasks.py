"""Generated mixed-symmetry tasks: their exact and broken symmetries, checked on transformed
inputs in float64, and reproducible data modules."""

from __future__ import annotations

import pytest
import torch

from geozoo.data.symmetry_tasks import (
    CosineSimilarityDataModule,
    ModifiedInertiaDataModule,
    MotionForecastingDataModule,
    cosine_similarity_target,
    modified_inertia,
    modified_inertia_target,
    motion_forecasting,
    simulate_trajectories,
)
from geozoo.groups.representations import Scalar, Vector, get_group, tensor


def _g(name: str, n: int, seed: int = 0) -> torch.Tensor:
    return get_group(name).sample(n, torch.Generator().manual_seed(seed), torch.float64)


def _inertia_gap(group: str, eps: float) -> float:
    x, _ = modified_inertia(32, eps=eps, generator=torch.Generator().manual_seed(0))
    x = x.double()
    rep_in = 5 * Scalar + 5 * Vector
    g = _g(group, 32)
    lhs = modified_inertia_target(rep_in.act(g, x), eps)
    rhs = tensor(2).act(g, modified_inertia_target(x, eps))
    return float((lhs - rhs).abs().max())


def test_modified_inertia_symmetries() -> None:
    assert _inertia_gap("o2_z", 0.3) < 1e-10  # exact O(2) about the axis
    assert _inertia_gap("o3", 0.3) > 1e-2  # O(3) only approximately
    assert _inertia_gap("o2_x", 0.3) > 1e-2
    assert _inertia_gap("o3", 0.0) < 1e-10  # eps = 0 is the plain inertia tensor


def test_modified_inertia_matches_closed_form() -> None:
    x, y = modified_inertia(4, eps=0.3, generator=torch.Generator().manual_seed(1))
    m, r = x[:, :5].double(), x[:, 5:].double().reshape(4, 5, 3)
    inertia = torch.zeros(4, 3, 3, dtype=torch.float64)
    for i in range(5):  # brute force sum over the masses
        ri = r[:, i]
        inertia += m[:, i, None, None] * (
            (ri * ri).sum(-1)[:, None, None] * torch.eye(3, dtype=torch.float64)
            - ri[:, :, None] * ri[:, None, :]
        )
    expected = inertia.clone()
    expected[:, :, 2] += 0.3 * inertia[:, :, 2]
    torch.testing.assert_close(y.double().reshape(4, 3, 3), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("variant", "rotation_invariant", "scale_invariant"),
    [("both", True, True), ("rotation_only", True, False), ("scale_only", False, True)],
)
def test_cosine_similarity_variants(variant, rotation_invariant, scale_invariant) -> None:
    x = torch.randn(64, 9, dtype=torch.float64)
    y = cosine_similarity_target(x, variant)
    rotated = cosine_similarity_target((3 * Vector).act(_g("so3", 64), x), variant)
    scaled = cosine_similarity_target(2.5 * x, variant)
    assert (float((rotated - y).abs().max()) < 1e-10) == rotation_invariant
    assert (float((scaled - y).abs().max()) < 1e-10) == scale_invariant


def test_motion_dynamics_symmetries() -> None:
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    vel = torch.randn(16, 3, generator=gen, dtype=torch.float64) + torch.tensor([0, 0, 5.0])

    def gap(group: str, drift: float) -> float:
        g = _g(group, 16, 3)
        a = simulate_trajectories(pos, vel, 8, drift=drift)
        b = simulate_trajectories(
            (g @ pos[..., None])[..., 0], (g @ vel[..., None])[..., 0], 8, drift=drift
        )
        return float((b - torch.einsum("nij,ntj->nti", g, a)).abs().max())

    assert gap("o2_z", drift=0.0) < 1e-10  # gravity along z keeps O(2) about z
    assert gap("o2_z", drift=0.5) > 1e-3  # the horizontal drift breaks it slightly
    assert gap("o2_x", drift=0.0) > 1e-1  # gravity breaks the other axes


def test_motion_forecasting_layout() -> None:
    x, y = motion_forecasting(10, generator=torch.Generator().manual_seed(0))
    assert x.shape == (10, 18) and y.shape == (10, 18)
    torch.testing.assert_close(x[:, -3:], torch.zeros(10, 3))  # centred on the last observation


@pytest.mark.parametrize(
    "module",
    [
        lambda: ModifiedInertiaDataModule(num_train=20, num_val=10, num_test=10, seed=3),
        lambda: CosineSimilarityDataModule(
            variant="scale_only", num_train=20, num_val=10, num_test=10, seed=3
        ),
        lambda: MotionForecastingDataModule(num_train=20, num_val=10, num_test=10, seed=3),
    ],
)
def test_data_modules_are_reproducible(module) -> None:
    a, b = module(), module()
    a.setup()
    b.setup()
    xa, ya = a.splits["train"].tensors
    xb, yb = b.splits["train"].tensors
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert len(a.splits["val"]) == 10 and len(a.splits["test"]) == 10
    assert xa.shape[1] == a.rep_in.size(3) and ya.shape[1] == a.rep_out.size(3)
    batch = next(iter(a.train_dataloader()))
    assert batch[0].shape[1] == a.rep_in.size(3)


def test_inertia_targets_are_normalised_by_one_scalar() -> None:
    dm = ModifiedInertiaDataModule(num_train=200, num_val=10, num_test=10, seed=0)
    dm.setup()
    _, y = dm.splits["train"].tensors
    assert dm.target_scale > 1.0
    torch.testing.assert_close(y.square().mean(), torch.tensor(1.0), rtol=1e-4, atol=1e-4)
