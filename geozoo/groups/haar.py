"""Haar (uniform) sampling of the orthogonal family: O(n), SO(n), its reflection coset and the
Stiefel manifolds of orthonormal frames. Every group in :mod:`geozoo.groups` whose rotations are
random draws them here (one sampler for the family, used by the groups, the data sets and
:mod:`geozoo.testing`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["haar_orthogonal"]


def haar_orthogonal(
    num: int,
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    *,
    det: int | None = None,
    columns: int | None = None,
) -> Tensor:
    """``num`` Haar-distributed orthogonal matrices, shape ``(num, n, n)`` (or ``(num, n,
    columns)``), computed in float64 and cast to ``dtype``.

    Mezzadri, "How to generate random matrices from the classical compact groups" (Notices of
    the AMS, 2007): the QR factor ``Q`` of a standard Gaussian matrix, with the signs of ``R``'s
    diagonal moved into ``Q``, is Haar on O(n). Right multiplication by the reflection
    ``diag(-1, 1, ..., 1)`` preserves that measure and swaps the two components, so negating the
    first column of the samples in the wrong component gives Haar on SO(n) (``det=1``) or on
    the reflections ``O(n) \\ SO(n)`` (``det=-1``). For ``n = 2`` the closed form: a uniform
    angle, and (for O(2)) the second column negated with probability 1/2.

    Args:
        num: number of samples.
        n: matrix size.
        generator: random source (the global one if ``None``).
        det: ``None`` (all of O(n)), ``1`` (SO(n)) or ``-1`` (reflections).
        columns: return the first ``columns`` columns only: Haar samples of the Stiefel
            manifold of orthonormal ``columns``-frames in R^n (``det`` must be ``None``).
    """
    if det not in (None, 1, -1):
        raise ValueError(f"det must be None, 1 or -1, got {det!r}")
    if int(n) < 1 or int(num) < 0:
        raise ValueError(f"expected n >= 1 and num >= 0, got n={n}, num={num}")
    cols = n if columns is None else int(columns)
    if not 1 <= cols <= n:
        raise ValueError(f"columns must be in [1, {n}], got {columns}")
    if cols != n and det is not None:
        raise ValueError("det applies to square samples only (columns=None)")
    if n == 2 and cols == 2:
        theta = 2 * math.pi * torch.rand(num, generator=generator, dtype=torch.float64)
        c, s = torch.cos(theta), torch.sin(theta)
        q = torch.stack([c, -s, s, c], dim=-1).reshape(num, 2, 2)
        if det is None:
            flip = torch.rand(num, generator=generator) < 0.5
        else:
            flip = torch.full((num,), det < 0)
        q[flip, :, 1] = -q[flip, :, 1]
        return q.to(dtype=dtype, device=device)
    gauss = torch.randn(num, n, cols, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    if det is not None:
        wrong = torch.linalg.det(q) * det < 0
        q[wrong, :, 0] = -q[wrong, :, 0]
    return q.to(dtype=dtype, device=device)
