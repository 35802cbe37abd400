"""pass@k against brute-force enumeration of k-subsets, and exact rationals for large n."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch

from geozoo.metrics import PassAtK, pass_at_k


def _brute(n: int, c: int, k: int) -> float:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 3, 6, 8])
def test_pass_at_k_equals_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert float(pass_at_k(n, c, k)) == pytest.approx(_brute(n, c, k), abs=1e-12)


def test_pass_at_k_large_n_is_exact():
    n, c, k = 100_000, 3, 500
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert float(pass_at_k(n, c, k)) == pytest.approx(float(exact), rel=1e-9)
    tiny = 1 - Fraction(math.comb(n - 1, 1), math.comb(n, 1))  # 1e-5, no cancellation
    assert float(pass_at_k(n, 1, 1)) == pytest.approx(float(tiny), rel=1e-9)


def test_pass_at_k_vectorised_and_errors():
    values = pass_at_k(torch.tensor([8, 8, 8]), torch.tensor([0, 1, 8]), 2)
    torch.testing.assert_close(values, torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="n >= k"):
        pass_at_k(2, 1, 3)
    with pytest.raises(ValueError, match=r"\[0, n\]"):
        pass_at_k(4, 5, 1)


def test_pass_at_k_metric_accumulates():
    metric = PassAtK(k=2)
    metric.update(torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool))
    metric.update(torch.tensor([[1, 1, 0, 0]], dtype=torch.bool))
    expected = (_brute(4, 1, 2) + 0.0 + _brute(4, 2, 2)) / 3
    assert float(metric.compute()) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="problems, n samples"):
        metric.update(torch.ones(3, dtype=torch.bool))
