"""Preference and distribution matching with any f-divergence: f-DPO and f-DPG.

Both read the :class:`geozoo.rl.Rollouts` of ``ctx.extras["rollouts"]`` (see
:mod:`geozoo.rl.rollouts`); their divergence names are policy-centric, as in
:func:`geozoo.objectives.grpo.policy_generator`.

f-DPO (Wang et al. 2024, "Beyond reverse KL: generalizing direct preference optimization with
diverse divergence constraints", Eq. 9): with the sequence log-ratio
``rho = log pi(y|x) - log pi_ref(y|x)`` of a preferred response ``w`` and a rejected one ``l``,

    L = -log sigmoid(beta (psi(rho_w) - psi(rho_l))),   psi(rho) = f'(exp(rho)) + const,

    reverse_kl: psi = rho (exactly DPO, Rafailov et al. 2023, Eq. 7)
    forward_kl: psi = -exp(-rho)
    js:         psi = log sigmoid(rho)  (= log 2 - log(1 + exp(-rho)) - log 2)
    alpha:      psi = -exp(-alpha rho) / alpha,  0 < alpha < 1.

Pairs come from verifiable rewards: within each prompt's group, every response with a higher
reward than another forms a (preferred, rejected) pair.

f-DPG (Go et al. 2023, "Aligning language models with preferences through f-divergence
minimization", Eq. 6): the policy moves toward a target ``p(y|x) = P(y|x) / Z(x)`` given by a
scorer, here the reward-tilted reference ``P = pi_ref exp(r / tau)`` (``tau -> 0``: the
reference filtered to correct answers), by policy gradient with the pseudo-reward
``R = -f'(pi / p)`` and a moving-average baseline.  ``Z(x)`` is estimated per prompt by
importance sampling over the group.  The baseline is a registered buffer (checkpointed).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext, as_scalar
from geozoo.objectives.grpo import policy_generator, rollouts_from
from geozoo.rl.rollouts import Rollouts

__all__ = ["FDPG", "FDPO", "PSI_DIVERGENCES", "preference_pairs", "psi"]

#: Divergences with an f-DPO score.
PSI_DIVERGENCES = ("reverse_kl", "forward_kl", "js", "alpha")


def _float(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float64 else x.float()


def psi(
    rho: Tensor, divergence: str = "reverse_kl", alpha: float = 0.5, cap: float = 50.0
) -> Tensor:
    """The f-DPO score ``psi(rho)`` of a sequence log-ratio (see the module docstring).

    ``rho`` is computed in float32 (float64 stays); the exponential forms clamp ``-rho`` (or
    ``-alpha rho``) to at most ``cap`` so that very unlikely responses stay finite.
    """
    r = _float(rho)
    if divergence == "reverse_kl":
        return r
    if divergence == "forward_kl":
        return -torch.exp((-r).clamp_max(cap))
    if divergence == "js":
        return F.logsigmoid(r)
    if divergence == "alpha":
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"f-DPO's alpha divergence needs 0 < alpha < 1, got {alpha!r}")
        return -torch.exp((-alpha * r).clamp_max(cap)) / alpha
    raise ValueError(f"divergence must be one of {PSI_DIVERGENCES}, got {divergence!r}")


def preference_pairs(rewards: Tensor, group: Tensor) -> tuple[Tensor, Tensor]:
    """Indices ``(preferred, rejected)`` of every pair of responses to the same prompt whose
    rewards differ (the higher reward is preferred)."""
    same = group[:, None] == group[None, :]
    better = rewards[:, None] > rewards[None, :]
    winners, losers = torch.nonzero(same & better, as_tuple=True)
    return winners, losers


def _ref_logp(objective: Objective, rollouts: Rollouts) -> Tensor:
    if rollouts.ref_logp is None:
        raise ValueError(
            f"{type(objective).__name__} needs Rollouts.ref_logp: give the RL task a reference"
        )
    return rollouts.ref_logp


class FDPO(Objective):
    """f-DPO on preference pairs built from verifiable rewards (see the module docstring).

    Args:
        weight, name: see :class:`~geozoo.objectives.Objective`.
        beta: the inverse temperature ``beta``.
        divergence: one of :data:`PSI_DIVERGENCES`.
        alpha: the alpha of ``divergence="alpha"``.
        cap: clamp of the exponent in ``psi``.

    Logged: ``pairs`` (number of pairs), ``accuracy`` (fraction with ``psi_w > psi_l``) and
    ``margin`` (mean ``beta (psi_w - psi_l)``).  A batch without a pair contributes a zero loss.
    """

    needs_reference = True

    def __init__(
        self,
        weight: float = 1.0,
        name: str | None = None,
        beta: float = 0.1,
        divergence: str = "reverse_kl",
        alpha: float = 0.5,
        cap: float = 50.0,
    ) -> None:
        super().__init__(weight, name)
        psi(torch.zeros(1), divergence, alpha)  # validate the choice now
        self.beta = float(beta)
        self.divergence = divergence
        self.alpha = float(alpha)
        self.cap = float(cap)

    def pair_loss(self, rho_w: Tensor, rho_l: Tensor) -> Tensor:
        """``-log sigmoid(beta (psi(rho_w) - psi(rho_l)))`` per pair."""
        margin = self.beta * (
            psi(rho_w, self.divergence, self.alpha, self.cap)
            - psi(rho_l, self.divergence, self.alpha, self.cap)
        )
        return -F.logsigmoid(margin)

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        rollouts = rollouts_from(ctx)
        _ref_logp(self, rollouts)
        rho = rollouts.sequence_logp("logp") - rollouts.sequence_logp("ref_logp")
        winners, losers = preference_pairs(rollouts.rewards, rollouts.group)
        if winners.numel() == 0:
            zero = rollouts.logp.sum() * 0.0
            return ObjectiveOutput(zero, {"pairs": torch.tensor(0.0)})
        losses = self.pair_loss(rho[winners], rho[losers])
        with torch.no_grad():
            margin = self.beta * (
                psi(rho[winners], self.divergence, self.alpha, self.cap)
                - psi(rho[losers], self.divergence, self.alpha, self.cap)
            )
        logs = {
            "pairs": torch.tensor(float(winners.numel())),
            "accuracy": as_scalar((margin > 0).float()),
            "margin": as_scalar(margin),
        }
        return ObjectiveOutput(losses.mean(), logs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, divergence={self.divergence!r}, beta={self.beta}"


class FDPG(Objective):
    """f-DPG toward the reward-tilted reference ``p ∝ pi_ref exp(r / tau)``.

    Per response, ``log t = log pi(y) - log p(y)`` (with ``log Z`` estimated per prompt as
    ``log mean_group exp(log P - log pi_old)``), the pseudo-reward ``R = -f'(exp(log t))`` of
    ``D_f(pi || p)`` and the loss ``-mean(w (R - b) log pi(y))`` with the importance weight
    ``w = pi / pi_old`` (1 on-policy, detached) and the baseline ``b``, a moving average of
    ``R`` kept in the buffer :attr:`baseline`.

    Args:
        weight, name: see :class:`~geozoo.objectives.Objective`.
        divergence: policy-centric name (``"forward_kl"`` is the original DPG, ``"js"`` the
            paper's best, ``"reverse_kl"``, ``"alpha"``, ``"total_variation"``).
        tau: temperature of the reward tilt.
        alpha: the alpha of ``divergence="alpha"``.
        baseline_momentum: ``b <- m b + (1 - m) mean(R)`` after each training step.
        log_ratio_clip: clamp of ``log t`` and of the importance log-ratio.
    """

    needs_reference = True

    def __init__(
        self,
        weight: float = 1.0,
        name: str | None = None,
        divergence: str = "js",
        tau: float = 0.1,
        alpha: float = 0.5,
        baseline_momentum: float = 0.9,
        log_ratio_clip: float = 20.0,
    ) -> None:
        super().__init__(weight, name)
        self.generator = policy_generator(divergence, alpha)
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau!r}")
        if not 0.0 <= baseline_momentum < 1.0:
            raise ValueError(f"baseline_momentum must be in [0, 1), got {baseline_momentum!r}")
        self.divergence = divergence
        self.tau = float(tau)
        self.baseline_momentum = float(baseline_momentum)
        self.log_ratio_clip = float(log_ratio_clip)
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("baseline_initialised", torch.zeros((), dtype=torch.bool))

    def pseudo_rewards(self, rollouts: Rollouts) -> Tensor:
        """``(N,)`` pseudo-rewards ``-f'(pi / p)`` (detached)."""
        clip = self.log_ratio_clip
        with torch.no_grad():
            logp = rollouts.sequence_logp("logp")
            old = rollouts.sequence_logp("old_logp")
            log_target = rollouts.sequence_logp("ref_logp") + _float(rollouts.rewards) / self.tau
            log_w = log_target - old
            num = rollouts.num_groups
            peak = torch.full((num,), -torch.inf, dtype=log_w.dtype, device=log_w.device)
            peak = peak.scatter_reduce(0, rollouts.group, log_w, "amax")
            shifted = torch.zeros_like(peak).index_add_(
                0, rollouts.group, (log_w - peak[rollouts.group]).exp()
            )
            count = torch.zeros_like(peak).index_add_(0, rollouts.group, torch.ones_like(log_w))
            log_z = peak + shifted.log() - count.log()
            log_t = (logp - (log_target - log_z[rollouts.group])).clamp(-clip, clip)
            return -self.generator.f_prime(log_t.exp())

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        rollouts = rollouts_from(ctx)
        _ref_logp(self, rollouts)
        rewards = self.pseudo_rewards(rollouts)
        logp = rollouts.sequence_logp("logp")
        with torch.no_grad():
            log_w = (logp - rollouts.sequence_logp("old_logp")).clamp(
                -self.log_ratio_clip, self.log_ratio_clip
            )
            baseline = self.baseline if bool(self.baseline_initialised) else rewards.mean()
            advantage = log_w.exp() * (rewards - baseline)
        loss = -(advantage * logp).mean()
        if ctx.stage == "train":
            self._update_baseline(rewards)
        logs = {"pseudo_reward": as_scalar(rewards.mean()), "baseline": as_scalar(self.baseline)}
        return ObjectiveOutput(loss, logs)

    @torch.no_grad()
    def _update_baseline(self, rewards: Tensor) -> None:
        """Move the baseline toward the batch's mean pseudo-reward, averaged over DDP ranks (so
        every rank keeps the same baseline)."""
        stats = torch.stack([rewards.sum(), torch.tensor(float(rewards.numel()))]).double()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        mean = (stats[0] / stats[1].clamp_min(1)).to(self.baseline.dtype)
        m = self.baseline_momentum if bool(self.baseline_initialised) else 0.0
        self.baseline.mul_(m).add_((1.0 - m) * mean)
        self.baseline_initialised.fill_(True)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, divergence={self.divergence!r}, tau={self.tau}"
