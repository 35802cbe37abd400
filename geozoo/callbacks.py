"""Lightning callbacks used by the ``geozoo`` command.

:class:`PredictionWriter` is what makes ``geozoo predict`` leave something behind: it writes a
CSV file with one row per input (its index in the predict dataset, the predicted class and the
class probabilities of a :class:`~geozoo.tasks.ClassificationTask`, or the flattened outputs of
any other task) and prints the file's path at the end.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import IO, Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

__all__ = ["PredictionWriter"]


class PredictionWriter(BasePredictionWriter):
    """Write ``predict_step`` outputs to a CSV file, batch by batch.

    Columns: ``index`` (position in the predict dataset), ``dataloader`` (with several predict
    loaders), ``target`` (when batches carry one integer label per input), then for
    classification ``predicted`` and ``prob_0 .. prob_{C-1}``, otherwise ``output_0 ..``.

    Args:
        output: the CSV path; default ``predictions.csv`` in the trainer's ``log_dir`` (next to
            the run's ``config.yaml``). With several processes, rank ``r > 0`` writes
            ``NAME.rank{r}.csv``.
    """

    def __init__(self, output: str | os.PathLike | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output = None if output is None else Path(output)
        self.path: Path | None = None
        self.rows = 0
        self._file: IO[str] | None = None
        self._writer: Any = None
        self._next_index: dict[int, int] = {}

    def _resolve_path(self, trainer: L.Trainer) -> Path:
        path = self.output
        if path is None:
            path = Path(trainer.log_dir or trainer.default_root_dir) / "predictions.csv"
        if trainer.world_size > 1 and trainer.global_rank > 0:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path = self._resolve_path(trainer)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="")  # closed in on_predict_end
        self._writer = None
        self.rows = 0
        self._next_index = {}

    def _header(self, pl_module: L.LightningModule, width: int, target: bool, loaders: int):
        from geozoo.tasks.classification import ClassificationTask

        header = ["index"] + (["dataloader"] if loaders > 1 else []) + (["target"] * target)
        if isinstance(pl_module, ClassificationTask):
            return [*header, "predicted", *(f"prob_{c}" for c in range(width))]
        return [*header, *(f"output_{k}" for k in range(width))]

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: list[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        from geozoo.tasks.classification import ClassificationTask

        if not isinstance(prediction, Tensor):
            raise TypeError(
                f"PredictionWriter writes tensors, but predict_step returned "
                f"{type(prediction).__name__}"
            )
        values = prediction.detach().float().cpu().reshape(len(prediction), -1)
        if not batch_indices:
            start = self._next_index.get(dataloader_idx, 0)
            batch_indices = list(range(start, start + len(values)))
        self._next_index[dataloader_idx] = max(batch_indices) + 1
        targets = batch[1] if isinstance(batch, list | tuple) and len(batch) > 1 else None
        labelled = isinstance(targets, Tensor) and targets.shape == (len(values),)
        labelled = labelled and not targets.is_floating_point()
        loaders = len(trainer.num_predict_batches)
        if self._writer is None:
            self._writer = csv.writer(self._file)
            self._writer.writerow(self._header(pl_module, values.shape[1], labelled, loaders))
        classify = isinstance(pl_module, ClassificationTask)
        predicted = values.argmax(-1).tolist() if classify else None
        for row, index in enumerate(batch_indices):
            line: list[Any] = [index] + ([dataloader_idx] if loaders > 1 else [])
            if labelled:
                line.append(int(targets[row]))
            if predicted is not None:
                line.append(predicted[row])
            line.extend(f"{v:.6g}" for v in values[row].tolist())
            self._writer.writerow(line)
        self.rows += len(values)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        print(f"wrote {self.rows} predictions to {self.path}")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, error: Exception):
        if self._file is not None:
            self._file.close()
            self._file = None
