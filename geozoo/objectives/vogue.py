"""VOGUE: visual-uncertainty-guided exploration for GRPO on image prompts.

VOGUE (Liu et al. 2025, "VOGUE: guiding exploration with visual uncertainty improves multimodal
reasoning", arXiv 2510.01444) treats the image as a stochastic context: every prompt is also
run on a perturbed image, and the policy's disagreement between the raw and the perturbed
branch measures how uncertain it is about what it sees.  Three parts, on top of GRPO:

1. **Visual uncertainty**, the token-level symmetric KL between the two branches' next-token
   distributions, averaged over response ``i``:
   ``U_i = mean_t [KL(pi_raw || pi_pert) + KL(pi_pert || pi_raw)]_t``.  Only the sampled
   tokens' log-probabilities are needed: on a token ``o ~ pi_a`` (``a`` the branch that
   sampled) with ``delta = log pi_a(o) - log pi_b(o)``, ``(1 - e^{-delta}) delta`` is an
   unbiased, non-negative estimate of the symmetric KL (Jeffreys divergence ``sum (p - q)
   (log p - log q) = E_p[(1 - q/p) log(p/q)]``), zero exactly when the branches agree.
2. **Advantage shaping**: ``A'_it = A_i + b_U(U_i) + b_H(H_it)`` with ``b_U = c_U U_i`` and
   ``b_H = c_H H_it`` (``H_it`` the sampling distribution's token entropy), each bonus clipped
   to ``|A_i| / kappa`` so that it never flips or dominates the advantage (the clipping of the
   entropy-advantage of Cheng et al. 2025, "Reasoning with exploration: an entropy
   perspective"); both are detached.  By default the uncertainty bonus shapes the
   perturbed-branch rollouts (as in the paper) and the entropy bonus all of them.
3. **Annealed sampling**: a share ``p(step)`` of the prompts is sampled on its perturbed
   image, annealed from ``share_start`` to ``share_end`` over ``anneal_steps`` (exploration
   early, the clean distribution late).

The paper's coefficients, clipping and noise schedule were not available when this was written:
each is an argument.  The perturbation is any callable ``prompts -> prompts`` (default
:class:`GaussianNoise`; a transformation from ``geozoo.augment`` fits too).

How a task takes part: before sampling, an RL task that finds :meth:`VOGUE.sampling_prompts`
on an objective calls it with the step's prompts and samples from the prompts it returns (the
verifier still scores against the original prompts), and stores the returned dict in the
rollouts' ``extras``.  Without that hook all rollouts are raw-branch ones, the perturbed branch
is computed here, and only ``bonus_on="all"`` is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from geozoo.objectives.base import ObjectiveOutput, StepContext, as_scalar
from geozoo.objectives.grpo import GRPO, rollouts_from
from geozoo.rl.rollouts import Rollouts, masked_mean

__all__ = ["VOGUE", "GaussianNoise", "symmetric_kl_estimate"]

Perturbation = Callable[[Tensor], Tensor]
_OTHER, _FLAGS, _UNCERTAINTY = "vogue_other_prompts", "vogue_perturbed", "vogue_uncertainty"


class GaussianNoise(nn.Module):
    """Additive Gaussian pixel noise ``x + std * N(0, 1)``, clamped to ``clamp`` (images in
    [0, 1] stay in range).  The default perturbation of :class:`VOGUE`."""

    def __init__(self, std: float = 0.1, clamp: tuple[float, float] | None = (0.0, 1.0)) -> None:
        super().__init__()
        if not (isinstance(std, int | float) and std >= 0 and math.isfinite(std)):
            raise ValueError(f"std must be a non-negative finite number, got {std!r}")
        self.std = float(std)
        self.clamp = None if clamp is None else (float(clamp[0]), float(clamp[1]))

    def forward(self, prompts: Tensor) -> Tensor:
        noisy = prompts + self.std * torch.randn_like(prompts)
        return noisy.clamp(*self.clamp) if self.clamp is not None else noisy

    def extra_repr(self) -> str:
        return f"std={self.std}, clamp={self.clamp}"


def symmetric_kl_estimate(logp_a: Tensor, logp_b: Tensor, clip: float = 20.0) -> Tensor:
    """Per-token ``(1 - e^{-delta}) delta`` with ``delta = logp_a - logp_b`` on tokens drawn
    from ``a``: an unbiased, non-negative estimate of ``KL(a||b) + KL(b||a)``."""
    dtype = torch.float64 if logp_a.dtype == torch.float64 else torch.float32
    delta = (logp_a.to(dtype) - logp_b.to(dtype)).clamp(-clip, clip)
    return -torch.expm1(-delta) * delta


def _clipped_bonus(bonus: Tensor, advantages: Tensor, kappa: float | None) -> Tensor:
    if kappa is None:
        return bonus
    return torch.minimum(bonus, advantages.abs() / kappa)


class VOGUE(GRPO):
    """GRPO with VOGUE's visual-uncertainty and entropy bonuses and annealed perturbed sampling.

    Args:
        perturbation: ``prompts -> perturbed prompts`` (default ``GaussianNoise(0.1)``).
        uncertainty_coef: ``c_U``, the bonus per unit of symmetric KL.
        entropy_coef: ``c_H``, the bonus per nat of token entropy (needs ``Rollouts.entropy``).
        bonus_clip: ``kappa``: each bonus is at most ``|A| / kappa``; ``None`` leaves it
            unclipped (then a zero-advantage group gets a bonus too).
        bonus_on: which rollouts get the uncertainty bonus: ``"perturbed"`` (the rollouts of
            the perturbed branch, the paper's) or ``"all"``.
        share_start, share_end: the share of prompts sampled on their perturbed image at step 0
            and after ``anneal_steps``.
        anneal_steps: length of the schedule in optimizer steps (0: constant ``share_end``).
        schedule: ``"linear"`` or ``"cosine"`` interpolation.
        **grpo: the arguments of :class:`~geozoo.objectives.GRPO`.

    Logs GRPO's values plus ``uncertainty`` (mean ``U``), ``uncertainty_bonus``,
    ``entropy_bonus`` and ``perturbed_share`` (of this step's rollouts).
    """

    def __init__(
        self,
        perturbation: nn.Module | Perturbation | None = None,
        uncertainty_coef: float = 0.5,
        entropy_coef: float = 0.1,
        bonus_clip: float | None = 2.0,
        bonus_on: Literal["perturbed", "all"] = "perturbed",
        share_start: float = 0.5,
        share_end: float = 0.0,
        anneal_steps: int = 1000,
        schedule: Literal["linear", "cosine"] = "linear",
        **grpo: Any,
    ) -> None:
        super().__init__(**grpo)
        perturbation = GaussianNoise() if perturbation is None else perturbation
        if not callable(perturbation):
            raise TypeError(
                f"perturbation must be a callable prompts -> prompts, got {type(perturbation)}"
            )
        for label, value in (
            ("uncertainty_coef", uncertainty_coef),
            ("entropy_coef", entropy_coef),
        ):
            if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{label} must be a non-negative finite number, got {value!r}")
        if bonus_clip is not None and not (isinstance(bonus_clip, int | float) and bonus_clip > 0):
            raise ValueError(f"bonus_clip must be positive or None, got {bonus_clip!r}")
        if bonus_on not in ("perturbed", "all"):
            raise ValueError(f"bonus_on must be 'perturbed' or 'all', got {bonus_on!r}")
        for label, value in (("share_start", share_start), ("share_end", share_end)):
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"{label} must be in [0, 1], got {value!r}")
        if isinstance(anneal_steps, bool) or not isinstance(anneal_steps, int) or anneal_steps < 0:
            raise ValueError(f"anneal_steps must be a non-negative integer, got {anneal_steps!r}")
        if schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")
        if isinstance(perturbation, nn.Module):
            self.perturbation = perturbation
        else:
            object.__setattr__(self, "perturbation", perturbation)
        self.uncertainty_coef = float(uncertainty_coef)
        self.entropy_coef = float(entropy_coef)
        self.bonus_clip = None if bonus_clip is None else float(bonus_clip)
        self.bonus_on = bonus_on
        self.share_start, self.share_end = float(share_start), float(share_end)
        self.anneal_steps = anneal_steps
        self.schedule = schedule

    def check_network(self, network: nn.Module) -> None:
        if not callable(getattr(network, "log_probs", None)):
            raise TypeError(
                "VOGUE scores responses on the perturbed image and needs a policy with "
                f"log_probs(prompts, responses, group, temperature); got {type(network).__name__}"
            )

    # ------------------------------------------------------------------ sampling schedule

    def perturbed_share(self, step: int) -> float:
        """The share of prompts sampled on the perturbed image at optimizer step ``step``."""
        if self.anneal_steps == 0:
            return self.share_end
        t = min(max(step, 0), self.anneal_steps) / self.anneal_steps
        if self.schedule == "cosine":
            t = 0.5 * (1.0 - math.cos(math.pi * t))
        return self.share_start + t * (self.share_end - self.share_start)

    @torch.no_grad()
    def sampling_prompts(self, prompts: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The task's hook: the prompts to sample from at ``step`` (a random
        ``round(share * B)`` of them perturbed) and the extras the rollouts must carry."""
        noisy = self.perturbation(prompts)
        if noisy.shape != prompts.shape:
            raise ValueError(
                f"the perturbation changed the prompts' shape from {tuple(prompts.shape)} to "
                f"{tuple(noisy.shape)}"
            )
        count = round(self.perturbed_share(step) * len(prompts))
        flags = torch.zeros(len(prompts), dtype=torch.bool, device=prompts.device)
        flags[torch.randperm(len(prompts), device=prompts.device)[:count]] = True
        where = flags.view(-1, *([1] * (prompts.ndim - 1)))
        sampled = torch.where(where, noisy, prompts)
        other = torch.where(where, prompts, noisy)
        return sampled, {_OTHER: other, _FLAGS: flags}

    # ------------------------------------------------------------------ the signals

    def _branches(self, rollouts: Rollouts) -> tuple[Tensor, Tensor]:
        """The other branch's prompts and the ``(N,)`` perturbed-branch flags."""
        other = rollouts.extras.get(_OTHER)
        flags = rollouts.extras.get(_FLAGS)
        if other is None:
            if self.bonus_on == "perturbed" and self.uncertainty_coef > 0:
                raise ValueError(
                    "VOGUE(bonus_on='perturbed') needs rollouts sampled through "
                    "VOGUE.sampling_prompts (an RL task that calls it); without it use "
                    "bonus_on='all'"
                )
            with torch.no_grad():
                other = self.perturbation(rollouts.prompts)
            flags = torch.zeros(rollouts.num_groups, dtype=torch.bool)
        return other, flags.to(rollouts.group.device)[rollouts.group]

    @torch.no_grad()
    def uncertainty(self, policy: nn.Module, rollouts: Rollouts) -> Tensor:
        """``(N,)`` visual uncertainty ``U_i``: the per-token symmetric-KL estimate between the
        sampling branch and the other one, averaged over each response's tokens."""
        other, _ = self._branches(rollouts)
        other_logp = policy.log_probs(
            other, rollouts.responses, rollouts.group, rollouts.temperature
        )
        per_token = symmetric_kl_estimate(rollouts.old_logp, other_logp, self.log_ratio_clip)
        per_token = per_token.masked_fill(~rollouts.mask, 0.0)
        return per_token.sum(-1) / rollouts.mask.sum(-1).clamp_min(1)

    def shaped_advantages(
        self, rollouts: Rollouts, uncertainty: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(N, T)`` advantages ``A + b_U + b_H`` and the mean bonuses."""
        adv = self.advantages(rollouts)
        _, perturbed = self._branches(rollouts)
        u_bonus = _clipped_bonus(self.uncertainty_coef * uncertainty.to(adv), adv, self.bonus_clip)
        if self.bonus_on == "perturbed":
            u_bonus = torch.where(perturbed, u_bonus, torch.zeros_like(u_bonus))
        h_bonus = torch.zeros_like(rollouts.old_logp, dtype=adv.dtype)
        if self.entropy_coef > 0:
            if rollouts.entropy is None:
                raise ValueError("VOGUE(entropy_coef > 0) needs Rollouts.entropy")
            entropy = rollouts.entropy.detach().to(adv.dtype)
            h_bonus = _clipped_bonus(self.entropy_coef * entropy, adv[:, None], self.bonus_clip)
        shaped = adv[:, None] + u_bonus[:, None] + h_bonus
        shaped = shaped.masked_fill(~rollouts.mask, 0.0)
        logs = {
            "uncertainty_bonus": as_scalar(u_bonus),
            "entropy_bonus": as_scalar(masked_mean(h_bonus, rollouts.mask)),
            "perturbed_share": as_scalar(perturbed.float()),
        }
        return shaped, logs

    def token_advantages(self, rollouts: Rollouts) -> Tensor:
        uncertainty = rollouts.extras.get(_UNCERTAINTY)
        if uncertainty is None:
            raise ValueError("VOGUE's advantages need the uncertainty VOGUE.forward computes")
        return self.shaped_advantages(rollouts, uncertainty)[0]

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        rollouts = rollouts_from(ctx)
        self.check_network(ctx.network)
        uncertainty = self.uncertainty(ctx.network, rollouts)
        rollouts.extras[_UNCERTAINTY] = uncertainty
        loss, logs = super().forward(ctx)
        with torch.no_grad():
            logs.update(self.shaped_advantages(rollouts, uncertainty)[1])
        logs["uncertainty"] = as_scalar(uncertainty)
        return ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, perturbation={self.perturbation!r}, "
            f"uncertainty_coef={self.uncertainty_coef}, entropy_coef={self.entropy_coef}, "
            f"bonus_clip={self.bonus_clip}, share={self.share_start}->{self.share_end} over "
            f"{self.anneal_steps} steps ({self.schedule})"
        )
