"""Regression losses as objectives."""

from __future__ import annotations

from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext

__all__ = ["MeanSquaredError"]


class MeanSquaredError(Objective):
    """Mean squared error between outputs and targets of the same shape (any tensor rank).

    Logs ``rel_error``: ``|y_hat - y| / |y|`` per sample (Frobenius norms), averaged, which is
    comparable across targets of different scales.
    """

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight=weight, name="mse")

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        if ctx.targets is None or ctx.targets.shape != ctx.outputs.shape:
            got = None if ctx.targets is None else tuple(ctx.targets.shape)
            raise ValueError(
                f"MeanSquaredError needs targets shaped like the outputs "
                f"{tuple(ctx.outputs.shape)}, got {got}"
            )
        diff = (ctx.outputs.float() - ctx.targets.float()).flatten(1)
        rel = diff.norm(dim=1) / ctx.targets.float().flatten(1).norm(dim=1).clamp_min(1e-12)
        return ObjectiveOutput(diff.pow(2).mean(), {"rel_error": rel.mean().detach()})
