"""Regression: a network trained on weighted objectives (mean squared error by default), with
the MSE (and, for trajectories, the average displacement error) logged as metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from geozoo.metrics.regression import average_displacement_error
from geozoo.objectives.base import Objective
from geozoo.objectives.regression import MeanSquaredError
from geozoo.tasks.base import ObjectiveTask, default_adam

__all__ = ["RegressionTask"]


class RegressionTask(ObjectiveTask):
    """Train ``network`` on ``sum(weight * objective)`` for tensor-valued targets.

    Batches are ``(inputs, targets)``; tuple inputs are unpacked (``network(positions, masses)``).
    Besides each objective, ``{prefix}/mse`` is logged, and ``{prefix}/ade`` when ``ade_dims`` is
    set (outputs seen as points of ``ade_dims`` coordinates).

    Args:
        network: any ``nn.Module``.
        objectives: the training objectives (default ``[MeanSquaredError()]``).
        optimizer: optimizer factory (``class_path``/``init_args`` in YAML; default Adam, lr 1e-3;
            e.g. ``geozoo.nn.RiemannianAdam``).
        lr_scheduler: optional scheduler factory; ``ReduceLROnPlateau`` monitors ``val/loss``.
        ade_dims: log the average displacement error of trajectories with this many coordinates
            per point.
        step_logs: log training values at every step (Lightning's ``self.log``).  With
            ``False`` they are summed on the device and logged at the end of the first epoch
            that completes ``trainer.log_every_n_steps`` steps since the last log (and of the
            last epoch), as means over those steps, under the same ``train/...`` keys: no
            per-step logging work or host synchronisation.  The fast path for small models,
            whose steps cost less than a single ``self.log``.
    """

    default_objectives = (MeanSquaredError,)

    def __init__(
        self,
        network: nn.Module,
        objectives: Sequence[Objective] | None = None,
        optimizer: OptimizerCallable = default_adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        ade_dims: int | None = None,
        step_logs: bool = True,
    ) -> None:
        super().__init__(network, objectives, optimizer, lr_scheduler)
        if ade_dims is not None and ade_dims < 1:
            raise ValueError(f"ade_dims must be a positive number of coordinates, got {ade_dims}")
        self.ade_dims = ade_dims
        self.step_logs = step_logs
        # per set of keys: batch-size-weighted sums of the epoch's training values, and the count
        self._epoch_sums: dict[tuple[str, ...], list] = {}
        self._steps_since_log = 0

    def _log_errors(self, prefix: str, outputs: Tensor, targets: Tensor) -> None:
        outputs, targets = outputs.detach().float(), targets.float()
        values = {f"{prefix}/mse": F.mse_loss(outputs, targets)}
        if self.ade_dims:
            values[f"{prefix}/ade"] = average_displacement_error(outputs, targets, self.ade_dims)
        if self.step_logs or prefix != "train":
            self.log_dict(values, on_epoch=True, add_dataloader_idx=False, batch_size=len(outputs))
        else:
            self.log_step(values, "train", len(outputs))

    def log_step(self, values: dict[str, Tensor], stage: str, batch_size: int) -> None:
        if self.step_logs or stage != "train":
            super().log_step(values, stage, batch_size)
            return
        keys = tuple(values)
        stacked = torch.stack([v.float() for v in values.values()]) * batch_size
        entry = self._epoch_sums.get(keys)
        if entry is None:
            self._epoch_sums[keys] = [stacked, batch_size]
        else:
            entry[0] = entry[0] + stacked
            entry[1] += batch_size

    def on_train_epoch_end(self) -> None:
        if self._epoch_sums and self._log_accumulated_now():
            for keys, (sums, count) in self._epoch_sums.items():
                means = (sums / count).unbind()
                self.log_dict(dict(zip(keys, means)), on_epoch=True, add_dataloader_idx=False)
            self._epoch_sums.clear()
            self._steps_since_log = 0
        super().on_train_epoch_end()

    def _log_accumulated_now(self) -> bool:
        trainer = self.trainer
        self._steps_since_log += trainer.num_training_batches
        last = trainer.should_stop or (
            trainer.max_epochs is not None and self.current_epoch + 1 >= trainer.max_epochs
        )
        last = last or 0 < trainer.max_steps <= self.global_step
        return last or self._steps_since_log >= trainer.log_every_n_steps

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, outputs, targets = self.objectives_step(batch, "train")
        self._log_errors("train", outputs, targets)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _, outputs, targets = self.objectives_step(batch, "val")
        self._log_errors("val", outputs, targets)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        prefix = self.test_prefix(dataloader_idx)
        _, outputs, targets = self.objectives_step(batch, "test", prefix)
        self._log_errors(prefix, outputs, targets)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        with torch.no_grad():
            return self(batch[0] if isinstance(batch, list | tuple) else batch)
