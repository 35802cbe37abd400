"""GRPO as one loss per prompt, for wrappers that weight prompts (e.g. KL-DRO).

:class:`~geozoo.objectives.GRPO` returns one scalar for the batch.  Instance reweighting
(:class:`~geozoo.objectives.KLDRO`, Sow et al. 2024) needs one loss per instance, and in RL with
verifiable rewards the instance is the prompt: its ``G`` responses share one advantage
baseline.  :class:`PerPromptGRPO` returns GRPO's loss split by prompt, ``(B,)``: the clipped
surrogate and the divergence ``beta D`` averaged over each prompt's tokens (or responses, with
``aggregation="sequence"``).

The *value* of a policy-gradient surrogate says nothing about how badly a prompt is solved: its
advantages are centred within the group, so it is about zero for every prompt.  A weighting
that reads the values (KL-DRO's ``softmax(loss / r)``) then needs the prompt's RL loss itself,
``-mean_i r_i + beta D``, whose gradient the surrogate estimates.  With ``value="reward"`` (the
default) each entry has that value and the surrogate's gradient
(``s + sg(v - s)``); with ``value="surrogate"`` it is the plain split of GRPO's loss.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from geozoo.objectives.base import ObjectiveOutput, StepContext, as_scalar
from geozoo.objectives.grpo import GRPO, rollouts_from

__all__ = ["PerPromptGRPO", "group_mean"]


def group_mean(
    values: Tensor, mask: Tensor, group: Tensor, num_groups: int, per: str = "token"
) -> Tensor:
    """``(num_groups,)`` mean of ``values`` ``(N, T)`` over each group's unmasked tokens
    (``per="token"``) or over its responses' token means (``per="sequence"``); float32
    (float64 stays), empty groups give 0."""
    dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    values = values.to(dtype).masked_fill(~mask, 0.0)
    if per == "token":
        sums, counts = values.sum(-1), mask.sum(-1).to(dtype)
    elif per == "sequence":
        sums = values.sum(-1) / mask.sum(-1).clamp_min(1).to(dtype)
        counts = torch.ones_like(sums)
    else:
        raise ValueError(f"per must be 'token' or 'sequence', got {per!r}")
    total = sums.new_zeros(num_groups).index_add(0, group, sums)
    count = counts.new_zeros(num_groups).index_add(0, group, counts)
    return total / count.clamp_min(1)


class PerPromptGRPO(GRPO):
    """GRPO's loss as one entry per prompt, shape ``(B,)`` (see the module docstring).

    Use it inside a per-sample wrapper such as :class:`~geozoo.objectives.KLDRO`; on its own a
    task would refuse a non-scalar loss.  With ``value="surrogate"`` and uniform weights the
    mean of the entries is GRPO's loss up to the token averaging (per prompt, then over
    prompts, instead of over the batch's tokens).

    Args:
        value: ``"reward"`` (each entry's value is ``-mean reward + beta D`` of its prompt, its
            gradient the surrogate's) or ``"surrogate"`` (the surrogate's own value).
        **grpo: the arguments of :class:`~geozoo.objectives.GRPO`.
    """

    def __init__(self, value: Literal["reward", "surrogate"] = "reward", **grpo: Any) -> None:
        super().__init__(**grpo)
        if value not in ("reward", "surrogate"):
            raise ValueError(f"value must be 'reward' or 'surrogate', got {value!r}")
        self.value = value

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        rollouts = rollouts_from(ctx)
        b = rollouts.num_groups
        per_token, logs = self.surrogate(rollouts)
        loss = group_mean(per_token, rollouts.mask, rollouts.group, b, self.aggregation)
        every = torch.ones_like(rollouts.mask[:, :1])
        value = -group_mean(rollouts.rewards[:, None], every, rollouts.group, b)
        terms = self.divergence_tokens(ctx, rollouts)
        if terms is not None:
            divergence_tokens, on = terms
            per = self.aggregation if on is rollouts else "token"
            divergence = group_mean(divergence_tokens, on.mask, on.group, b, per)
            logs["divergence"] = as_scalar(divergence)
            value = value + self.beta * divergence.detach()
            if divergence.requires_grad:
                loss = loss + self.beta * divergence
        if self.value == "reward":
            loss = loss - loss.detach() + value.to(loss.dtype)
        return ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, value={self.value!r}"
