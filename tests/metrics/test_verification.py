"""Verification metrics against brute force over every threshold, on small examples."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from geozoo.metrics import TARAtFAR, VerificationAccuracy
from geozoo.metrics.verification import best_threshold


def _pairs(count: int, seed: int, ties: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    same = torch.rand(count, generator=g) < 0.5
    scores = torch.randn(count, generator=g) + 1.2 * same
    if ties:
        scores = (scores * 2).round() / 2  # many equal scores
    return scores, same


def _candidates(scores: torch.Tensor) -> list[float]:
    values = sorted(set(scores.tolist()))
    mids = [(a + b) / 2 for a, b in itertools.pairwise(values)]
    return [-math.inf, *mids, math.inf]


def _brute_threshold(scores, same) -> float:
    best, best_t = -1.0, None
    for t in _candidates(scores):  # ascending: the first best is the lowest
        accuracy = float(((scores > t) == same).float().mean())
        if accuracy > best:
            best, best_t = accuracy, t
    return best_t


def _brute_accuracy(scores, same, folds: int) -> float:
    n = len(scores)
    fold = torch.tensor([i * folds // n for i in range(n)])
    accuracies = []
    for k in range(folds):
        train = fold != k
        t = _brute_threshold(scores[train], same[train])
        accuracies.append(float(((scores[~train] > t) == same[~train]).float().mean()))
    return sum(accuracies) / folds


@pytest.mark.parametrize(
    ("count", "folds", "seed", "ties"),
    [(40, 10, 0, False), (37, 4, 1, False), (60, 10, 2, True), (23, 2, 3, True)],
)
def test_verification_accuracy_matches_brute_force(count, folds, seed, ties) -> None:
    scores, same = _pairs(count, seed, ties)
    metric = VerificationAccuracy(folds)
    half = count // 2  # two updates: the order of the pairs is kept
    metric.update(scores[:half], same[:half])
    metric.update(scores[half:], same[half:])
    assert float(metric.compute()) == pytest.approx(_brute_accuracy(scores, same, folds), abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_best_threshold_matches_brute_force(seed: int) -> None:
    scores, same = _pairs(30, seed, ties=seed % 2 == 1)
    assert float(best_threshold(scores.double(), same)) == pytest.approx(
        _brute_threshold(scores.double(), same)
    )


def test_separable_pairs_are_verified_perfectly() -> None:
    same = torch.tensor([True, False] * 20)
    scores = same.float() + 0.01 * torch.arange(40)
    metric = VerificationAccuracy(10)
    metric.update(scores, same)
    assert float(metric.compute()) == 1.0


def _brute_tar(scores, same, far: float) -> float:
    best = 0.0
    negatives, positives = scores[~same], scores[same]
    for t in [-math.inf, *scores.tolist(), math.inf]:
        if float((negatives > t).float().mean()) <= far:
            best = max(best, float((positives > t).float().mean()))
    return best


@pytest.mark.parametrize(
    ("count", "far", "seed"),
    [(200, 0.01, 0), (200, 0.05, 1), (150, 0.0, 2), (300, 1e-3, 3), (80, 1.0, 4)],
)
def test_tar_at_far_matches_brute_force(count: int, far: float, seed: int) -> None:
    for ties in (False, True):
        scores, same = _pairs(count, seed, ties)
        metric = TARAtFAR(far)
        metric.update(scores, same)
        assert float(metric.compute()) == pytest.approx(_brute_tar(scores, same, far), abs=1e-6)


def test_auroc_is_torchmetrics_own_on_cosines() -> None:
    """The task and zoo hook feed cosine scores to torchmetrics' BinaryAUROC, whose sigmoid of
    out-of-range scores is monotone, so the AUC is that of the raw scores."""
    from torchmetrics.classification import BinaryAUROC

    scores, same = _pairs(100, 5)
    cosines = torch.tanh(scores)  # in [-1, 1]
    auc = BinaryAUROC()(cosines, same.long())
    positives, negatives = cosines[same], cosines[~same]
    pairwise = (positives[:, None] > negatives[None]).float().mean()
    assert float(auc) == pytest.approx(float(pairwise), abs=1e-6)


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="num_folds"):
        VerificationAccuracy(1)
    with pytest.raises(ValueError, match="far"):
        TARAtFAR(1.5)
    with pytest.raises(ValueError, match="equal shape"):
        VerificationAccuracy().update(torch.zeros(3), torch.zeros(4, dtype=torch.bool))
    metric = VerificationAccuracy(10)
    metric.update(torch.zeros(5), torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least as many pairs"):
        metric.compute()
    tar = TARAtFAR()
    tar.update(torch.zeros(5), torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="matched and mismatched"):
        tar.compute()
