"""GRPO with a choice of divergence to a reference policy (DPH-RL), and KDRL.

All three read the :class:`geozoo.rl.Rollouts` that the RL task puts in
``ctx.extras["rollouts"]`` (and ``ctx.extras["rehearsal"]`` for the mass-covering divergences);
see :mod:`geozoo.rl.rollouts` for what they carry.

GRPO (Shao et al. 2024, "DeepSeekMath", Eq. 3; the group advantage of Eq. 4 for outcome
rewards): with ``A_i = (r_i - mean(r_group)) / (std(r_group) + eps)`` and per-token importance
ratios ``rho_it = pi(o_it) / pi_old(o_it)``, the loss is

    -mean_{i,t} min(rho_it A_i, clip(rho_it, 1 - eps_low, 1 + eps_high) A_i) + beta D

averaged per token over the batch (``aggregation="token"``, DAPO, Yu et al. 2025) or per
sequence then over sequences (``"sequence"``, the paper's Eq. 3).

The divergence ``D`` to the reference is chosen by name (policy-centric names, as in RLHF
papers: "reverse" KL is ``KL(pi || pi_ref)``):

* ``"reverse_kl"``: ``KL(pi || pi_ref)`` on the policy's own samples by Schulman's estimators
  (:func:`geozoo.objectives.divergences.kl_estimate`): ``k1`` is subtracted from the reward
  (``r_i - beta sum_t k1_it``, so it shapes the advantage), ``k2`` or ``k3`` are added to the
  loss (k3 is DeepSeekMath's choice; k2's gradient is the exact on-policy reverse-KL gradient).
* ``"forward_kl"`` (``KL(pi_ref || pi)``), ``"js"``, ``"alpha"``, ``"total_variation"``:
  DPH-RL (Li et al. 2025, "The choice of divergence: a neglected key to mitigating diversity
  collapse in RLVR"): the f-divergence ``D_f(pi || pi_ref) = E_{pi_ref}[f(pi / pi_ref)]``
  estimated per token on samples *of the reference* (``ctx.extras["rehearsal"]``), with the
  variance-reducing linear term removed, ``f(u) - f'(1)(u - 1)`` (for forward KL this is
  ``u - 1 - log u``, DPH-RL's generator).  ``alpha`` follows the f-DPO / DPH-RL convention:
  ``f(u) = (u^(1-a) - (1-a) u - a) / (a (a - 1))``, ``a -> 0`` reverse KL, ``a -> 1`` forward.
* ``"none"``: no divergence term (``beta`` is ignored).

KDRL (Xu et al. 2025, "KDRL: post-training reasoning LLMs via unified knowledge distillation
and reinforcement learning"): GRPO plus ``beta_kd * KL(pi || pi_teacher)`` on the policy's own
samples (k2 by default), with the paper's reward-guided masking as an option.

Numerics: every log-ratio is computed in float32 (float64 stays) and clamped to
``+-log_ratio_clip`` before it is exponentiated, so log-probabilities of -1e4 and bfloat16
inputs give finite losses and gradients.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext, as_scalar
from geozoo.objectives.divergences import FGenerator, generator, kl_estimate
from geozoo.rl.rollouts import Rollouts, masked_mean, sequence_sum

__all__ = [
    "GRPO",
    "KDRL",
    "RL_DIVERGENCES",
    "clipped_surrogate",
    "group_advantages",
    "policy_generator",
    "rehearsal_divergence",
    "rollouts_from",
]

#: Divergences of :class:`GRPO`: ``"reverse_kl"`` on the policy's samples, the others on
#: samples of the reference (DPH-RL).
RL_DIVERGENCES = ("none", "reverse_kl", "forward_kl", "js", "alpha", "total_variation")
_ON_REFERENCE_SAMPLES = ("forward_kl", "js", "alpha", "total_variation")
Aggregation = Literal["token", "sequence"]


def policy_generator(name: str, alpha: float | None = None) -> FGenerator:
    """Generator ``f`` of ``D_f(pi || q) = E_q[f(pi / q)]`` for the policy-centric ``name``.

    ``"reverse_kl"`` is ``KL(pi || q)`` (``f = u log u``), ``"forward_kl"`` is ``KL(q || pi)``
    (``f = -log u``), ``"js"`` and ``"total_variation"`` are symmetric, and ``"alpha"`` uses
    the f-DPO convention (``alpha -> 0`` reverse KL, ``alpha -> 1`` forward KL, Wang et al.
    2024, Table 1), i.e. Amari's generator at ``1 - alpha``.
    """
    key = name.lower()
    if key == "reverse_kl":
        return generator("kl")
    if key == "forward_kl":
        return generator("reverse_kl")
    if key in ("js", "total_variation"):
        return generator(key)
    if key == "alpha":
        if alpha is None or not 0.0 < alpha < 1.0:
            raise ValueError(f"the alpha divergence needs 0 < alpha < 1, got {alpha!r}")
        return generator("alpha", alpha=1.0 - alpha)
    raise ValueError(
        f"unknown divergence {name!r}: expected one of reverse_kl, forward_kl, js, alpha, "
        "total_variation"
    )


def _float(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float64 else x.float()


def group_advantages(
    rewards: Tensor,
    group: Tensor,
    num_groups: int | None = None,
    scale: bool = True,
    eps: float = 1e-4,
) -> Tensor:
    """GRPO's outcome advantages ``(r_i - mean_g) / (std_g + eps)`` within each group.

    Args:
        rewards: ``(N,)`` rewards.
        group: ``(N,)`` long group (prompt) index of each reward.
        num_groups: number of groups (default ``group.max() + 1``).
        scale: divide by the group's standard deviation (unbiased, ``n - 1``); ``False`` gives
            Dr. GRPO's unscaled ``r_i - mean_g`` (Liu et al. 2025).
        eps: added to the standard deviation; a group whose rewards are all equal gets zero
            advantages (never NaN), as does a group of one.

    Returns:
        ``(N,)`` advantages in float32 (float64 stays).
    """
    if rewards.ndim != 1 or group.shape != rewards.shape:
        raise ValueError(
            f"rewards and group must both have shape (N,), got {tuple(rewards.shape)} and "
            f"{tuple(group.shape)}"
        )
    r = _float(rewards)
    num_groups = int(group.max()) + 1 if num_groups is None else num_groups
    count = torch.zeros(num_groups, dtype=r.dtype, device=r.device).index_add_(
        0, group, torch.ones_like(r)
    )
    mean = torch.zeros_like(count).index_add_(0, group, r) / count.clamp_min(1)
    centred = r - mean[group]
    if not scale:
        return centred
    sq = torch.zeros_like(count).index_add_(0, group, centred.square())
    std = (sq / (count - 1).clamp_min(1)).sqrt()
    return centred / (std[group] + eps)


def clipped_surrogate(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    log_ratio_clip: float = 20.0,
) -> tuple[Tensor, Tensor]:
    """Per-token PPO loss ``-min(rho A, clip(rho, 1 - eps, 1 + eps_high) A)`` (Schulman et al.
    2017, Eq. 7) and a bool tensor of the tokens whose ratio was clipped.

    ``advantages`` broadcasts against ``logp`` (``(N, 1)`` for sequence-level advantages).
    Outside the trust region (``rho > 1 + eps_high`` with ``A > 0``, ``rho < 1 - eps`` with
    ``A < 0``) the loss is constant in ``logp``: its gradient there is exactly zero.
    """
    high = epsilon if epsilon_high is None else epsilon_high
    log_ratio = (_float(logp) - _float(old_logp)).clamp(-log_ratio_clip, log_ratio_clip)
    ratio = log_ratio.exp()
    adv = _float(advantages)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - epsilon, 1.0 + high) * adv
    return -torch.minimum(unclipped, clipped), clipped < unclipped


def rehearsal_divergence(
    logp: Tensor,
    ref_logp: Tensor,
    name: str,
    alpha: float | None = None,
    log_ratio_clip: float = 20.0,
) -> Tensor:
    """Per-token ``f(u) - f'(1)(u - 1)`` with ``u = pi / pi_ref`` on samples of ``pi_ref``:
    an unbiased, non-negative estimate of ``D_f(pi || pi_ref)`` per token (DPH-RL).

    ``name`` is policy-centric (see :func:`policy_generator`).
    """
    gen = policy_generator(name, alpha)
    log_u = (_float(logp) - _float(ref_logp)).clamp(-log_ratio_clip, log_ratio_clip)
    u = log_u.exp()
    slope = gen.f_prime(torch.ones((), dtype=u.dtype, device=u.device))
    return gen.f(u) - slope * (u - 1.0)


def rollouts_from(ctx: StepContext, key: str = "rollouts") -> Rollouts:
    """The :class:`Rollouts` an RL task put in ``ctx.extras[key]`` (with a clear error when a
    GRPO-family objective is used in a task that does not sample)."""
    rollouts = ctx.extras.get(key)
    if not isinstance(rollouts, Rollouts):
        raise ValueError(
            f"this objective needs sampled rollouts in ctx.extras[{key!r}] (use it in "
            f"geozoo.tasks.RLTask); got {type(rollouts).__name__}"
        )
    return rollouts


class GRPO(Objective):
    """Group relative policy optimisation with a divergence to the reference chosen by name.

    See the module docstring for the loss.  Logged: ``advantage_abs``, ``clip_fraction``,
    ``ratio`` (mean importance ratio) and ``divergence`` (the estimate of ``D``, when used).

    Args:
        weight, name: see :class:`~geozoo.objectives.Objective`.
        epsilon: lower clip range ``eps`` (ratio floor ``1 - eps``).
        epsilon_high: upper clip range (DAPO's clip-higher); default ``epsilon``.
        scale_rewards: divide advantages by the group's standard deviation.
        aggregation: ``"token"`` (mean over all tokens) or ``"sequence"`` (per response, then
            over responses).
        divergence: one of :data:`RL_DIVERGENCES`.
        estimator: for ``"reverse_kl"``: ``"k1"`` (in the reward), ``"k2"`` or ``"k3"`` (loss).
        beta: strength of the divergence.
        alpha: the alpha of ``divergence="alpha"`` (f-DPO convention, ``0 < alpha < 1``).
        log_ratio_clip: clamp of every log-ratio before exponentiation.
        std_eps: ``eps`` of the advantage normalisation.
    """

    def __init__(
        self,
        weight: float = 1.0,
        name: str | None = None,
        epsilon: float = 0.2,
        epsilon_high: float | None = None,
        scale_rewards: bool = True,
        aggregation: Aggregation = "token",
        divergence: str = "none",
        estimator: Literal["k1", "k2", "k3"] = "k3",
        beta: float = 0.04,
        alpha: float = 0.5,
        log_ratio_clip: float = 20.0,
        std_eps: float = 1e-4,
    ) -> None:
        super().__init__(weight, name)
        if divergence not in RL_DIVERGENCES:
            raise ValueError(f"divergence must be one of {RL_DIVERGENCES}, got {divergence!r}")
        if estimator not in ("k1", "k2", "k3"):
            raise ValueError(f"estimator must be 'k1', 'k2' or 'k3', got {estimator!r}")
        if aggregation not in ("token", "sequence"):
            raise ValueError(f"aggregation must be 'token' or 'sequence', got {aggregation!r}")
        if not epsilon > 0 or (epsilon_high is not None and not epsilon_high > 0):
            raise ValueError(f"clip ranges must be positive, got {epsilon}, {epsilon_high}")
        if divergence in _ON_REFERENCE_SAMPLES:
            policy_generator(divergence, alpha)  # validates alpha now
        self.epsilon = float(epsilon)
        self.epsilon_high = epsilon_high
        self.scale_rewards = scale_rewards
        self.aggregation = aggregation
        self.divergence = divergence
        self.estimator = estimator
        self.beta = float(beta)
        self.alpha = float(alpha)
        self.log_ratio_clip = float(log_ratio_clip)
        self.std_eps = float(std_eps)

    @property
    def needs_reference(self) -> bool:
        """The task must fill ``Rollouts.ref_logp`` (reverse KL to the reference)."""
        return self.divergence == "reverse_kl" and self.beta != 0

    @property
    def needs_rehearsal(self) -> bool:
        """The task must put samples of the reference under ``ctx.extras["rehearsal"]``."""
        return self.divergence in _ON_REFERENCE_SAMPLES and self.beta != 0

    def shaped_rewards(self, rollouts: Rollouts) -> Tensor:
        """The rewards the advantages are computed from (``k1`` subtracted when chosen)."""
        rewards = _float(rollouts.rewards)
        if self.needs_reference and self.estimator == "k1":
            kl = kl_estimate(rollouts.old_logp, self._ref_logp(rollouts), "k1")
            rewards = rewards - self.beta * sequence_sum(kl, rollouts.mask)
        return rewards

    def advantages(self, rollouts: Rollouts) -> Tensor:
        """``(N,)`` group-normalised advantages of the (shaped) rewards."""
        return group_advantages(
            self.shaped_rewards(rollouts),
            rollouts.group,
            rollouts.num_groups,
            self.scale_rewards,
            self.std_eps,
        )

    def token_advantages(self, rollouts: Rollouts) -> Tensor:
        """The surrogate's advantages: ``(N, 1)`` per response, or ``(N, T)`` per token."""
        return self.advantages(rollouts)[:, None]

    def surrogate(self, rollouts: Rollouts) -> tuple[Tensor, dict[str, Tensor]]:
        """The per-token clipped surrogate ``(N, T)`` (not aggregated) and its logs."""
        adv = self.token_advantages(rollouts)
        per_token, clipped = clipped_surrogate(
            rollouts.logp,
            rollouts.old_logp,
            adv,
            self.epsilon,
            self.epsilon_high,
            self.log_ratio_clip,
        )
        log_ratio = (_float(rollouts.logp.detach()) - _float(rollouts.old_logp)).clamp(
            -self.log_ratio_clip, self.log_ratio_clip
        )
        logs = {
            "advantage_abs": as_scalar(adv.abs().mean()),
            "clip_fraction": as_scalar(masked_mean(clipped.float(), rollouts.mask)),
            "ratio": as_scalar(masked_mean(log_ratio.exp(), rollouts.mask)),
        }
        return per_token, logs

    def policy_loss(self, rollouts: Rollouts) -> tuple[Tensor, dict[str, Tensor]]:
        """The clipped surrogate, aggregated, and its logs (no divergence term)."""
        per_token, logs = self.surrogate(rollouts)
        return masked_mean(per_token, rollouts.mask, self.aggregation), logs

    def _ref_logp(self, rollouts: Rollouts) -> Tensor:
        if rollouts.ref_logp is None:
            raise ValueError(
                f"{type(self).__name__}(divergence='reverse_kl') needs Rollouts.ref_logp: give "
                "the RL task a reference policy"
            )
        return rollouts.ref_logp

    def divergence_tokens(
        self, ctx: StepContext, rollouts: Rollouts
    ) -> tuple[Tensor, Rollouts] | None:
        """Per-token estimate of ``D`` ``(N', T')`` and the rollouts it was estimated on (the
        policy's own for reverse KL, detached for ``k1``, which lives in the reward; the
        reference's samples otherwise), or ``None`` when the divergence is off."""
        if self.divergence == "none" or self.beta == 0:
            return None
        if self.divergence == "reverse_kl":
            kl = kl_estimate(
                rollouts.logp, self._ref_logp(rollouts), self.estimator, self.log_ratio_clip
            )
            return (kl.detach() if self.estimator == "k1" else kl), rollouts
        rehearsal = rollouts_from(ctx, "rehearsal")
        if rehearsal.ref_logp is None:
            raise ValueError("the rehearsal rollouts must carry the reference's ref_logp")
        per_token = rehearsal_divergence(
            rehearsal.logp, rehearsal.ref_logp, self.divergence, self.alpha, self.log_ratio_clip
        )
        return per_token, rehearsal

    def divergence_loss(self, ctx: StepContext, rollouts: Rollouts) -> Tensor | None:
        """``D`` as a loss (``None`` when the divergence is off; no gradient for ``k1``)."""
        terms = self.divergence_tokens(ctx, rollouts)
        if terms is None:
            return None
        per_token, on = terms
        return masked_mean(per_token, on.mask, self.aggregation if on is rollouts else "token")

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        rollouts = rollouts_from(ctx)
        loss, logs = self.policy_loss(rollouts)
        divergence = self.divergence_loss(ctx, rollouts)
        if divergence is not None:
            logs["divergence"] = as_scalar(divergence)
            if divergence.requires_grad:
                loss = loss + self.beta * divergence
        return ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, divergence={self.divergence!r}, beta={self.beta}, "
            f"estimator={self.estimator!r}, aggregation={self.aggregation!r}"
        )


class KDRL(GRPO):
    """GRPO plus on-policy distillation: ``beta_kd * KL(pi || pi_teacher)`` on the policy's own
    samples (Xu et al. 2025, KDRL, Eq. 6), estimated per token by ``kd_estimator`` (k2: its
    gradient is the reverse-KL gradient; k3 as in GRPO).

    Args:
        teacher: a policy (anything with ``log_probs(prompts, responses, group, temperature)``,
            e.g. :class:`geozoo.rl.DigitSumPolicy`) or the name of a zoo entry loaded with
            ``create_model(teacher, pretrained=True)``.  It is frozen and not a submodule (it is
            neither trained nor saved with the objective).
        beta_kd: strength of the teacher term at step 0.
        beta_kd_final: strength after ``anneal_steps`` (linear; default: constant ``beta_kd``).
        anneal_steps: length of the linear schedule in optimizer steps.
        kd_estimator: ``"k2"`` or ``"k3"``.
        mask_correct: drop the teacher term on responses with positive reward (the paper's
            reward-guided masking).
        **grpo: the arguments of :class:`GRPO`.
    """

    def __init__(
        self,
        teacher: nn.Module | str,
        beta_kd: float = 5e-3,
        beta_kd_final: float | None = None,
        anneal_steps: int = 0,
        kd_estimator: Literal["k2", "k3"] = "k2",
        mask_correct: bool = False,
        **grpo: Any,
    ) -> None:
        super().__init__(**grpo)
        if kd_estimator not in ("k2", "k3"):
            raise ValueError(f"kd_estimator must be 'k2' or 'k3', got {kd_estimator!r}")
        if isinstance(teacher, str):
            from geozoo.zoo.factory import create_model

            teacher = create_model(teacher, pretrained=True)
        if not hasattr(teacher, "log_probs"):
            raise TypeError(
                "teacher must be a policy with log_probs(prompts, responses, group, "
                f"temperature), got {type(teacher).__name__}"
            )
        teacher.eval().requires_grad_(False)
        object.__setattr__(self, "teacher", teacher)  # frozen, not a submodule
        self.beta_kd = float(beta_kd)
        self.beta_kd_final = self.beta_kd if beta_kd_final is None else float(beta_kd_final)
        self.anneal_steps = int(anneal_steps)
        self.kd_estimator = kd_estimator
        self.mask_correct = mask_correct

    def kd_strength(self, step: int) -> float:
        """``beta_kd`` at optimizer step ``step`` (linear anneal, then constant)."""
        if self.anneal_steps <= 0:
            return self.beta_kd
        t = min(max(step, 0), self.anneal_steps) / self.anneal_steps
        return self.beta_kd + t * (self.beta_kd_final - self.beta_kd)

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        loss, logs = super().forward(ctx)
        rollouts = rollouts_from(ctx)
        teacher = self.teacher
        device = rollouts.responses.device
        if next(teacher.parameters(), torch.empty(0, device=device)).device != device:
            teacher.to(device)
        with torch.no_grad():
            teacher_logp = teacher.log_probs(
                rollouts.prompts, rollouts.responses, rollouts.group, rollouts.temperature
            )
        mask = rollouts.mask
        if self.mask_correct:
            mask = mask & (rollouts.rewards <= 0)[:, None]
        kd = kl_estimate(rollouts.logp, teacher_logp, self.kd_estimator, self.log_ratio_clip)
        kd_loss = masked_mean(kd, mask, self.aggregation)
        beta = self.kd_strength(ctx.global_step)
        logs["teacher_kl"] = as_scalar(kd_loss)
        logs["beta_kd"] = torch.tensor(beta)
        return ObjectiveOutput(loss + beta * kd_loss, logs)
