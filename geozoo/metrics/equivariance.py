"""``EquivarianceError``: the relative equivariance error of :mod:`geozoo.testing` as a
torchmetrics ``Metric`` with fixed-memory states, so a task can log it every epoch."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from geozoo.testing import Transform, relative_errors, transform_pairs

__all__ = ["EquivarianceError"]


def _renamed(kwargs: dict, old: str, new: str, value: object) -> object:
    """Take a value passed under a keyword's former name, with a ``DeprecationWarning``."""
    if old not in kwargs:
        return value
    if value is not None:
        raise TypeError(f"EquivarianceError got both {new}= and its former name {old}=")
    warnings.warn(
        f"EquivarianceError({old}=...) is deprecated: use {new}=, as in "
        "geozoo.testing.assert_equivariant",
        DeprecationWarning,
        stacklevel=3,
    )
    return kwargs.pop(old)


class EquivarianceError(Metric):
    """Running max and mean of ``|f(g x) - g f(x)| / |g f(x)|`` over samples and group elements.

    The computation is :func:`geozoo.testing.relative_errors` (see
    :func:`geozoo.testing.equivariance_error` for the definition); memory is three scalars
    (sum, max, count) whatever the number of batches, and states reduce across processes by
    sum / max / sum.

    Arguments are named and ordered as in :func:`geozoo.testing.assert_equivariant`
    ``(fn, x, transform_in, transform_out, mask=...)``: the transforms go to the constructor,
    ``fn`` and ``x`` to :meth:`update`.

    Args:
        transform_in: group elements acting on the inputs (one transform or a list).
        transform_out: the matching output actions, or ``None`` for invariant outputs.
        mask: optional boolean mask broadcastable to the outputs (e.g. a disc for rotations).

    ``update(fn, x)`` evaluates ``fn`` on ``x`` (in ``x``'s dtype, under ``no_grad``) and on each
    transformed copy; ``compute()`` returns ``{"mean": ..., "max": ...}``. The former keywords
    ``transforms_in``/``transforms_out`` still work, with a ``DeprecationWarning``.
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
        transform_in: Transform | Sequence[Transform] | None = None,
        transform_out: Transform | Sequence[Transform] | None = None,
        mask: Tensor | None = None,
        **kwargs,
    ) -> None:
        transform_in = _renamed(kwargs, "transforms_in", "transform_in", transform_in)
        transform_out = _renamed(kwargs, "transforms_out", "transform_out", transform_out)
        super().__init__(**kwargs)
        ins, outs = transform_pairs(transform_in or [], transform_out)
        self.transform_in, self.transform_out, self.mask = ins, outs, mask
        self.add_state("error_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("error_max", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="max")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, fn: Callable[[Tensor], Tensor], x: Tensor) -> None:
        """Add the errors of ``fn`` on the batch ``x`` for every group element."""
        with torch.no_grad():
            reference = fn(x)
            for index, t_in in enumerate(self.transform_in):
                t_out = None if self.transform_out is None else self.transform_out[index]
                errors = relative_errors(fn, x, t_in, t_out, self.mask, reference).double()
                self.error_sum += errors.sum()
                self.error_max = torch.maximum(self.error_max, errors.max())
                self.count += errors.numel()

    def compute(self) -> dict[str, Tensor]:
        """``{"mean": mean relative error, "max": max relative error}`` (float64 scalars)."""
        if int(self.count) == 0:
            raise RuntimeError("EquivarianceError.compute() called before any update()")
        return {"mean": self.error_sum / self.count, "max": self.error_max.clone()}
