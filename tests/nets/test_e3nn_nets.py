"""E(3) networks: equivariance through geozoo.testing in float32 and float64, shapes, errors."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("e3nn")

from geozoo.data.pointclouds import TETRIS_MIRROR, tetris_dataset
from geozoo.nets.e3nn_nets import E3TensorRegressor, e3nn_tetris
from geozoo.testing import (
    Transform,
    assert_equivariant,
    compose,
    conjugate,
    default_dtype,
    permute_points,
    random_orthogonal_3d,
    translate_points,
)

SMALL = {"mul": 2, "lmax": 2, "layers": 2}


def _logit_action(model, improper: bool) -> Transform:
    perm = model.reflection_permutation() if improper else list(range(model.num_classes))
    return Transform(lambda logits: logits[:, perm], f"logit permutation {perm}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tetris_classifier_is_e3_equivariant(dtype):
    torch.manual_seed(0)
    with default_dtype(dtype):  # constants built in the evaluation dtype
        model = e3nn_tetris(**SMALL)
    x, _ = tetris_dataset(2, seed=0, group="o3", dtype=dtype)
    assert model.reflection_permutation() == list(TETRIS_MIRROR)
    tolerance = {torch.float32: 1e-4, torch.float64: 1e-9}[dtype]
    for seed, improper in [(0, False), (1, True), (2, True)]:
        g = random_orthogonal_3d(seed, improper=improper)
        moved = compose(translate_points([3.0, -1.0, 2.0]), g)
        assert_equivariant(
            model, x, moved, _logit_action(model, improper), dtype=dtype, tolerance=tolerance
        )
    assert_equivariant(model, x, permute_points([2, 0, 3, 1]), dtype=dtype, tolerance=tolerance)


def test_chirality_is_detected_not_ignored():
    # with reflections the chiral logits must swap: a model outputting only scalars could not
    torch.manual_seed(0)
    model = e3nn_tetris(**SMALL).double()
    x, _ = tetris_dataset(1, seed=0, group="none", dtype=torch.float64)
    g = random_orthogonal_3d(3, improper=True)
    with pytest.raises(AssertionError):
        assert_equivariant(model, x, g)  # plain invariance is wrong for the chiral pair
    logits = model(x)
    assert (logits[:, 0] - logits[:, 1]).abs().max() > 1e-6  # pseudoscalar channel is live


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensor_regressor_transforms_as_rank_two_tensor(dtype):
    torch.manual_seed(1)
    with default_dtype(dtype):
        model = E3TensorRegressor(**SMALL)
    positions = torch.randn(4, 5, 3, dtype=dtype)
    masses = torch.rand(4, 5, dtype=dtype) + 0.5
    out = model(positions, masses)
    assert out.shape == (4, 3, 3)
    assert torch.allclose(out, out.transpose(-1, -2), atol=1e-6)
    tolerance = {torch.float32: 1e-4, torch.float64: 1e-9}[dtype]
    for seed in range(2):
        g = random_orthogonal_3d(seed)
        assert_equivariant(
            lambda p: model(p, masses),
            positions,
            compose(translate_points([1.0, 2.0, -3.0]), g),
            conjugate(g),
            dtype=dtype,
            tolerance=tolerance,
        )


def test_bad_inputs_are_reported():
    model = e3nn_tetris(**SMALL)
    with pytest.raises(ValueError, match=r"expected positions of shape \(B, K, 3\)"):
        model(torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="chiral_pairs"):
        e3nn_tetris(chiral_pairs=((0, 0),))
    regressor = E3TensorRegressor(**SMALL)
    with pytest.raises(ValueError, match="per-point scalars"):
        regressor(torch.zeros(2, 4, 3))


@pytest.mark.slow
def test_zoo_eval_reproduces_tetris_card():
    from geozoo.cli import main
    from geozoo.zoo import models_dir

    if not (models_dir() / "e3nn_tetris" / "config.json").is_file():
        pytest.skip("e3nn_tetris is not published")
    assert main(["zoo", "eval", "e3nn_tetris"]) == 0
