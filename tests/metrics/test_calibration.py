"""Calibration error against a brute-force loop and torchmetrics."""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from geozoo.metrics.calibration import (
    calibration_bins,
    expected_calibration_error,
    reliability_diagram,
)

matplotlib.use("Agg")


def _brute_force(probs: torch.Tensor, targets: torch.Tensor, n_bins: int, norm: str) -> float:
    """Guo et al. 2017 by hand: bins ((m-1)/M, m/M], confidence 0 in the first bin."""
    rows = probs.tolist()
    members: list[list[tuple[float, float]]] = [[] for _ in range(n_bins)]
    for row, y in zip(rows, targets.tolist(), strict=True):
        conf = max(row)
        pred = row.index(conf)
        m = max(1, math.ceil(conf * n_bins - 1e-12)) - 1
        members[m].append((conf, float(pred == y)))
    n = len(rows)
    gaps = []
    for bucket in members:
        if bucket:
            acc = sum(c for _, c in bucket) / len(bucket)
            conf = sum(c for c, _ in bucket) / len(bucket)
            gaps.append((len(bucket) / n, abs(acc - conf)))
    if norm == "l1":
        return sum(w * g for w, g in gaps)
    if norm == "l2":
        return math.sqrt(sum(w * g * g for w, g in gaps))
    return max(g for _, g in gaps)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [1, 7, 15])
def test_matches_brute_force(norm: str, n_bins: int) -> None:
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(300, 6, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 6, (300,), generator=g)
    probs = torch.softmax(logits, -1)
    want = _brute_force(probs, targets, n_bins, norm)
    # torchmetrics bins in float32; the per-bin statistics here are float64
    assert expected_calibration_error(probs, targets, n_bins, norm) == pytest.approx(want, abs=1e-6)
    assert float(calibration_bins(probs, targets, n_bins).error(norm)) == pytest.approx(
        want, abs=1e-12
    )
    # logits are detected and converted
    assert expected_calibration_error(logits, targets, n_bins, norm) == pytest.approx(
        want, abs=1e-6
    )


def test_agrees_with_torchmetrics_away_from_bin_edges() -> None:
    g = torch.Generator().manual_seed(1)
    logits = 2 * torch.randn(500, 10, generator=g)
    targets = torch.randint(0, 10, (500,), generator=g)
    probs = torch.softmax(logits, -1)
    assert probs.max(-1).values.lt(1).all()
    for norm in ("l1", "max"):
        ref = multiclass_calibration_error(probs, targets, 10, n_bins=15, norm=norm).item()
        assert expected_calibration_error(probs, targets, 15, norm) == pytest.approx(ref, abs=1e-6)


def test_known_cases() -> None:
    # all confident and right: ECE = 1 - 1 = 0; all confident (0.9) and wrong: ECE = 0.9
    probs = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    assert expected_calibration_error(probs, torch.tensor([0, 1])) == pytest.approx(0.1)
    assert expected_calibration_error(probs, torch.tensor([1, 0])) == pytest.approx(0.9)
    one_hot = torch.eye(3)
    assert expected_calibration_error(one_hot, torch.arange(3)) == pytest.approx(0.0)
    # confidence exactly 1 belongs to the last bin, a boundary value to the lower bin
    bins = calibration_bins(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([0, 0]), 4)
    assert bins.count.tolist() == [0, 1, 0, 1]


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        expected_calibration_error(torch.rand(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        expected_calibration_error(torch.rand(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(torch.rand(3, 2), torch.zeros(3, dtype=torch.long), 0)


def test_reliability_diagram_draws_bins(tmp_path) -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(200, 4, generator=g)
    targets = torch.randint(0, 4, (200,), generator=g)
    fig = reliability_diagram(logits, targets, n_bins=10, title="random")
    ax = fig.axes[0]
    occupied = int((calibration_bins(logits, targets, 10).count > 0).sum())
    assert len(ax.patches) == 2 * occupied
    assert "ECE" in ax.get_legend().get_texts()[1].get_text()
    fig.savefig(tmp_path / "diagram.png")
    assert (tmp_path / "diagram.png").stat().st_size > 1000
