"""Regression task for the mixed-symmetry experiments: MSE data term + weighted objectives.

Used for the synthetic tasks of Kim, Lee, Yang & Lee (ICML 2023, arXiv 2306.00356) in
:mod:`geozoo.data.symmetry_tasks`.  The data term is the mean squared error; any list of
:class:`geozoo.objectives.Objective` (e.g. :class:`~geozoo.objectives.MixedSymmetryRegularizer`,
:class:`~geozoo.objectives.ResidualPathwayPrior`) is added with its weight.  For trajectory
outputs (``ade_dims=3``) the average displacement error (mean Euclidean distance between
predicted and true positions) is logged too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geozoo.objectives.base import Objective, StepContext

__all__ = ["SymmetryRegressionTask", "average_displacement_error"]


def average_displacement_error(outputs: Tensor, targets: Tensor, dims: int = 3) -> Tensor:
    """Mean over examples and time steps of ``|prediction_t - target_t|`` (points of ``dims``
    coordinates, flattened in the last axis)."""
    if outputs.shape != targets.shape or outputs.shape[-1] % dims:
        raise ValueError(
            f"expected outputs and targets of equal shape (..., T*{dims}), got "
            f"{tuple(outputs.shape)} and {tuple(targets.shape)}"
        )
    diff = (outputs - targets).reshape(*outputs.shape[:-1], -1, dims)
    return diff.norm(dim=-1).mean()


class SymmetryRegressionTask(L.LightningModule):
    """Train ``network`` on ``MSE + sum(weight * objective)``; Adam with cosine decay to 0.

    Logs ``{stage}/mse`` (and ``{stage}/ade`` when ``ade_dims`` is set), each objective's loss as
    ``{stage}/{name}/loss`` and its values as ``{stage}/{name}/{key}`` (e.g. the strengths of a
    :class:`~geozoo.objectives.MixedSymmetryRegularizer`).

    Args:
        network: any module mapping the flat inputs to flat outputs.
        objectives: extra objectives (regularizers, priors).
        lr: Adam learning rate (the paper: 1e-3 for the synthetic tasks).
        weight_decay: L2 coefficient ``wd`` (adds ``wd/2 ||theta||^2`` to the loss through Adam).
        cosine: decay the learning rate to 0 over ``trainer.max_epochs`` (as in the paper).
        ade_dims: log the ADE of outputs seen as points with this many coordinates.
    """

    def __init__(
        self,
        network: nn.Module,
        objectives: Sequence[Objective] = (),
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        cosine: bool = True,
        ade_dims: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be an nn.Module, got {type(network).__name__}")
        objectives = list(objectives)
        for objective in objectives:
            if not isinstance(objective, Objective):
                raise TypeError(
                    "each objective must be a geozoo.objectives.Objective, got "
                    f"{type(objective).__name__}"
                )
        names = [o.name for o in objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        self.network = network
        self.objectives = nn.ModuleList(objectives)
        self.lr, self.weight_decay, self.cosine, self.ade_dims = lr, weight_decay, cosine, ade_dims

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    def _step(self, batch: Any, stage: str) -> Tensor:
        inputs, targets = batch
        outputs = self.network(inputs)
        mse = F.mse_loss(outputs, targets)
        logs = {f"{stage}/mse": mse.detach()}
        if self.ade_dims:
            logs[f"{stage}/ade"] = average_displacement_error(
                outputs.detach(), targets, self.ade_dims
            )
        total = mse
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
        for objective in self.objectives:
            loss, values = objective(ctx)
            total = total + objective.weight * loss
            logs[f"{stage}/{objective.name}/loss"] = loss.detach()
            for key, value in values.items():
                logs[f"{stage}/{objective.name}/{key}"] = torch.as_tensor(value).detach().float()
        logs[f"{stage}/loss"] = total.detach()
        self.log_dict(logs, on_step=False, on_epoch=True, batch_size=inputs.shape[0])
        return total

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        for objective in self.objectives:
            objective.on_train_epoch_end(self)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if not self.cosine:
            return optimizer
        epochs = max(int(getattr(self.trainer, "max_epochs", 1) or 1), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
