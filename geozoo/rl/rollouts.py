"""What an RL step hands to its objectives: sampled responses, their rewards and log-probs.

Shapes use ``B`` prompts, ``G`` responses per prompt, ``N = B * G`` responses (group-major:
response ``n`` answers prompt ``n // G`` when sampled by a geozoo policy) and ``T`` the padded
response length.  A response is a sequence of tokens ended by the policy's end-of-sequence
token; positions after it hold the padding token and are ``False`` in :attr:`Rollouts.mask`.
A classifier used as a policy gives responses of length 1.

Per-token log-probabilities are always those of the *tempered* distribution
``softmax(logits / temperature)`` at :attr:`Rollouts.temperature` (the distribution sampled from,
before any top-k truncation), and are zero at padded positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["Rollouts", "group_ids", "masked_mean", "sequence_sum"]


@dataclass
class Rollouts:
    """``G`` sampled responses for each of ``B`` prompts, scored by a verifier.

    The RL task (:class:`geozoo.tasks.RLTask`) puts one under ``ctx.extras["rollouts"]`` of
    every training step's :class:`~geozoo.objectives.StepContext`, and, when an objective asks
    for samples of the initial policy (DPH-RL), a second one under ``ctx.extras["rehearsal"]``
    whose responses were drawn from the reference policy (there ``old_logp`` and ``ref_logp``
    are both the reference's log-probs of its own samples).

    Attributes:
        prompts: the policy inputs of the ``B`` prompts (e.g. images ``(B, C, H, W)``).
        group: ``(N,)`` long, the prompt (index into ``prompts``) each response answers.
        responses: ``(N, T)`` long tokens, padded after end-of-sequence.
        mask: ``(N, T)`` bool, ``True`` on the response's tokens (end-of-sequence included).
        rewards: ``(N,)`` float rewards from the environment's verifier.
        logp: ``(N, T)`` per-token log-probs under the *current* policy; carries the gradient.
        old_logp: ``(N, T)`` per-token log-probs under the *sampling* policy (detached); equal
            to ``logp.detach()`` on-policy, the denominator of the importance ratio.
        ref_logp: ``(N, T)`` per-token log-probs under the frozen *reference* policy (detached),
            or ``None`` when no objective asked for it.
        entropy: ``(N, T)`` entropy of the sampling distribution at each position (detached),
            or ``None``.
        targets: what the verifier was given per prompt (e.g. the true sums), or ``None``.
        temperature: the sampling temperature all log-probs refer to.
        extras: anything else (objectives built on GRPO may add their own entries).
    """

    prompts: Any
    group: Tensor
    responses: Tensor
    mask: Tensor
    rewards: Tensor
    logp: Tensor
    old_logp: Tensor
    ref_logp: Tensor | None = None
    entropy: Tensor | None = None
    targets: Any = None
    temperature: float = 1.0
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, t = self.responses.shape
        checks = {
            "group": (self.group, (n,)),
            "mask": (self.mask, (n, t)),
            "rewards": (self.rewards, (n,)),
            "logp": (self.logp, (n, t)),
            "old_logp": (self.old_logp, (n, t)),
            "ref_logp": (self.ref_logp, (n, t)),
            "entropy": (self.entropy, (n, t)),
        }
        for name, (value, shape) in checks.items():
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(
                    f"Rollouts.{name} must have shape {shape} (responses are {(n, t)}), got "
                    f"{tuple(value.shape)}"
                )
        if self.mask.dtype != torch.bool:
            raise TypeError(f"Rollouts.mask must be bool, got {self.mask.dtype}")

    @property
    def num_groups(self) -> int:
        """Number of prompts ``B``."""
        return len(self.prompts) if self.prompts is not None else int(self.group.max()) + 1

    @property
    def lengths(self) -> Tensor:
        """``(N,)`` response lengths (tokens up to and including end-of-sequence)."""
        return self.mask.sum(-1)

    def sequence_logp(self, which: str = "logp") -> Tensor:
        """``(N,)`` log-probability of each whole response under ``which`` (``"logp"``,
        ``"old_logp"`` or ``"ref_logp"``)."""
        value = getattr(self, which)
        if value is None:
            raise ValueError(f"these rollouts carry no {which}")
        return sequence_sum(value, self.mask)


def group_ids(num_prompts: int, group_size: int, device: torch.device | None = None) -> Tensor:
    """``(num_prompts * group_size,)`` prompt index of each response, group-major."""
    return torch.arange(num_prompts, device=device).repeat_interleave(group_size)


def sequence_sum(values: Tensor, mask: Tensor) -> Tensor:
    """Sum of ``values`` over each row's unmasked positions, in float32 (float64 stays)."""
    dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    return values.to(dtype).masked_fill(~mask, 0.0).sum(-1)


def masked_mean(values: Tensor, mask: Tensor, per: str = "token") -> Tensor:
    """Mean of ``values`` over unmasked positions.

    ``per="token"`` divides the sum over all rows by the number of tokens (DAPO's token-level
    average); ``per="sequence"`` averages each row over its tokens, then the rows (GRPO's
    sequence-level average, Shao et al. 2024, Eq. 3).  Empty rows count as zero.
    """
    dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    values = values.to(dtype).masked_fill(~mask, 0.0)
    if per == "token":
        return values.sum() / mask.sum().clamp_min(1)
    if per == "sequence":
        return (values.sum(-1) / mask.sum(-1).clamp_min(1)).mean()
    raise ValueError(f"per must be 'token' or 'sequence', got {per!r}")
