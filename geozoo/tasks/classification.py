"""A generic classification LightningModule: a network plus a list of weighted objectives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from geozoo.objectives.base import Objective, StepContext
from geozoo.objectives.classification import CrossEntropy

__all__ = ["ClassificationTask"]


def _adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


class ClassificationTask(L.LightningModule):
    """Train ``network`` on ``sum(weight * objective)``; log accuracy and calibration error.

    The task knows no particular objective: cross-entropy is just the default list.  Each
    objective's loss and values are logged as ``{stage}/{objective.name}/...``; accuracy and
    expected calibration error (15 bins, L1) as ``{stage}/acc`` and ``{stage}/ece`` (with the test
    set's name, ``test/{name}/acc``, when the data module names its test sets).

    Args:
        network: any ``nn.Module`` mapping inputs to class logits.
        objectives: the training objectives (default: ``[CrossEntropy()]``).
        num_classes: number of classes, for the metrics.
        optimizer: optimizer factory (``class_path``/``init_args`` in YAML; default Adam, lr 1e-3).
        lr_scheduler: optional scheduler factory; ``ReduceLROnPlateau`` monitors ``val/loss``.
    """

    def __init__(
        self,
        network: nn.Module,
        objectives: Sequence[Objective] | None = None,
        num_classes: int = 10,
        optimizer: OptimizerCallable = _adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be an nn.Module, got {type(network).__name__}")
        objectives = list(objectives) if objectives is not None else [CrossEntropy()]
        if not objectives:
            raise ValueError("objectives is empty: give at least one (e.g. CrossEntropy)")
        for objective in objectives:
            if not isinstance(objective, Objective):
                raise TypeError(
                    f"each objective must be a geozoo.objectives.Objective, got "
                    f"{type(objective).__name__}"
                )
        names = [o.name for o in objectives]
        duplicated = {n for n in names if names.count(n) > 1}
        if duplicated:
            raise ValueError(f"objective names must be unique, got {names}: rename {duplicated}")
        self.network = network
        self.objectives = nn.ModuleList(objectives)
        self.num_classes = num_classes
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.train_metrics = self._metrics()
        self.val_metrics = self._metrics()
        self.test_metrics = nn.ModuleList()

    def _metrics(self) -> MetricCollection:
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(self.num_classes, average="micro"),
                "ece": MulticlassCalibrationError(self.num_classes, n_bins=15, norm="l1"),
            }
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    def _objectives_loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, Tensor]]:
        total = ctx.outputs.new_zeros((), dtype=torch.float32)
        logs: dict[str, Tensor] = {}
        for objective in self.objectives:
            loss, values = objective(ctx)
            total = total + objective.weight * loss
            logs[f"{ctx.stage}/{objective.name}/loss"] = loss.detach()
            for key, value in values.items():
                logs[f"{ctx.stage}/{objective.name}/{key}"] = torch.as_tensor(value).detach()
        logs[f"{ctx.stage}/loss"] = total.detach()
        return total, logs

    def _step(self, batch: Any, stage: str) -> tuple[Tensor, Tensor, Tensor]:
        inputs, targets = batch
        outputs = self.network(inputs)
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
        loss, logs = self._objectives_loss(ctx)
        self.log_dict(logs, prog_bar=False, on_step=stage == "train", on_epoch=True)
        return loss, outputs, targets

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, outputs, targets = self._step(batch, "train")
        self.train_metrics["acc"](outputs.detach(), targets)
        self.log(
            "train/acc", self.train_metrics["acc"], on_step=False, on_epoch=True, prog_bar=True
        )
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _, outputs, targets = self._step(batch, "val")
        self.val_metrics.update(outputs.float().softmax(-1), targets)
        self.log_dict(
            {f"val/{k}": m for k, m in self.val_metrics.items()}, on_epoch=True, prog_bar=True
        )

    def _test_set_name(self, dataloader_idx: int) -> str:
        names = getattr(getattr(self.trainer, "datamodule", None), "test_set_names", None)
        return (
            names[dataloader_idx] if names and dataloader_idx < len(names) else str(dataloader_idx)
        )

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        inputs, targets = batch
        outputs = self.network(inputs)
        while len(self.test_metrics) <= dataloader_idx:
            self.test_metrics.append(self._metrics().to(self.device))
        metrics = self.test_metrics[dataloader_idx]
        metrics.update(outputs.float().softmax(-1), targets)
        name = self._test_set_name(dataloader_idx)
        for key, metric in metrics.items():
            # metrics created lazily per test set: name their attribute for Lightning explicitly
            self.log(
                f"test/{name}/{key}",
                metric,
                on_epoch=True,
                add_dataloader_idx=False,
                metric_attribute=f"test_metrics.{dataloader_idx}.{key}",
            )

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        inputs = batch[0] if isinstance(batch, list | tuple) else batch
        return self.network(inputs).softmax(-1)

    def on_train_epoch_end(self) -> None:
        for objective in self.objectives:
            objective.on_train_epoch_end(self)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}
