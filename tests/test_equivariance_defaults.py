"""Default tolerances follow the precision actually used, and failures say what to pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import geozoo
from geozoo.metrics import EquivarianceError
from geozoo.testing import assert_equivariant, equivariance_error, rot90


def _digits(size: int = 28, n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))


def test_zoo_steerable_model_passes_at_defaults() -> None:
    model = geozoo.create_model("steerable_c8_rotmnist", pretrained=True)
    result = assert_equivariant(model, _digits(), rot90(1))
    assert result.dtype == torch.float64 and result.precision == torch.float32
    assert result.max > 1e-9  # float32 weights: a float64 budget would have failed


class _NearlyInvariant(nn.Module):
    """Sums the image and adds a small orientation-dependent term."""

    def __init__(self, epsilon: float) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.scale * x.sum(dim=(1, 2, 3))
        return torch.stack([total, total + self.epsilon * x[:, 0, 0, :].sum(-1)], dim=1)


def test_float64_module_keeps_the_float64_tolerance() -> None:
    model = _NearlyInvariant(1e-6).double()
    with pytest.raises(AssertionError) as info:
        assert_equivariant(model, _digits(8), rot90(1))
    message = str(info.value)
    assert "exceeds tolerance 1.0e-09 (default for torch.float64)" in message
    measured = equivariance_error(model, _digits(8), rot90(1)).max
    suggested = float(message.split("pass tolerance=")[1])
    assert measured < suggested <= 10 * measured
    assert_equivariant(model, _digits(8), rot90(1), tolerance=suggested)


def test_float32_weights_evaluated_in_float64_name_both_dtypes() -> None:
    model = _NearlyInvariant(1e-2)
    with pytest.raises(AssertionError, match=r"default for torch.float32 weights evaluated in "):
        assert_equivariant(model, _digits(8), rot90(1))


def test_metric_takes_the_same_argument_names() -> None:
    model = geozoo.create_model("cnn_mnist", pretrained=True)
    x = _digits(40)
    metric = EquivarianceError(transform_in=[rot90(1), rot90(2)], transform_out=None)
    metric.update(model, x)
    reference = equivariance_error(model, x, transform_in=[rot90(1), rot90(2)], dtype=None)
    torch.testing.assert_close(float(metric.compute()["max"]), reference.max)
    with pytest.warns(DeprecationWarning, match="transform_in="):
        old = EquivarianceError(transforms_in=rot90(1))
    assert old.transform_in[0].name == "rot90(k=1)"
    with pytest.raises(TypeError, match="both transform_in= and its former name"):
        EquivarianceError(transform_in=rot90(1), transforms_in=rot90(2))
