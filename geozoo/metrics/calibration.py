"""Expected calibration error and reliability diagrams for any classifier.

A classifier is calibrated when its top-1 confidence matches its accuracy.  The confidences are
grouped into ``n_bins`` equal-width bins ``B_m = ((m - 1)/M, m/M]`` (the first bin also takes 0)
and

    ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|

(Guo et al. 2017, "On calibration of modern neural networks", Eq. 3; Naeini et al. 2015);
``norm="max"`` gives the maximum calibration error (MCE, Eq. 5) and ``norm="l2"`` the root of the
count-weighted squared gaps.  The number itself is always torchmetrics'
``multiclass_calibration_error`` (the same computation the tasks log and the zoo's cards report);
:func:`calibration_bins` adds the per-bin statistics a reliability diagram needs, which
torchmetrics does not return.  Functions here return ECE as a fraction in [0, 1]; reports
(cards, docs, ``geozoo zoo eval``) give it in percent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_calibration_error

if TYPE_CHECKING:  # matplotlib is imported lazily by reliability_diagram
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CalibrationBins",
    "calibration_bins",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_diagram",
]


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin statistics of top-1 confidence and accuracy.

    Attributes:
        edges: ``n_bins + 1`` bin edges from 0 to 1.
        confidence: mean confidence per bin (0 where the bin is empty).
        accuracy: accuracy per bin (0 where the bin is empty).
        count: number of samples per bin.
    """

    edges: Tensor
    confidence: Tensor
    accuracy: Tensor
    count: Tensor

    @property
    def total(self) -> int:
        return int(self.count.sum())

    def error(self, norm: Literal["l1", "l2", "max"] = "l1") -> Tensor:
        """The calibration error of these bins (see the module docstring)."""
        gap = (self.accuracy - self.confidence).abs()
        weight = self.count / self.count.sum().clamp_min(1)
        if norm == "l1":
            return (weight * gap).sum()
        if norm == "l2":
            return (weight * gap.square()).sum().sqrt()
        if norm == "max":
            return torch.where(self.count > 0, gap, torch.zeros_like(gap)).max()
        raise ValueError(f"norm must be 'l1', 'l2' or 'max', got {norm!r}")


def _probabilities(scores: Tensor, targets: Tensor, from_logits: bool | None) -> Tensor:
    if scores.ndim != 2:
        raise ValueError(f"expected scores of shape (N, C), got {tuple(scores.shape)}")
    if targets.shape != scores.shape[:1]:
        raise ValueError(
            f"expected integer targets of shape ({scores.shape[0]},), got {tuple(targets.shape)}"
        )
    if targets.is_floating_point():
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    scores = scores.detach().double()
    if from_logits is None:  # probabilities are non-negative rows summing to one
        sums = scores.sum(-1)
        from_logits = bool((scores < 0).any()) or not torch.allclose(
            sums, torch.ones_like(sums), atol=1e-4
        )
    return torch.softmax(scores, -1) if from_logits else scores


def _confidences(
    scores: Tensor, targets: Tensor, from_logits: bool | None
) -> tuple[Tensor, Tensor]:
    confidence, prediction = _probabilities(scores, targets, from_logits).max(-1)
    return confidence, (prediction == targets.to(prediction.device)).double()


def calibration_bins(
    scores: Tensor, targets: Tensor, n_bins: int = 15, from_logits: bool | None = None
) -> CalibrationBins:
    """Bin the top-1 confidences of ``scores`` ``(N, C)`` (probabilities or logits).

    Args:
        scores: class probabilities or logits.
        targets: integer labels ``(N,)``.
        n_bins: number of equal-width bins on [0, 1].
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect it
            (rows of non-negative numbers that sum to one are probabilities).
    """
    if not (isinstance(n_bins, int) and n_bins >= 1):
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    confidence, correct = _confidences(scores, targets, from_logits)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=confidence.device)
    # bucketize(right=False) on the interior edges: edges[m-1] < c <= edges[m] -> bin m - 1
    index = torch.bucketize(confidence, edges[1:-1], right=False)
    count = torch.zeros(n_bins, dtype=torch.float64, device=confidence.device)
    count.index_add_(0, index, torch.ones_like(confidence))
    conf_sum = torch.zeros_like(count).index_add_(0, index, confidence)
    acc_sum = torch.zeros_like(count).index_add_(0, index, correct)
    safe = count.clamp_min(1)
    return CalibrationBins(edges, conf_sum / safe, acc_sum / safe, count)


def expected_calibration_error(
    scores: Tensor,
    targets: Tensor,
    n_bins: int = 15,
    norm: Literal["l1", "l2", "max"] = "l1",
    from_logits: bool | None = None,
) -> float:
    """Expected calibration error of ``scores`` ``(N, C)`` against ``targets`` (Guo et al. 2017).

    ``norm="l1"`` is the ECE, ``"max"`` the MCE and ``"l2"`` the RMS calibration error, as
    computed by torchmetrics (on probabilities; logits are converted first). Returns a Python
    float in [0, 1].
    """
    if not (isinstance(n_bins, int) and n_bins >= 1):
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    if norm not in ("l1", "l2", "max"):
        raise ValueError(f"norm must be 'l1', 'l2' or 'max', got {norm!r}")
    probs = _probabilities(scores, targets, from_logits)
    return float(
        multiclass_calibration_error(
            probs, targets.to(probs.device), probs.shape[-1], n_bins=n_bins, norm=norm
        )
    )


def reliability_diagram(
    scores: Tensor | CalibrationBins,
    targets: Tensor | None = None,
    n_bins: int = 15,
    from_logits: bool | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    **bar_kwargs: Any,
) -> Figure:
    """Draw a reliability diagram: accuracy per confidence bin against the diagonal.

    Bars show each bin's accuracy, hatched boxes the gap to its mean confidence, the dashed
    diagonal perfect calibration; the ECE is in the legend.  Give ``scores`` and ``targets``,
    or ready :class:`CalibrationBins`.  Returns the matplotlib figure (drawn into ``ax`` when
    given).
    """
    import matplotlib.pyplot as plt

    if isinstance(scores, CalibrationBins):
        bins = scores
    else:
        if targets is None:
            raise ValueError("reliability_diagram needs targets when given scores")
        bins = calibration_bins(scores, targets, n_bins, from_logits)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4))
    else:
        fig = ax.figure
    edges = bins.edges.cpu().numpy()
    width = edges[1:] - edges[:-1]
    centers = edges[:-1] + width / 2
    occupied = (bins.count > 0).cpu().numpy()
    acc = bins.accuracy.cpu().numpy()
    conf = bins.confidence.cpu().numpy()
    ece = float(bins.error("l1"))
    ax.bar(
        centers[occupied],
        acc[occupied],
        width=width[occupied],
        edgecolor="black",
        color=bar_kwargs.pop("color", "tab:blue"),
        label="accuracy",
        **bar_kwargs,
    )
    ax.bar(
        centers[occupied],
        conf[occupied] - acc[occupied],
        bottom=acc[occupied],
        width=width[occupied],
        fill=False,
        hatch="//",
        edgecolor="tab:red",
        label=f"gap (ECE {100 * ece:.2f}%)",
    )
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def _mean_nll_slope(logits: Tensor, targets: Tensor, beta: float) -> float:
    """d/d(beta) of the mean negative log-likelihood of ``softmax(beta * logits)``:
    ``mean(E_p[z] - z_y)``, increasing in ``beta`` (its derivative is ``Var_p(z) >= 0``)."""
    probs = torch.softmax(beta * logits, -1)
    expected = (probs * logits).sum(-1)
    return float((expected - logits.gather(1, targets[:, None]).squeeze(1)).mean())


def fit_temperature(
    logits: Tensor,
    targets: Tensor,
    bounds: tuple[float, float] = (0.01, 100.0),
    iterations: int = 200,
) -> float:
    """The temperature ``T`` that minimises the mean negative log-likelihood of
    ``softmax(logits / T)`` on held-out ``(logits, targets)`` (temperature scaling, Guo et al.
    2017, "On calibration of modern neural networks", Sec. 4.2).

    The likelihood is convex in ``beta = 1 / T`` (a log-sum-exp of functions linear in
    ``beta``), so its slope is increasing and bisection on it, in log space and float64, finds
    the minimum to float precision; no optimiser or learning rate is involved. When the minimum
    lies outside ``bounds`` (e.g. every sample is classified correctly, so the likelihood keeps
    rising as ``T -> 0``), the nearer bound is returned; where the likelihood is flat over the
    whole range (constant rows, or logits so large that every softmax is saturated at both
    ends), 1 (no change, clipped into ``bounds``).

    Args:
        logits: ``(N, C)`` logits of a held-out set (any float dtype; computed in float64).
        targets: ``(N,)`` integer labels in ``[0, C)``.
        bounds: the range ``(low, high)`` searched for ``T``, ``0 < low < high``.
        iterations: bisection steps (200 reach float64 resolution for the default bounds).

    Returns:
        ``T`` as a Python float; divide the logits by it.
    """
    if logits.ndim != 2 or logits.shape[1] < 2 or logits.shape[0] < 1:
        raise ValueError(
            f"expected logits of shape (N, C) with N >= 1 and C >= 2, got {tuple(logits.shape)}"
        )
    if targets.shape != logits.shape[:1] or targets.is_floating_point():
        raise ValueError(
            f"expected integer targets of shape ({logits.shape[0]},), got "
            f"{tuple(targets.shape)} of dtype {targets.dtype}"
        )
    if not (isinstance(bounds, tuple | list) and len(bounds) == 2):
        raise ValueError(f"expected bounds as a pair (low, high), got {bounds!r}")
    low, high = bounds
    if not 0 < low < high < math.inf:
        raise ValueError(f"expected bounds 0 < low < high < inf, got {bounds}")
    if not (isinstance(iterations, int) and iterations >= 1):
        raise ValueError(f"expected a positive integer number of iterations, got {iterations!r}")
    logits = logits.detach().double()
    targets = targets.to(logits.device).long()
    finite = torch.isfinite(logits)
    if not bool(finite.all()):
        raise ValueError(
            f"logits must be finite to fit a temperature; {int((~finite).sum())} of "
            f"{finite.numel()} are not"
        )
    if bool(((targets < 0) | (targets >= logits.shape[1])).any()):
        raise ValueError(
            f"targets must lie in [0, {logits.shape[1]}), got values from "
            f"{int(targets.min())} to {int(targets.max())}"
        )
    log_beta_low, log_beta_high = -math.log(high), -math.log(low)
    slope_low = _mean_nll_slope(logits, targets, math.exp(log_beta_low))
    slope_high = _mean_nll_slope(logits, targets, math.exp(log_beta_high))
    if slope_low == 0 and slope_high == 0:  # flat over the whole range (or saturated): no change
        return min(max(1.0, low), high)
    if slope_low >= 0:
        return high
    if slope_high <= 0:
        return low
    for _ in range(iterations):
        middle = 0.5 * (log_beta_low + log_beta_high)
        if _mean_nll_slope(logits, targets, math.exp(middle)) < 0:
            log_beta_low = middle
        else:
            log_beta_high = middle
    return math.exp(-0.5 * (log_beta_low + log_beta_high))
