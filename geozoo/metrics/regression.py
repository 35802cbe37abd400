"""Error measures for tensor-valued and trajectory predictions."""

from __future__ import annotations

from torch import Tensor

__all__ = ["average_displacement_error"]


def average_displacement_error(outputs: Tensor, targets: Tensor, dims: int = 3) -> Tensor:
    """ADE: the mean over examples and time steps of ``|prediction_t - target_t|``, where the
    last axis holds ``T`` points of ``dims`` coordinates each (the metric of trajectory
    forecasting benchmarks such as Waymo Open Motion)."""
    if outputs.shape != targets.shape or outputs.shape[-1] % dims:
        raise ValueError(
            f"expected outputs and targets of equal shape (..., T*{dims}), got "
            f"{tuple(outputs.shape)} and {tuple(targets.shape)}"
        )
    diff = (outputs - targets).reshape(*outputs.shape[:-1], -1, dims)
    return diff.norm(dim=-1).mean()
