"""``EquivarianceError``: the relative equivariance error of :mod:`geozoo.testing` as a
torchmetrics ``Metric`` with fixed-memory states, so a task can log it every epoch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from geozoo.testing import Transform, relative_errors

__all__ = ["EquivarianceError"]


class EquivarianceError(Metric):
    """Running max and mean of ``|f(g x) - g f(x)| / |g f(x)|`` over samples and group elements.

    The computation is :func:`geozoo.testing.relative_errors` (see
    :func:`geozoo.testing.equivariance_error` for the definition); memory is three scalars
    (sum, max, count) whatever the number of batches, and states reduce across processes by
    sum / max / sum.

    Args:
        transforms_in: group elements acting on the inputs.
        transforms_out: the matching output actions, or ``None`` for invariant outputs.
        mask: optional boolean mask broadcastable to the outputs (e.g. a disc for rotations).

    ``update(fn, x)`` evaluates ``fn`` on ``x`` (in ``x``'s dtype, under ``no_grad``) and on each
    transformed copy; ``compute()`` returns ``{"mean": ..., "max": ...}``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0

    error_sum: Tensor
    error_max: Tensor
    count: Tensor

    def __init__(
        self,
        transforms_in: Transform | Sequence[Transform],
        transforms_out: Transform | Sequence[Transform] | None = None,
        mask: Tensor | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        ins = [transforms_in] if isinstance(transforms_in, Transform) else list(transforms_in)
        outs = (
            None
            if transforms_out is None
            else [transforms_out]
            if isinstance(transforms_out, Transform)
            else list(transforms_out)
        )
        if not ins:
            raise ValueError("expected at least one input transform")
        if outs is not None and len(outs) != len(ins):
            raise ValueError(
                f"got {len(ins)} input transforms but {len(outs)} output transforms; pass one "
                "output action per input action, or transforms_out=None for invariance"
            )
        self.transforms_in, self.transforms_out, self.mask = ins, outs, mask
        self.add_state("error_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("error_max", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="max")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, fn: Callable[[Tensor], Tensor], x: Tensor) -> None:
        """Add the errors of ``fn`` on the batch ``x`` for every group element."""
        with torch.no_grad():
            reference = fn(x)
            for index, t_in in enumerate(self.transforms_in):
                t_out = None if self.transforms_out is None else self.transforms_out[index]
                errors = relative_errors(fn, x, t_in, t_out, self.mask, reference).double()
                self.error_sum += errors.sum()
                self.error_max = torch.maximum(self.error_max, errors.max())
                self.count += errors.numel()

    def compute(self) -> dict[str, Tensor]:
        """``{"mean": mean relative error, "max": max relative error}`` (float64 scalars)."""
        if int(self.count) == 0:
            raise RuntimeError("EquivarianceError.compute() called before any update()")
        return {"mean": self.error_sum / self.count, "max": self.error_max.clone()}
