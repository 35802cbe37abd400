"""Input validation shared by geozoo's networks: fail early with a message a user can act on."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["check_images"]


def check_images(
    x: Tensor,
    channels: int,
    size: Sequence[int] | None = None,
    check_finite: bool = True,
) -> None:
    """Check that ``x`` is a float image batch of shape ``(N, channels, *size)``.

    Raises ``TypeError``/``ValueError`` naming what was expected and what was given, instead of
    letting a shape error surface from deep inside a convolution.
    """
    expected = f"(N, {channels}, {', '.join(map(str, size))})" if size else f"(N, {channels}, H, W)"
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor of shape {expected}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"expected float images in [0, 1] of shape {expected}, got dtype {x.dtype} "
            "(convert with x.float() / 255)"
        )
    if x.dim() != 4 or x.shape[1] != channels or (size and tuple(x.shape[2:]) != tuple(size)):
        raise ValueError(f"expected images of shape {expected}, got {tuple(x.shape)}")
    if check_finite and not torch.jit.is_tracing() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"expected finite pixel values, got {bad} NaN/inf entries")
