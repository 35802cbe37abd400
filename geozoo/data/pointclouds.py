"""Point-cloud helpers shared by the synthetic 3D tasks."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["inertia_tensor"]


def inertia_tensor(positions: Tensor, masses: Tensor) -> Tensor:
    """Inertia tensor ``I = sum_i m_i (|x_i|^2 Id - x_i x_i^T)`` about the origin.

    Args:
        positions: (..., K, 3) point positions.
        masses: (..., K) point masses.

    Returns:
        (..., 3, 3) symmetric tensors; ``I(R x) = R I(x) R^T`` for every ``R`` in O(3).
    """
    if positions.shape[-1] != 3 or positions.shape[:-1] != masses.shape:
        raise ValueError(
            f"expected positions (..., K, 3) and masses (..., K), got {tuple(positions.shape)} "
            f"and {tuple(masses.shape)}"
        )
    squared = (positions**2).sum(-1)  # (..., K)
    eye = torch.eye(3, dtype=positions.dtype, device=positions.device)
    outer = positions.unsqueeze(-1) * positions.unsqueeze(-2)  # (..., K, 3, 3)
    return (masses[..., None, None] * (squared[..., None, None] * eye - outer)).sum(-3)
