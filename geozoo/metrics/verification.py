"""Face verification rates as torchmetrics: k-fold accuracy and TAR at a fixed FAR.

Both take a similarity score per pair (higher = more alike, e.g. the cosine of two embeddings)
and whether the pair shows the same identity; a pair is accepted as "same" when its score is
strictly above a threshold. ROC AUC is torchmetrics' own ``BinaryAUROC`` on the same inputs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["TARAtFAR", "VerificationAccuracy", "best_threshold", "pair_scores"]


def _check_pairs(scores: Tensor, same: Tensor) -> tuple[Tensor, Tensor]:
    if scores.dim() != 1 or same.shape != scores.shape:
        raise ValueError(
            "expected scores and same-identity flags of equal shape (P,), got "
            f"{tuple(scores.shape)} and {tuple(same.shape)}"
        )
    return scores.detach().double(), same.detach().bool()


def best_threshold(scores: Tensor, same: Tensor) -> Tensor:
    """The threshold ``t`` maximising the accuracy of ``score > t`` on these pairs.

    Candidates are ``-inf``, the midpoints between consecutive distinct scores and ``+inf``;
    ties go to the lowest candidate.
    """
    order = scores.argsort()
    sorted_scores, sorted_same = scores[order], same[order].double()
    # cut after position i (i = -1 .. P-1): the first i+1 pairs rejected, the rest accepted
    rejected_negatives = torch.cat([sorted_scores.new_zeros(1), (1 - sorted_same).cumsum(0)])
    accepted_positives = sorted_same.sum() - torch.cat(
        [sorted_scores.new_zeros(1), sorted_same.cumsum(0)]
    )
    correct = rejected_negatives + accepted_positives
    # a cut between equal scores is not a threshold: only cuts at a change of score (or the ends)
    valid = torch.ones_like(correct, dtype=torch.bool)
    valid[1:-1] = sorted_scores[1:] > sorted_scores[:-1]
    cut = int(torch.where(valid, correct, torch.full_like(correct, -1.0)).argmax())
    if cut == 0:
        return scores.new_tensor(float("-inf"))
    if cut == len(scores):
        return scores.new_tensor(float("inf"))
    return 0.5 * (sorted_scores[cut - 1] + sorted_scores[cut])


class _PairMetric(Metric):
    """Collects ``(scores, same)`` of every pair in order (concatenated across ranks)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("same", default=[], dist_reduce_fx="cat")

    def update(self, scores: Tensor, same: Tensor) -> None:
        scores, same = _check_pairs(scores, same)
        self.scores.append(scores)
        self.same.append(same)

    def pairs(self) -> tuple[Tensor, Tensor]:
        """All scores and same-identity flags so far, in update order."""
        return dim_zero_cat(self.scores), dim_zero_cat(self.same)


class VerificationAccuracy(_PairMetric):
    """k-fold verification accuracy (the LFW protocol, Huang et al. 2007, "unrestricted"):
    the pairs, in the order given, are cut into ``num_folds`` contiguous folds (the folds of
    LFW's ``pairs.txt``); for each fold the threshold that maximises accuracy on the other
    folds (:func:`best_threshold`) is applied to it; the result is the mean over folds.

    Args:
        num_folds: number of folds (10 in the LFW protocol).
    """

    def __init__(self, num_folds: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_folds < 2:
            raise ValueError(f"num_folds must be at least 2, got {num_folds}")
        self.num_folds = num_folds

    def fold_accuracies(self) -> Tensor:
        """The held-out accuracy of each fold, ``(num_folds,)``."""
        scores, same = self.pairs()
        if len(scores) < self.num_folds:
            raise ValueError(
                f"{self.num_folds}-fold accuracy needs at least as many pairs, got {len(scores)}"
            )
        folds = torch.arange(len(scores), device=scores.device) * self.num_folds // len(scores)
        accuracies = []
        for k in range(self.num_folds):
            held_out = folds == k
            threshold = best_threshold(scores[~held_out], same[~held_out])
            accepted = scores[held_out] > threshold
            accuracies.append((accepted == same[held_out]).double().mean())
        return torch.stack(accuracies)

    def compute(self) -> Tensor:
        return self.fold_accuracies().mean().float()


class TARAtFAR(_PairMetric):
    """True accept rate at the threshold whose false accept rate is at most ``far``.

    The threshold is the lowest one that accepts no more than ``floor(far * negatives)``
    mismatched pairs (the ``k+1``-th largest negative score), which maximises the TAR under the
    constraint. With fewer than ``1 / far`` mismatched pairs no false accept is allowed at all
    (``far = 1e-3`` needs 1,000 of them to mean more than "TAR at FAR = 0").

    Args:
        far: the allowed false accept rate, in [0, 1].
    """

    def __init__(self, far: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= far <= 1.0:
            raise ValueError(f"far must be in [0, 1], got {far}")
        self.far = float(far)

    def threshold(self) -> Tensor:
        scores, same = self.pairs()
        if not bool(same.any()) or bool(same.all()):
            raise ValueError("TAR@FAR needs both matched and mismatched pairs")
        negatives = scores[~same].sort(descending=True).values
        allowed = int(self.far * len(negatives) + 1e-9)
        if allowed >= len(negatives):
            return negatives.new_tensor(float("-inf"))
        return negatives[allowed]

    def compute(self) -> Tensor:
        scores, same = self.pairs()
        return (scores[same] > self.threshold()).double().mean().float()


@torch.no_grad()
def pair_scores(model: nn.Module, loader: Any) -> tuple[Tensor, Tensor]:
    """Cosine similarity of the embeddings of every pair in ``loader`` (batches
    ``((images_a, images_b), same)``), and the same-identity flags, in loader order."""
    was_training = model.training
    model.eval()
    scores, flags = [], []
    for (first, second), same in loader:
        a, b = model(first).float(), model(second).float()
        scores.append(F.cosine_similarity(a, b, dim=1))
        flags.append(same.bool())
    model.train(was_training)
    return torch.cat(scores), torch.cat(flags)
