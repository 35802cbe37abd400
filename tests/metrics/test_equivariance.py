"""EquivarianceError agrees with geozoo.testing.equivariance_error over streamed batches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geozoo.metrics.equivariance import EquivarianceError
from geozoo.testing import equivariance_error, rot90, translate


def test_streaming_matches_one_shot_and_reset():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 3, padding=1).double().eval()
    x = torch.rand(12, 1, 8, 8, dtype=torch.float64)
    transforms = [rot90(1), rot90(2)]
    metric = EquivarianceError(transforms, transforms)
    for chunk in x.split(5):  # uneven batches: 5, 5, 2
        metric.update(conv, chunk)
    value = metric.compute()
    reference = equivariance_error(conv, x, transforms, transforms)
    assert float(value["max"]) == pytest.approx(reference.max, rel=1e-12)
    assert float(value["mean"]) == pytest.approx(reference.mean, rel=1e-12)
    assert int(metric.count) == 24
    assert reference.max > 0.1  # a generic conv is far from rotation equivariant
    metric.reset()
    with pytest.raises(RuntimeError, match="before any update"):
        metric.compute()


def test_equivariant_function_gives_zero_and_states_are_fixed_size():
    circ = nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular").eval()
    metric = EquivarianceError(translate(2, 1), translate(2, 1))
    for _ in range(3):
        metric.update(circ, torch.rand(4, 1, 8, 8))
    assert float(metric.compute()["max"]) < 1e-5
    assert all(getattr(metric, name).numel() == 1 for name in ("error_sum", "error_max", "count"))


def test_merge_state_is_sum_and_max():
    f = nn.Linear(4, 4).double()
    t = type(rot90(1))(lambda v: v.flip(-1), "reverse")
    a, b = EquivarianceError(t, t), EquivarianceError(t, t)
    xa, xb = torch.randn(3, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    a.update(f, xa)
    b.update(f, xb)
    a.merge_state(b)
    ref = equivariance_error(f, torch.cat([xa, xb]), t, t)
    assert float(a.compute()["max"]) == pytest.approx(ref.max, rel=1e-12)
    assert float(a.compute()["mean"]) == pytest.approx(ref.mean, rel=1e-12)


def test_mismatched_transform_lists():
    with pytest.raises(ValueError, match="2 input transforms but 1 output"):
        EquivarianceError([rot90(1), rot90(2)], [rot90(1)])
