"""The shared core of geozoo's tasks: run a network, sum weighted objectives, log, optimise.

A task knows no particular objective. Subclasses add what their kind of target needs (metrics,
prediction outputs); everything about objectives and optimisers lives here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from geozoo.objectives.base import Objective, StepContext

__all__ = ["ObjectiveTask", "default_adam"]


def default_adam(params: Any) -> torch.optim.Optimizer:
    """Adam with lr 1e-3: the optimizer a task uses when the YAML names none."""
    return torch.optim.Adam(params, lr=1e-3)


class ObjectiveTask(L.LightningModule):
    """Train ``network`` on ``sum(weight * objective)`` over a list of objectives.

    Each objective's loss and logged values appear as ``{prefix}/{objective.name}/...`` and the
    total as ``{prefix}/loss``, where the prefix is the stage (``train``, ``val``) or
    ``test/{test set name}``.

    Args:
        network: any ``nn.Module``; tuple/list inputs are unpacked as ``network(*inputs)``.
        objectives: the training objectives (subclasses provide a default).
        optimizer: optimizer factory (``class_path``/``init_args`` in YAML; default Adam, lr 1e-3;
            ``geozoo.nn.RiemannianAdam`` for manifold parameters).
        lr_scheduler: optional scheduler factory; ``ReduceLROnPlateau`` monitors ``val/loss``.
    """

    default_objectives: tuple[type[Objective], ...] = ()

    def __init__(
        self,
        network: nn.Module,
        objectives: Sequence[Objective] | None = None,
        optimizer: OptimizerCallable = default_adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be an nn.Module, got {type(network).__name__}")
        if objectives is None:
            objectives = [cls() for cls in self.default_objectives]
        objectives = list(objectives)
        if not objectives:
            raise ValueError("objectives is empty: give at least one (e.g. CrossEntropy)")
        for objective in objectives:
            if not isinstance(objective, Objective):
                raise TypeError(
                    "each objective must be a geozoo.objectives.Objective, got "
                    f"{type(objective).__name__}"
                )
            objective.check_network(network)
        names = [o.name for o in objectives]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"objective names must be unique, got {names}: rename {duplicated}")
        self.network = network
        self.objectives = nn.ModuleList(objectives)
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler

    def forward(self, inputs: Any) -> Tensor:
        return self.network(*inputs) if isinstance(inputs, list | tuple) else self.network(inputs)

    def test_prefix(self, dataloader_idx: int) -> str:
        """Log prefix of a test loader: ``test/{name}`` with the data module's
        ``test_set_names``, else ``test`` (first loader) or ``test/{index}``."""
        names = getattr(getattr(self.trainer, "datamodule", None), "test_set_names", None)
        if names and dataloader_idx < len(names):
            return f"test/{names[dataloader_idx]}"
        return "test" if dataloader_idx == 0 else f"test/{dataloader_idx}"

    def log_test_metrics(self, dataloader_idx: int, *update: Any) -> None:
        """Update the metrics of test loader ``dataloader_idx`` (made on first use by the
        subclass's ``_metrics()`` into ``self.test_metrics``) and log each as
        ``{test prefix}/{key}``."""
        while len(self.test_metrics) <= dataloader_idx:
            self.test_metrics.append(self._metrics().to(self.device))
        metrics = self.test_metrics[dataloader_idx]
        metrics.update(*update)
        prefix = self.test_prefix(dataloader_idx)
        for key, metric in metrics.items():
            # metrics created lazily per test set: name their attribute for Lightning explicitly
            self.log(
                f"{prefix}/{key}",
                metric,
                on_epoch=True,
                add_dataloader_idx=False,
                metric_attribute=f"test_metrics.{dataloader_idx}.{key}",
            )

    def objectives_step(
        self,
        batch: Any,
        stage: str,
        prefix: str | None = None,
        extras: dict[str, Any] | None = None,
    ) -> tuple[Tensor, Tensor, Any]:
        """Run the network on ``batch = (inputs, targets)``, evaluate and log every objective;
        ``extras`` reach the objectives as ``StepContext.extras``.

        Returns ``(total_loss, outputs, targets)``.
        """
        inputs, targets = batch
        outputs = self(inputs)
        ctx = StepContext(
            inputs=inputs,
            targets=targets,
            outputs=outputs,
            network=self.network,
            stage=stage,
            global_step=self.global_step,
            epoch=self.current_epoch,
            task=self,
            extras=dict(extras or {}),
        )
        total, logs = self.sum_objectives(ctx, prefix or stage)
        self.log_step(logs, stage, len(outputs))
        return total, outputs, targets

    def sum_objectives(self, ctx: StepContext, prefix: str) -> tuple[Tensor, dict[str, Tensor]]:
        """``sum weight * loss`` over the objectives on ``ctx``, and the values to log under
        ``prefix`` (each objective's loss and values, and the total as ``PREFIX/loss``)."""
        total = ctx.outputs.new_zeros((), dtype=torch.float32)
        logs: dict[str, Tensor] = {}
        for objective in self.objectives:
            loss, values = objective(ctx)
            total = total + objective.weight * loss
            logs[f"{prefix}/{objective.name}/loss"] = loss.detach()
            for key, value in values.items():
                logs[f"{prefix}/{objective.name}/{key}"] = torch.as_tensor(value).detach()
        logs[f"{prefix}/loss"] = total.detach()
        return total, logs

    def log_step(self, values: dict[str, Tensor], stage: str, batch_size: int) -> None:
        """Log one step's values: per step in training, and as epoch means in every stage."""
        self.log_dict(
            values,
            on_step=stage == "train",
            on_epoch=True,
            add_dataloader_idx=False,
            batch_size=batch_size,
        )

    def on_train_epoch_end(self) -> None:
        for objective in self.objectives:
            objective.on_train_epoch_end(self)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        per_batch = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)
        interval = "step" if isinstance(scheduler, per_batch) else "epoch"
        config: dict[str, Any] = {"scheduler": scheduler, "interval": interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}
