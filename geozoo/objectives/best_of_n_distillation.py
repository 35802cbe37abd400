"""Best-of-N distillation: train the policy on the best of its own ``N`` samples.

Each RL step samples ``N = G`` responses per prompt from the current policy ``pi``; the best by
reward (ties broken uniformly at random, :func:`~geozoo.objectives.best_of_n.select_best`) is a
sample of the best-of-N policy ``pi_BoN`` of ``pi``, and the loss is its negative
log-likelihood under ``pi``, a Monte-Carlo estimate of the cross-entropy ``H(pi_BoN, pi)``.
Minimising it moves ``pi`` toward ``pi_BoN``, whose divergence from ``pi`` is at most
``KL(pi_BoN || pi) <= log N - (N - 1) / N`` (Beirami et al. 2024; exact without reward ties),
and which Yang et al. 2024 ("Asymptotics of language model alignment") show to be
asymptotically the KL-regularised optimum ``pi e^{lambda r}``; repeated, the step is best-of-N
policy iteration (expert iteration / reward-ranked fine-tuning).

With a 0/1 verifier a prompt whose ``N`` responses all fail has a uniformly chosen failure as
its best, a sample of ``pi`` itself, whose log-likelihood gradient is zero in expectation: the
faithful ``pi_BoN`` target costs only variance there.  ``min_reward`` drops such prompts instead
(the filtered variant of reward-ranked fine-tuning).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext, as_scalar
from geozoo.objectives.best_of_n import best_of_n_kl_bound, select_best
from geozoo.objectives.grpo import rollouts_from
from geozoo.rl.rollouts import Rollouts, masked_mean

__all__ = ["BestOfNDistillation", "best_in_groups"]


def best_in_groups(rollouts: Rollouts, generator: torch.Generator | None = None) -> Tensor:
    """``(B,)`` index (into the responses) of each prompt's highest-reward response, ties
    broken uniformly at random; every prompt must have the same number of responses."""
    group = rollouts.group
    counts = torch.bincount(group, minlength=rollouts.num_groups)
    if counts.numel() == 0 or bool((counts != counts[0]).any()) or int(counts[0]) == 0:
        raise ValueError(
            f"best-of-N needs the same number N >= 1 of responses for every prompt, got "
            f"{counts.tolist()}"
        )
    order = torch.argsort(group, stable=True).view(len(counts), int(counts[0]))
    best = select_best(rollouts.rewards[order], generator)
    return order.gather(1, best[:, None]).squeeze(1)


class BestOfNDistillation(Objective):
    """Negative log-likelihood of each prompt's best sampled response (module docstring).

    It reads the task's rollouts (``ctx.extras["rollouts"]``, :class:`geozoo.tasks.RLTask`) and
    needs neither a reference nor a second forward pass: the sampling pass's log-probs carry
    the gradient.

    Args:
        min_reward: drop prompts whose best reward is below it (``None``: keep every prompt,
            the exact best-of-N target).
        aggregation: ``"token"`` (mean over the kept responses' tokens) or ``"sequence"``.
        weight, name: see :class:`~geozoo.objectives.Objective`.

    Logs ``best_reward`` (mean over prompts), ``kept`` (share of prompts kept) and
    ``kl_bound`` (``log N - (N - 1) / N``, the most ``pi_BoN`` can differ from ``pi`` in KL).
    """

    def __init__(
        self,
        min_reward: float | None = None,
        aggregation: str = "token",
        weight: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__(weight=weight, name=name or "best_of_n")
        if aggregation not in ("token", "sequence"):
            raise ValueError(f"aggregation must be 'token' or 'sequence', got {aggregation!r}")
        if min_reward is not None and not math.isfinite(min_reward):
            raise ValueError(f"min_reward must be a finite number or None, got {min_reward!r}")
        self.min_reward = min_reward
        self.aggregation = aggregation

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        rollouts = rollouts_from(ctx)
        best = best_in_groups(rollouts)
        rewards = rollouts.rewards[best].float()
        keep = torch.ones_like(rewards, dtype=torch.bool)
        if self.min_reward is not None:
            keep = rewards >= self.min_reward
        chosen = best[keep]
        mask = rollouts.mask[chosen]
        if len(chosen):
            loss = -masked_mean(rollouts.logp[chosen], mask, self.aggregation)
        else:  # nothing to imitate: a zero that keeps the graph
            loss = rollouts.logp.sum() * 0.0
        n = len(rollouts.rewards) // max(len(best), 1)
        logs = {
            "best_reward": as_scalar(rewards.mean()),
            "kept": as_scalar(keep.float().mean()),
            "kl_bound": as_scalar(torch.tensor(best_of_n_kl_bound(n))),
        }
        return ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, min_reward={self.min_reward}, "
            f"aggregation={self.aggregation!r}"
        )
