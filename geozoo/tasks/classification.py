"""Classification: a network trained on weighted objectives (cross-entropy by default), with
accuracy and calibration error logged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from geozoo.objectives.base import Objective
from geozoo.objectives.classification import CrossEntropy
from geozoo.tasks.base import ObjectiveTask, default_adam

__all__ = ["ClassificationTask"]


class ClassificationTask(ObjectiveTask):
    """Train ``network`` on ``sum(weight * objective)``; log accuracy and calibration error.

    Cross-entropy is just the default list of objectives.  Accuracy and expected calibration
    error (15 bins, L1) are logged as ``{stage}/acc`` and ``{stage}/ece``, and per named test set
    as ``test/{name}/acc``.

    Args:
        network: any ``nn.Module`` mapping inputs to class logits.
        objectives: the training objectives (default: ``[CrossEntropy()]``).
        num_classes: number of classes, for the metrics.
        optimizer: optimizer factory (``class_path``/``init_args`` in YAML; default Adam, lr 1e-3).
        lr_scheduler: optional scheduler factory; ``ReduceLROnPlateau`` monitors ``val/loss``.
    """

    default_objectives = (CrossEntropy,)

    def __init__(
        self,
        network: nn.Module,
        objectives: Sequence[Objective] | None = None,
        num_classes: int = 10,
        optimizer: OptimizerCallable = default_adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(network, objectives, optimizer, lr_scheduler)
        self.num_classes = num_classes
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

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, outputs, targets = self.objectives_step(batch, "train")
        self.train_metrics["acc"](outputs.detach(), targets)
        self.log(
            "train/acc", self.train_metrics["acc"], on_step=False, on_epoch=True, prog_bar=True
        )
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _, outputs, targets = self.objectives_step(batch, "val")
        self.val_metrics.update(outputs.float().softmax(-1), targets)
        self.log_dict(
            {f"val/{k}": m for k, m in self.val_metrics.items()}, on_epoch=True, prog_bar=True
        )

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        inputs, targets = batch
        outputs = self(inputs)
        self.log_test_metrics(dataloader_idx, outputs.float().softmax(-1), targets)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        inputs = batch[0] if isinstance(batch, list | tuple) else batch
        return self(inputs).softmax(-1)
