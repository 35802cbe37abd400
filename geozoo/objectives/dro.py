"""KL-regularised distributionally robust instance reweighting, around any per-sample loss.

DONE (Sow et al. 2024, "Doubly robust instance-reweighted adversarial training", ICLR)
weights the ``n`` samples of a batch by the solution of the KL-regularised inner
maximisation over the simplex

.. math::

    \\max_{w \\in \\Delta_n} \\sum_i w_i \\ell_i - r \\sum_i w_i \\log(n w_i)
    \\quad\\Rightarrow\\quad w_i = \\operatorname{softmax}(\\ell / r)_i ,

whose optimal value is the log-sum-exp ``r log((1/n) sum_i exp(l_i / r))``.  By Danskin's
theorem its gradient is ``sum_i w_i grad l_i`` with the weights held fixed, so minimising it
is "reweight the per-sample losses by ``sg(softmax(l / r))``".  The temperature ``r`` moves
between the two classic objectives: ``r -> infinity`` gives uniform weights (the plain mean,
standard adversarial training) and ``r -> 0`` puts all weight on the largest loss (max-loss,
the worst case).  The paper's compositional bilevel solver (log-barrier, implicit
differentiation) is not reproduced: the closed form is applied per batch.

* :func:`kl_dro_weights` and :func:`kl_dro_loss`: the closed forms on a vector of losses.
* :class:`KLDRO`: the objective wrapper around any per-sample objective or loss module.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext, as_scalar
from geozoo.objectives.wrapping import WrapsObjectives

__all__ = ["KLDRO", "kl_dro_loss", "kl_dro_weights"]

PerSampleLoss = Callable[[Tensor, Tensor], Tensor]


def _check_temperature(r: float) -> float:
    if not isinstance(r, int | float) or r != r or r < 0:
        raise ValueError(
            f"the DRO temperature r must be a number in [0, inf] (0: max loss, inf: mean), "
            f"got {r!r}"
        )
    return float(r)


def _check_losses(losses: Tensor) -> Tensor:
    if not isinstance(losses, Tensor):
        raise TypeError(f"losses must be a tensor, got {type(losses).__name__}")
    if losses.ndim != 1 or losses.numel() == 0:
        raise ValueError(
            f"expected one loss per sample, shape (B,) with B >= 1, got {tuple(losses.shape)}"
        )
    return losses.double() if losses.dtype == torch.float64 else losses.float()


def kl_dro_weights(losses: Tensor, r: float) -> Tensor:
    """The optimal instance weights ``softmax(losses / r)`` (detached, summing to 1).

    ``r = inf`` gives the uniform ``1/B``; ``r = 0`` splits the weight evenly among the samples
    that attain the maximum loss (the limit of the softmax).
    """
    r = _check_temperature(r)
    values = _check_losses(losses).detach()
    if math.isinf(r):
        return torch.full_like(values, 1.0 / values.numel())
    if r == 0.0:
        at_max = (values == values.max()).to(values.dtype)
        return at_max / at_max.sum()
    return torch.softmax(values / r, dim=0)


def kl_dro_loss(losses: Tensor, r: float) -> Tensor:
    """The reweighted batch loss ``sum_i sg(w_i) l_i`` with ``w = softmax(losses / r)``.

    Its gradient equals that of the DRO value ``r log(mean_i exp(l_i / r))`` (Danskin), and its
    value is the weighted mean loss (which lies between the mean and the max).
    """
    weights = kl_dro_weights(losses, r)
    return (weights * _check_losses(losses)).sum()


class KLDRO(WrapsObjectives, Objective):
    """KL-regularised DRO reweighting of a per-sample objective (DONE, Sow et al. 2024).

    ``loss = sum_i sg(softmax(l / r))_i * l_i`` over the batch's per-sample losses ``l``.

    Args:
        objective: what produces the per-sample losses, either a geozoo
            :class:`~geozoo.objectives.Objective` whose ``forward(ctx)`` returns a loss of shape
            ``(B,)``, or any loss module/callable ``loss_fn(outputs, targets) -> (B,)``, e.g.
            ``torch.nn.CrossEntropyLoss(reduction="none")`` (YAML: ``class_path`` /
            ``init_args``).  A scalar (already reduced) loss is refused: there is nothing to
            reweight.  In an RL task, wrap :class:`~geozoo.objectives.PerPromptGRPO` (one loss
            per prompt); what it needs of the task (reference log-probs, ...) passes through.
        r: the KL temperature in ``[0, inf]``; ``inf`` is the plain mean, ``0`` the max loss.
            The paper leaves it as a hyperparameter; 1.0 is a neutral default for losses of
            order one (choose ``r`` on the scale of the per-sample losses).
        weight: factor applied by the task.
        name: logging name (default ``"kl_dro"``).

    Logs ``mean_loss`` (the unweighted mean), ``max_weight`` and ``effective_samples``
    (``1 / sum w_i^2``, ``B`` for uniform weights and 1 for the max).
    """

    def __init__(
        self,
        objective: nn.Module | PerSampleLoss,
        r: float = 1.0,
        weight: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__(weight=weight, name=name or "kl_dro")
        if not callable(objective):
            raise TypeError(
                "objective must be a geozoo Objective or a loss callable "
                f"loss_fn(outputs, targets) -> (B,), got {type(objective).__name__}"
            )
        self.r = _check_temperature(r)
        if isinstance(objective, nn.Module):
            self.objective = objective
        else:
            self.loss_fn = objective

    def wrapped_objectives(self) -> list[nn.Module]:
        inner = getattr(self, "objective", None)
        return [inner] if isinstance(inner, Objective) else []

    def per_sample_losses(self, ctx: StepContext) -> tuple[Tensor, dict[str, Tensor]]:
        """The wrapped objective's per-sample losses (shape ``(B,)``) and its logs."""
        inner = getattr(self, "objective", None)
        if isinstance(inner, Objective):
            losses, logs = inner(ctx)
            what = f"objective {type(inner).__name__}"
        else:
            fn = inner if inner is not None else self.loss_fn
            losses, logs = fn(ctx.outputs, ctx.targets), {}
            what = f"loss function {type(fn).__name__}"
        if not isinstance(losses, Tensor) or losses.ndim != 1:
            shape = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
            raise ValueError(
                f"KLDRO needs one loss per sample, shape (B,), but the {what} returned {shape}; "
                "use a per-sample form (e.g. reduction='none')"
            )
        return losses, dict(logs)

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        losses, inner_logs = self.per_sample_losses(ctx)
        weights = kl_dro_weights(losses, self.r)
        loss = (weights * _check_losses(losses)).sum()
        logs = {
            "mean_loss": as_scalar(losses.float().mean()),
            "max_weight": as_scalar(weights.max()),
            "effective_samples": as_scalar(1.0 / weights.square().sum()),
        }
        logs.update({f"inner/{k}": v for k, v in inner_logs.items()})
        return ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}"
