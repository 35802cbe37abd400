"""A generic regression LightningModule: a network plus a list of weighted objectives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext

__all__ = ["MeanSquaredError", "RegressionTask"]


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


def _adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


class RegressionTask(L.LightningModule):
    """Train ``network`` on ``sum(weight * objective)`` for tensor-valued targets.

    Batches are ``(inputs, targets)``; when ``inputs`` is a tuple or list the network is called
    as ``network(*inputs)`` (e.g. positions and masses). Each objective's loss and values are
    logged as ``{stage}/{objective.name}/...`` and the total as ``{stage}/loss``; test sets named
    by the data module's ``test_set_names`` log under ``test/{name}/...``.

    Args:
        network: any ``nn.Module``.
        objectives: the training objectives (default ``[MeanSquaredError()]``).
        optimizer: optimizer factory (``class_path``/``init_args`` in YAML, e.g.
            ``geoopt.optim.RiemannianAdam``); Adam with lr 1e-3 by default.
        lr_scheduler: optional scheduler factory; ``ReduceLROnPlateau`` monitors ``val/loss``.
    """

    def __init__(
        self,
        network: nn.Module,
        objectives: Sequence[Objective] | None = None,
        optimizer: OptimizerCallable = _adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be an nn.Module, got {type(network).__name__}")
        objectives = list(objectives) if objectives is not None else [MeanSquaredError()]
        if not objectives:
            raise ValueError("objectives is empty: give at least one (e.g. MeanSquaredError)")
        for objective in objectives:
            if not isinstance(objective, Objective):
                raise TypeError(
                    f"each objective must be a geozoo.objectives.Objective, got "
                    f"{type(objective).__name__}"
                )
        names = [o.name for o in objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        self.network = network
        self.objectives = nn.ModuleList(objectives)
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler

    def forward(self, inputs: Any) -> Tensor:
        return self.network(*inputs) if isinstance(inputs, list | tuple) else self.network(inputs)

    def _step(self, batch: Any, stage: str, prefix: str) -> Tensor:
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
        )
        total = outputs.new_zeros((), dtype=torch.float32)
        logs: dict[str, Tensor] = {}
        for objective in self.objectives:
            loss, values = objective(ctx)
            total = total + objective.weight * loss
            logs[f"{prefix}/{objective.name}/loss"] = loss.detach()
            for key, value in values.items():
                logs[f"{prefix}/{objective.name}/{key}"] = torch.as_tensor(value).detach()
        logs[f"{prefix}/loss"] = total.detach()
        self.log_dict(
            logs,
            on_step=stage == "train",
            on_epoch=True,
            add_dataloader_idx=False,
            batch_size=len(targets),
        )
        return total

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "train", "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val", "val")

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        names = getattr(getattr(self.trainer, "datamodule", None), "test_set_names", None)
        name = names[dataloader_idx] if names and dataloader_idx < len(names) else dataloader_idx
        self._step(batch, "test", f"test/{name}")

    def on_train_epoch_end(self) -> None:
        for objective in self.objectives:
            objective.on_train_epoch_end(self)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}
