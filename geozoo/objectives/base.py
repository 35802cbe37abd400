"""The objective protocol: every optional training loss in geozoo is an :class:`Objective`.

A task runs the network once per step, packs what it produced into a :class:`StepContext` and
sums ``objective.weight * objective(ctx).loss`` over its list of objectives.  Adding an objective
never edits a task.  State that must survive a restart (dual variables, auto-tuned strengths,
moving baselines) belongs in registered buffers so that checkpoints and DDP see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["Objective", "ObjectiveOutput", "StepContext"]


@dataclass
class StepContext:
    """Everything one training or evaluation step produced, as seen by an objective.

    Attributes:
        inputs: the network's input batch.
        targets: labels or regression targets (``None`` for unsupervised steps).
        outputs: what ``network(inputs)`` returned (logits for classifiers).
        network: the network being trained; objectives may call it again (e.g. on ``g . x``).
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.
        global_step: optimizer steps taken so far.
        epoch: the current epoch.
        task: the LightningModule running the step, for objectives that need its trainer or
            device; ``None`` outside Lightning.
        extras: anything else the task or data module provides (e.g. intermediate features).
    """

    inputs: Tensor
    targets: Tensor | None
    outputs: Tensor
    network: nn.Module
    stage: str = "train"
    global_step: int = 0
    epoch: int = 0
    task: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


class ObjectiveOutput(NamedTuple):
    """A scalar loss and named values to log under the objective's name."""

    loss: Tensor
    logs: dict[str, Tensor] = {}  # noqa: RUF012 - NamedTuple defaults are immutable in use


class Objective(nn.Module):
    """Base class of all training objectives.

    Subclasses implement :meth:`forward`, returning an :class:`ObjectiveOutput` (the unweighted
    loss and values to log).  The task multiplies the loss by :attr:`weight`.

    Args:
        weight: factor applied by the task to this objective's loss.
        name: key under which the task logs the loss and values (default: the class name in
            snake case).
    """

    def __init__(self, weight: float = 1.0, name: str | None = None) -> None:
        super().__init__()
        if not isinstance(weight, int | float) or weight != weight:
            raise ValueError(f"weight must be a finite number, got {weight!r}")
        self.weight = float(weight)
        self.name = name or _snake_case(type(self).__name__)

    def forward(self, ctx: StepContext) -> ObjectiveOutput:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(ctx)")

    def check_network(self, network: nn.Module) -> None:
        """Raise if this objective cannot train ``network``; tasks call it when they are built,
        so a mismatch fails before the first step. Default: no requirement."""

    def on_train_epoch_end(self, task: Any) -> None:
        """Hook for stateful objectives (strength schedules, dual updates); default: nothing."""

    def extra_repr(self) -> str:
        return f"weight={self.weight}, name={self.name!r}"


def _snake_case(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i > 0 and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def as_scalar(value: Tensor | float) -> Tensor:
    """Detach a value for logging as a 0-d float tensor."""
    return torch.as_tensor(value).detach().float().mean()
