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
    fit_temperature,
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


def _nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> float:
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, targets))


def _grid_temperature(
    logits: torch.Tensor, targets: torch.Tensor, decades: tuple[int, int] = (-2, 2)
) -> float:
    """The slow reference: the best of 1,000 temperatures per decade spaced evenly in log T."""
    low, high = decades
    grid = torch.logspace(low, high, 1000 * (high - low) + 1, dtype=torch.float64)
    values = [_nll(logits, targets, float(t)) for t in grid]
    return float(grid[min(range(len(values)), key=values.__getitem__)])


@pytest.mark.parametrize("scale", [0.3, 1.0, 5.0])
def test_fit_temperature_matches_a_brute_force_grid(scale: float) -> None:
    g = torch.Generator().manual_seed(1)
    logits = scale * torch.randn(400, 10, generator=g, dtype=torch.float64)
    targets = torch.where(
        torch.rand(400, generator=g) < 0.7,
        logits.argmax(-1),
        torch.randint(0, 10, (400,), generator=g),
    )
    fitted = fit_temperature(logits, targets)
    grid = _grid_temperature(logits, targets)
    assert fitted == pytest.approx(grid, rel=2.5e-3)  # the grid's step is 0.23% in T
    assert _nll(logits, targets, fitted) <= _nll(logits, targets, grid) + 1e-12


def test_fit_temperature_recovers_the_temperature_that_drew_the_labels() -> None:
    g = torch.Generator().manual_seed(2)
    logits = 4 * torch.randn(20_000, 5, generator=g, dtype=torch.float64)
    targets = torch.multinomial(torch.softmax(logits / 2.5, -1), 1, generator=g).squeeze(1)
    assert fit_temperature(logits, targets) == pytest.approx(2.5, rel=0.05)
    # the fitted logits are calibrated where the raw ones were over-confident
    raw = expected_calibration_error(logits, targets, from_logits=True)
    scaled = expected_calibration_error(logits / 2.5, targets, from_logits=True)
    assert scaled < 0.02 < raw


def test_fit_temperature_on_extreme_and_low_precision_logits() -> None:
    g = torch.Generator().manual_seed(3)
    logits = 1e4 * torch.randn(200, 4, generator=g, dtype=torch.float64)
    # every sample right: the likelihood keeps rising as T -> 0, so the lower bound comes back
    assert fit_temperature(logits, logits.argmax(-1)) == 0.01
    # some wrong at +-1e4: an optimum far above 1, inside wide bounds, found as by the grid
    targets = torch.where(
        torch.arange(200) % 5 == 0, (logits.argmax(-1) + 1) % 4, logits.argmax(-1)
    )
    fitted = fit_temperature(logits, targets, bounds=(1.0, 1e5))
    assert 100 < fitted < 1e5
    assert fitted == pytest.approx(_grid_temperature(logits, targets, (0, 5)), rel=2.5e-3)
    # logits so large that the softmax is saturated at both ends of the range: no change
    assert fit_temperature(1e8 * logits, logits.argmax(-1)) == 1.0
    assert fit_temperature(torch.ones(10, 3), torch.zeros(10, dtype=torch.long)) == 1.0
    # bf16 logits are fitted in float64, exactly as their float64 values
    half = (3 * torch.randn(300, 6, generator=g)).bfloat16()
    labels = torch.randint(0, 6, (300,), generator=g)
    assert fit_temperature(half, labels) == fit_temperature(half.double(), labels)
    # all-wrong labels: the best temperature is the largest one allowed
    assert fit_temperature(logits, (logits.argmax(-1) + 1) % 4) == 100.0


@pytest.mark.parametrize(
    ("logits", "targets", "kwargs", "message"),
    [
        (torch.zeros(5), torch.zeros(5, dtype=torch.long), {}, r"shape \(N, C\)"),
        (torch.zeros(5, 1), torch.zeros(5, dtype=torch.long), {}, r"C >= 2"),
        (torch.zeros(5, 3), torch.zeros(5), {}, "integer targets"),
        (torch.zeros(5, 3), torch.zeros(4, dtype=torch.long), {}, r"shape \(5,\)"),
        (torch.zeros(5, 3), torch.full((5,), 3), {}, r"\[0, 3\)"),
        (torch.full((5, 3), math.nan), torch.zeros(5, dtype=torch.long), {}, "15 of 15 are not"),
        (torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), {"bounds": (1.0, 0.5)}, "bounds"),
        (torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), {"bounds": 3.0}, "a pair"),
        (torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), {"iterations": 0}, "iterations"),
    ],
)
def test_fit_temperature_refuses_bad_input(logits, targets, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        fit_temperature(logits, targets, **kwargs)
