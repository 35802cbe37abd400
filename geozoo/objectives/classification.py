"""Supervised classification losses as objectives."""

from __future__ import annotations

import torch.nn.functional as F

from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext

__all__ = ["CrossEntropy"]


class CrossEntropy(Objective):
    """Cross-entropy between the network's logits and integer class targets.

    Args:
        weight: factor applied by the task.
        label_smoothing: amount of label smoothing in [0, 1) (Szegedy et al., 2016).
    """

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__(weight=weight, name="ce")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        if ctx.targets is None:
            raise ValueError("CrossEntropy needs class targets, but the batch has none")
        loss = F.cross_entropy(
            ctx.outputs.float(), ctx.targets, label_smoothing=self.label_smoothing
        )
        return ObjectiveOutput(loss, {})
