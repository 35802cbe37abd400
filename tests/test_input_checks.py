"""Every zoo network checks its input the same way: range from the card, finiteness, dtype."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import geozoo
from geozoo.nn.checks import InputSpec, attach_input_check, check_input

PRETRAINED = geozoo.list_models(pretrained=True)
IMAGE_MODELS = [name for name in PRETRAINED if geozoo.card(name)["input"]["value_range"] == [0, 1]]


def _batch(name: str, seed: int = 0) -> torch.Tensor:
    shape = geozoo.card(name)["input"]["input_size"]
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, *shape, generator=generator)


def test_every_published_model_declares_an_input_spec() -> None:
    assert len(PRETRAINED) >= 9 and "e3nn_tetris" in PRETRAINED
    for name in PRETRAINED:
        spec = InputSpec.from_card(geozoo.card(name))
        assert spec.shape is not None and spec.value_range[0] < spec.value_range[1], name


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_images_in_0_255_raise_naming_the_range(name: str) -> None:
    model = geozoo.create_model(name, pretrained=True)
    x = _batch(name)
    with torch.no_grad():
        reference = model(x)
        with pytest.raises(ValueError, match=r"expected values in \[0, 1\].*divided by 255"):
            model(x * 255)
        with pytest.raises(ValueError, match="NaN"):
            model(torch.where(x > 0.5, torch.nan, x))
        # float64 arrays are cast to the weights' dtype, not refused from inside a layer
        torch.testing.assert_close(model(x.double()), reference)


def test_e3nn_tetris_with_nan_positions_raises() -> None:
    model = geozoo.create_model("e3nn_tetris", pretrained=True)
    points = torch.randn(2, 4, 3)
    assert torch.isfinite(model(points)).all()
    points[1, 2, 0] = torch.nan
    with pytest.raises(ValueError, match="expected finite input values, got 1 NaN"):
        model(points)
    # built without create_model, the network's own forward refuses NaN positions too
    from geozoo.nets.e3nn_nets import E3PointClassifier

    with pytest.raises(ValueError, match="finite point positions"):
        E3PointClassifier(mul=2, lmax=1, layers=1)(points)


def test_wrong_number_of_classes_names_the_pretrained_head() -> None:
    with pytest.raises(ValueError, match="pretrained head of 'cnn_mnist' has 10 classes"):
        geozoo.create_model("cnn_mnist", pretrained=True, num_classes=5)
    untrained = geozoo.create_model("cnn_mnist", num_classes=5)
    assert untrained(torch.rand(1, 1, 40, 40, dtype=torch.float64)).shape == (1, 5)


def test_check_follows_the_module_dtype_through_copies() -> None:
    model = geozoo.create_model("cnn_mnist", pretrained=True)
    x = _batch("cnn_mnist")
    double = copy.deepcopy(model).double()  # as geozoo.testing evaluates modules
    assert double(x).dtype == torch.float64
    assert model(x.double()).dtype == torch.float32


def test_spec_without_a_range_checks_shape_and_finiteness_only() -> None:
    spec = InputSpec(shape=(4, 3), value_range=(-math.inf, math.inf))
    big = torch.full((2, 4, 3), 1e6)
    assert check_input(big, spec) is big
    with pytest.raises(ValueError, match=r"shape \(N, 4, 3\), got shape \(2, 3, 3\)"):
        check_input(torch.zeros(2, 3, 3), spec)
    with pytest.raises(TypeError, match=r"torch\.int64"):
        check_input(torch.zeros(2, 4, 3, dtype=torch.long), spec)


def test_range_tolerance_accepts_interpolation_overshoot() -> None:
    spec = InputSpec(value_range=(0.0, 1.0))
    check_input(torch.tensor([[-0.01, 1.02]]), spec)
    with pytest.raises(ValueError, match="pass unnormalised images"):
        check_input(torch.tensor([[-0.4, 0.9]]), spec)


def test_attaching_twice_keeps_one_check() -> None:
    layer = torch.nn.Linear(3, 2)
    attach_input_check(layer, InputSpec(value_range=(0.0, 1.0)))
    attach_input_check(layer, InputSpec(value_range=(0.0, 10.0)))
    assert len(layer._forward_pre_hooks) == 1
    layer(torch.full((1, 3), 5.0))
