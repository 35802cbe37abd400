"""Dynamic reweighting of several objectives from their short-horizon behaviour (RECAP).

RECAP (Phan et al. 2025, "Beyond reasoning gains: mitigating general capabilities forgetting
in large reasoning models", arXiv 2510.21978) replays general-capability objectives during RL and
reweights all objectives online: an objective whose signal has *converged* (flat and quiet
over the recent window) loses weight, one that is still moving, *rising* (being forgotten) or
*unstable* (volatile) gains weight, so a replayed general objective keeps the earlier skill
while RL trains a new one.  The paper gives the two signals but leaves their exact form open;
this module fixes one, with every choice an argument.  Over the last ``window`` values
``v_1..v_W`` of objective ``k``'s signal (its loss by default; oriented so that lower is
better), with ``s = mean|v| + eps``:

* trend ``c_k = (mean(v_{W/2+1..W}) - mean(v_{1..W/2})) / s`` (positive: getting worse);
* instability ``u_k = std(v_{t+1} - v_t) / (sqrt(2) s)`` (the noise level, independent of a
  steady trend: for i.i.d. noise of std ``sigma`` around a flat mean it is ``sigma / s``);
* score ``a_k = progress_coef |c_k| + rise_coef max(c_k, 0) + instability_coef u_k``;
* weight ``w_k = K softmax(a / temperature)_k`` (so the weights average to 1; all 1 while the
  window is filling).

The task's loss is ``sum_k w_k weight_k loss_k`` with the weights held fixed (no gradient),
``weight_k`` being each objective's own weight.  The history and the weights are registered
buffers (checkpointed); under DDP the signals are averaged over ranks before they enter the
history, so every rank applies the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext, as_scalar
from geozoo.objectives.wrapping import WrapsObjectives

__all__ = ["DynamicReweighting", "reweighting_scores"]


def reweighting_scores(
    history: Tensor,
    progress_coef: float = 1.0,
    rise_coef: float = 1.0,
    instability_coef: float = 1.0,
    eps: float = 1e-6,
) -> Tensor:
    """RECAP scores ``a_k`` (see the module docstring) from a chronological ``(K, W)`` history.

    Rows are objectives, columns the last ``W >= 4`` signal values, oldest first, oriented so
    that lower is better.  Computed in float64.
    """
    if history.ndim != 2 or history.shape[1] < 4:
        raise ValueError(
            f"history must have shape (K, W) with W >= 4 values, got {tuple(history.shape)}"
        )
    v = history.double()
    half = v.shape[1] // 2
    scale = v.abs().mean(1) + eps
    trend = (v[:, half:].mean(1) - v[:, :half].mean(1)) / scale
    instability = v.diff(dim=1).std(1) / (math.sqrt(2.0) * scale)
    return (
        progress_coef * trend.abs()
        + rise_coef * trend.clamp_min(0.0)
        + instability_coef * instability
    )


def _from_extras(ctx: StepContext, path: str, name: str, logged: list[str]) -> Tensor:
    head, *rest = path.split(".")
    value: Any = ctx.extras.get(head) if ctx.extras else None
    for part in rest:
        value = getattr(value, part, None)
    if value is None:
        raise KeyError(
            f"signal {path!r} of objective {name!r} is neither among its logged values "
            f"{logged} nor a path into the step's extras {sorted(ctx.extras or {})}"
        )
    return torch.as_tensor(value).float()


class DynamicReweighting(WrapsObjectives, Objective):
    """RECAP's online objective reweighting as a wrapper over a list of objectives.

    Args:
        objectives: the objectives to balance (e.g. a GRPO objective on the new task and a
            cross-entropy on replayed data of an earlier one); their names must be unique.
        window: number of recent training steps the signals look at (``>= 4``); the weights
            stay 1 until it is full.
        temperature: softmax temperature on the scores: large values keep the weights near 1,
            small ones concentrate on the highest score.
        progress_coef, rise_coef, instability_coef: the score's coefficients (module
            docstring).  ``rise_coef > 0`` gives a rising (forgotten) objective more weight
            than one improving at the same rate.
        signals: per objective name, what to use as its signal instead of its loss: the key of
            one of its logged values, or a dotted path into the step's ``ctx.extras`` (e.g.
            ``{"grpo": "rollouts.rewards"}``, averaged: a policy-gradient loss is near 0 by
            construction and says nothing about convergence).
        higher_is_better: names of objectives whose signal improves upward (rewards,
            accuracies); their signal is negated.
        eps: added to the signal's scale; signals much smaller than it count as converged.
        weight: factor applied by the task to the reweighted sum.
        name: logging name (default ``"recap"``); each objective's values are logged under
            ``{name}/{objective}/...`` with its current ``weight``.
    """

    def __init__(
        self,
        objectives: Sequence[Objective],
        window: int = 20,
        temperature: float = 1.0,
        progress_coef: float = 1.0,
        rise_coef: float = 1.0,
        instability_coef: float = 1.0,
        signals: Mapping[str, str] | None = None,
        higher_is_better: Sequence[str] = (),
        eps: float = 1e-6,
        weight: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__(weight=weight, name=name or "recap")
        objectives = list(objectives)
        if not objectives or not all(isinstance(o, Objective) for o in objectives):
            raise TypeError(
                "objectives must be a non-empty list of geozoo Objectives, got "
                f"{[type(o).__name__ for o in objectives]}"
            )
        names = [o.name for o in objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        unknown = sorted((set(signals or {}) | set(higher_is_better)) - set(names))
        if unknown:
            raise ValueError(
                f"signals / higher_is_better name unknown objectives {unknown}; "
                f"the objectives are {names}"
            )
        if isinstance(window, bool) or not isinstance(window, int) or window < 4:
            raise ValueError(f"window must be an integer >= 4, got {window!r}")
        for label, value in (("temperature", temperature), ("eps", eps)):
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{label} must be a positive finite number, got {value!r}")
        self.objectives = nn.ModuleList(objectives)
        self.window = window
        self.temperature = float(temperature)
        self.coefs = (float(progress_coef), float(rise_coef), float(instability_coef))
        self.signals = dict(signals or {})
        self.higher_is_better = set(higher_is_better)
        self.eps = float(eps)
        k = len(objectives)
        self.register_buffer("history", torch.zeros(k, window, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("weights", torch.ones(k, dtype=torch.float64))

    def wrapped_objectives(self) -> list[nn.Module]:
        return list(self.objectives)

    def check_network(self, network: nn.Module) -> None:
        for objective in self.objectives:
            objective.check_network(network)

    def on_train_epoch_end(self, task: Any) -> None:
        for objective in self.objectives:
            objective.on_train_epoch_end(task)

    def _signal(
        self, objective: Objective, loss: Tensor, logs: Mapping[str, Tensor], ctx: StepContext
    ) -> Tensor:
        key = self.signals.get(objective.name)
        if key is None:
            value = loss
        elif key in logs:
            value = torch.as_tensor(logs[key])
        else:
            value = _from_extras(ctx, key, objective.name, sorted(logs))
        value = value.detach().double().mean()
        return -value if objective.name in self.higher_is_better else value

    @torch.no_grad()
    def update(self, signals: Tensor) -> None:
        """Append one step's ``(K,)`` signals to the history and recompute the weights."""
        signals = signals.to(self.history)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(signals)
            signals /= dist.get_world_size()
        if not bool(torch.isfinite(signals).all()):
            return  # a non-finite step says nothing about convergence; keep the old weights
        self.history.copy_(torch.cat([self.history[:, 1:], signals[:, None]], dim=1))
        self.count += 1
        if int(self.count) >= self.window:
            scores = reweighting_scores(self.history, *self.coefs, eps=self.eps)
            self.weights.copy_(len(self.objectives) * torch.softmax(scores / self.temperature, 0))

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        total: Tensor | float = 0.0
        logs: dict[str, Tensor] = {}
        signals = []
        for index, objective in enumerate(self.objectives):
            loss, values = objective(ctx)
            factor = float(self.weights[index]) * objective.weight
            total = total + factor * loss.float()
            signals.append(self._signal(objective, loss, values, ctx))
            logs[f"{objective.name}/loss"] = as_scalar(loss)
            logs[f"{objective.name}/weight"] = as_scalar(factor)
            logs.update({f"{objective.name}/{k}": as_scalar(v) for k, v in values.items()})
        if ctx.stage == "train":
            self.update(torch.stack(signals))
        return ObjectiveOutput(torch.as_tensor(total), logs)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, window={self.window}, temperature={self.temperature}, "
            f"coefs={self.coefs}"
        )
