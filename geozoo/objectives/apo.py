"""APO: GRPO with difficulty-aware KL weights (DADS) and length-aware negative advantages (STCR).

APO (Hong et al. 2025, "APO: enhancing reasoning ability of MLLMs via asymmetric policy
optimization", arXiv 2506.21655; the View-R1 reference code, Indolent-Kawhi/View-R1,
``ppo_actor.calculate_kl_weight`` and ``experience_maker``) changes GRPO in two places:

**DADS** (difficulty-adaptive divergence shaping), for the *positive* samples (advantage > 0)
only.  With the prompt's difficulty ``d = 1 - (#correct / G)`` over its group of ``G``
responses, the reverse-KL term of response ``i`` is weighted by

.. math::  w(d) = 1 - e^{-\\kappa (1 - d)}, \\qquad \\kappa = e \\text{ by default},

so an easy prompt (``d -> 0``) keeps almost all of the KL anchor while a hard one (``d -> 1``)
frees its rare positive samples from it; negative samples keep ``w = 1``, and so do groups with
``d in {0, 1}`` (their advantages are zero anyway).  The loss is
``PG + beta * mean_i(w_i * mean_t KL_it)``.  The reference code also carries the alternative
``w(d) = e^{-kappa d}`` (commented out); ``dads_form="exponential"`` selects it.

**STCR** (suboptimal trajectory complexity regularization), for the *negative* samples
(advantage < 0) of groups with at least one correct response: with
``Delta_i = len_i - mean(len of the correct responses)``, the advantage is multiplied by

.. math::  s_i = 1 + (1 - b^{-\\Delta_i}) \\;\\text{ if } \\Delta_i > 0, \\text{ else } 1,
    \\qquad b = 1.00001,

so a wrong answer longer than the correct ones is pushed down harder (``s < 2``).  The paper's
base is tuned to thousands of tokens (``Delta = 10^4`` gives ``s ~ 1.095``); for short responses
choose a larger ``stcr_base``.  Both weights are computed without gradient.

Everything else is :class:`~geozoo.objectives.GRPO` (clipping, aggregation, advantages).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from geozoo.objectives.base import ObjectiveOutput, StepContext, as_scalar
from geozoo.objectives.divergences import kl_estimate
from geozoo.objectives.grpo import GRPO, rollouts_from
from geozoo.rl.rollouts import Rollouts, masked_mean

__all__ = ["APO", "dads_weights", "group_accuracy", "stcr_weights"]


def group_accuracy(correct: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """``(N,)`` fraction of correct responses in each response's group."""
    ones = torch.ones_like(correct, dtype=torch.float32)
    count = torch.zeros(num_groups, device=correct.device).index_add_(0, group, ones)
    hits = torch.zeros(num_groups, device=correct.device).index_add_(0, group, correct.float())
    return (hits / count.clamp_min(1))[group]


def dads_weights(
    advantages: Tensor,
    difficulty: Tensor,
    scale: float = math.e,
    form: Literal["saturating", "exponential"] = "saturating",
) -> Tensor:
    """DADS KL weights: ``1 - exp(-scale (1 - d))`` (or ``exp(-scale d)``) on positive samples
    of groups with ``0 < d < 1``, 1 elsewhere."""
    d = difficulty.float()
    if form == "saturating":
        w = -torch.expm1(-scale * (1.0 - d))
    elif form == "exponential":
        w = torch.exp(-scale * d)
    else:
        raise ValueError(f"dads_form must be 'saturating' or 'exponential', got {form!r}")
    applies = (advantages > 0) & (d > 0) & (d < 1)
    return torch.where(applies, w, torch.ones_like(w))


def stcr_weights(
    advantages: Tensor,
    lengths: Tensor,
    correct: Tensor,
    group: Tensor,
    num_groups: int,
    base: float = 1.00001,
) -> Tensor:
    """STCR advantage scales ``1 + (1 - base^-Delta)`` for negative samples longer (by
    ``Delta > 0`` tokens) than the mean correct response of their group; 1 elsewhere."""
    lengths = lengths.float()
    hits = torch.zeros(num_groups, device=lengths.device).index_add_(0, group, correct.float())
    total = torch.zeros(num_groups, device=lengths.device).index_add_(
        0, group, lengths * correct.float()
    )
    mean_correct = (total / hits.clamp_min(1))[group]
    excess = lengths - mean_correct
    # 1 - base^-excess = -expm1(-excess log base), finite for any excess
    scale = 1.0 - torch.expm1(-excess.clamp_min(0.0) * math.log(base))
    applies = (advantages < 0) & (hits[group] > 0) & (excess > 0)
    return torch.where(applies, scale, torch.ones_like(scale))


class APO(GRPO):
    """GRPO with View-R1's DADS and STCR (see the module docstring).

    Args:
        dads: weight the reverse-KL term of positive samples by the prompt's difficulty.  Needs
            ``divergence="reverse_kl"`` with a loss estimator (``"k2"`` or ``"k3"``, the
            paper's ``k3`` by default here too).
        dads_scale: ``kappa`` of the weight (``e`` in the paper's code).
        dads_form: ``"saturating"`` (``1 - exp(-kappa (1 - d))``, the paper's) or
            ``"exponential"`` (``exp(-kappa d)``, the code's commented alternative).
        stcr: scale the advantages of long wrong answers.
        stcr_base: ``b`` of the length penalty (``1.00001`` in the paper; must be ``> 1``).
        correct_threshold: a response counts as correct when its reward is at least this (the
            code truncates the reward to an integer, so 1 for a correctness reward plus a
            format bonus below 1).
        divergence, estimator, beta: as in :class:`~geozoo.objectives.GRPO`, with the paper's
            defaults: reverse KL by k3, ``beta = 1e-3`` (its ``init_kl_coef``).
        **grpo: the other arguments of :class:`~geozoo.objectives.GRPO`.

    Logs GRPO's values plus ``dads_weight`` (mean over positive samples), ``stcr_scale``
    (mean over negative samples) and ``difficulty``.
    """

    def __init__(
        self,
        dads: bool = True,
        dads_scale: float = math.e,
        dads_form: Literal["saturating", "exponential"] = "saturating",
        stcr: bool = True,
        stcr_base: float = 1.00001,
        correct_threshold: float = 1.0,
        divergence: str = "reverse_kl",
        estimator: Literal["k1", "k2", "k3"] = "k3",
        beta: float = 1e-3,
        **grpo: Any,
    ) -> None:
        super().__init__(divergence=divergence, estimator=estimator, beta=beta, **grpo)
        if dads and (self.divergence != "reverse_kl" or self.estimator == "k1"):
            raise ValueError(
                "DADS weights the reverse-KL loss term: use divergence='reverse_kl' with "
                f"estimator 'k2' or 'k3' (got divergence={self.divergence!r}, "
                f"estimator={self.estimator!r}), or dads=False"
            )
        if dads_form not in ("saturating", "exponential"):
            raise ValueError(f"dads_form must be 'saturating' or 'exponential', got {dads_form!r}")
        if not (isinstance(dads_scale, int | float) and dads_scale > 0):
            raise ValueError(f"dads_scale must be positive, got {dads_scale!r}")
        if not (isinstance(stcr_base, int | float) and stcr_base > 1 and math.isfinite(stcr_base)):
            raise ValueError(f"stcr_base must be a finite number > 1, got {stcr_base!r}")
        self.dads = dads
        self.dads_scale = float(dads_scale)
        self.dads_form = dads_form
        self.stcr = stcr
        self.stcr_base = float(stcr_base)
        self.correct_threshold = float(correct_threshold)

    def correct(self, rollouts: Rollouts) -> Tensor:
        """``(N,)`` bool: responses whose reward reaches ``correct_threshold``."""
        return rollouts.rewards.float() >= self.correct_threshold

    def difficulty(self, rollouts: Rollouts) -> Tensor:
        """``(N,)`` difficulty ``1 - group accuracy`` of each response's prompt."""
        accuracy = group_accuracy(self.correct(rollouts), rollouts.group, rollouts.num_groups)
        return 1.0 - accuracy

    def base_advantages(self, rollouts: Rollouts) -> Tensor:
        """GRPO's advantages before STCR."""
        return super().advantages(rollouts)

    def advantages(self, rollouts: Rollouts) -> Tensor:
        adv = self.base_advantages(rollouts)
        if not self.stcr:
            return adv
        scale = stcr_weights(
            adv,
            rollouts.lengths,
            self.correct(rollouts),
            rollouts.group,
            rollouts.num_groups,
            self.stcr_base,
        )
        return adv * scale.to(adv.dtype)

    def kl_weights(self, rollouts: Rollouts) -> Tensor:
        """``(N,)`` DADS weights of the KL term (ones when ``dads=False``)."""
        adv = self.base_advantages(rollouts)
        if not self.dads:
            return torch.ones_like(adv)
        return dads_weights(adv, self.difficulty(rollouts), self.dads_scale, self.dads_form)

    def divergence_loss(self, ctx: StepContext, rollouts: Rollouts) -> Tensor | None:
        if not self.dads or self.beta == 0:
            return super().divergence_loss(ctx, rollouts)
        kl = kl_estimate(
            rollouts.logp, self._ref_logp(rollouts), self.estimator, self.log_ratio_clip
        )
        weights = self.kl_weights(rollouts).to(kl.dtype)
        return masked_mean(kl * weights[:, None], rollouts.mask, self.aggregation)

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        loss, logs = super().forward(ctx)
        rollouts = rollouts_from(ctx)
        with torch.no_grad():
            adv = self.base_advantages(rollouts)
            logs["difficulty"] = as_scalar(self.difficulty(rollouts))
            positive, negative = adv > 0, adv < 0
            if self.dads and bool(positive.any()):
                logs["dads_weight"] = as_scalar(self.kl_weights(rollouts)[positive])
            if self.stcr and bool(negative.any()):
                logs["stcr_scale"] = as_scalar((self.advantages(rollouts) / adv)[negative])
        return ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, dads={self.dads}, dads_form={self.dads_form!r}, "
            f"stcr={self.stcr}, stcr_base={self.stcr_base}"
        )
