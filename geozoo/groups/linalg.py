"""Batched matrix functions used by the group code: symmetric exp/log/powers through ``eigh``,
rotation exp/log, and the ``hat``/``vee`` maps between matrices and Lie-algebra coordinates.

Everything works on tensors of shape ``(..., n, n)`` in float32 or float64 and any ``n``.
Coordinates are taken in bases that are orthonormal for the Frobenius inner product
``<X, Y> = tr(X^T Y)``, so the Euclidean norm of the coordinates is the Frobenius norm of the
matrix (Mironenco & Forre, ICLR 2024, Sec. 3: the chart of a decomposed group is built from the
Lie algebras of its factors).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "skew_dim",
    "so_exp",
    "so_hat",
    "so_log",
    "so_vee",
    "sym_apply",
    "sym_dim",
    "sym_exp",
    "sym_hat",
    "sym_log",
    "sym_pow",
    "sym_vee",
    "traceless_basis",
]


def skew_dim(n: int) -> int:
    """Dimension ``n (n - 1) / 2`` of so(n)."""
    return n * (n - 1) // 2


def sym_dim(n: int, traceless: bool = False) -> int:
    """Dimension of the symmetric matrices (``n (n + 1) / 2``), minus one if traceless."""
    return n * (n + 1) // 2 - (1 if traceless else 0)


def _check_square(x: Tensor, what: str) -> int:
    if x.dim() < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"expected {what} of shape (..., n, n), got {tuple(x.shape)}")
    return x.shape[-1]


def sym_apply(p: Tensor, fn) -> Tensor:
    """``V diag(fn(lambda)) V^T`` for symmetric ``p = V diag(lambda) V^T``."""
    _check_square(p, "symmetric matrices")
    sym = 0.5 * (p + p.transpose(-1, -2))
    evals, evecs = torch.linalg.eigh(sym)
    return (evecs * fn(evals).unsqueeze(-2)) @ evecs.transpose(-1, -2)


def sym_exp(x: Tensor) -> Tensor:
    """Matrix exponential of symmetric ``x``: a positive-definite matrix."""
    return sym_apply(x, torch.exp)


def sym_log(p: Tensor) -> Tensor:
    """Principal logarithm of positive-definite ``p``: the unique symmetric ``X`` with
    ``exp(X) = p``. Raises if an eigenvalue is not positive."""
    sym = 0.5 * (p + p.transpose(-1, -2))
    evals, evecs = torch.linalg.eigh(sym)
    if not torch.jit.is_tracing() and bool((evals <= 0).any()):
        raise ValueError(
            f"sym_log expects positive-definite matrices, got smallest eigenvalue "
            f"{float(evals.min()):.3g}"
        )
    return (evecs * torch.log(evals).unsqueeze(-2)) @ evecs.transpose(-1, -2)


def sym_pow(p: Tensor, power: float) -> Tensor:
    """``p ** power`` for positive-definite ``p`` (e.g. ``power=0.5`` is the PD square root)."""
    return sym_apply(p, lambda ev: ev.clamp_min(torch.finfo(ev.dtype).tiny) ** power)


def traceless_basis(n: int, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """Rows ``u_k = (1, ..., 1, -k, 0, ..., 0) / sqrt(k (k + 1))``, ``k = 1..n-1``: an orthonormal
    basis of the zero-sum vectors in R^n (the Helmert basis), shape ``(n - 1, n)``."""
    basis = torch.zeros(n - 1, n, dtype=dtype, device=device)
    for k in range(1, n):
        basis[k - 1, :k] = 1.0
        basis[k - 1, k] = -float(k)
        basis[k - 1] /= math.sqrt(k * (k + 1))
    return basis


def sym_vee(x: Tensor, traceless: bool = False) -> Tensor:
    """Coordinates of symmetric ``x`` in a Frobenius-orthonormal basis.

    The first coordinates describe the diagonal (the diagonal itself, or for ``traceless`` its
    Helmert coordinates, ``n - 1`` numbers), followed by ``sqrt(2) x_ij`` for ``i < j`` in
    row-major order.
    """
    n = _check_square(x, "symmetric matrices")
    diag = torch.diagonal(x, dim1=-2, dim2=-1)
    if traceless:
        diag = diag @ traceless_basis(n, x.dtype, x.device).transpose(0, 1)
    rows, cols = torch.triu_indices(n, n, offset=1, device=x.device)
    off = x[..., rows, cols] * math.sqrt(2.0)
    return torch.cat([diag, off], dim=-1)


def sym_hat(v: Tensor, n: int, traceless: bool = False) -> Tensor:
    """Inverse of :func:`sym_vee`: the symmetric (traceless) matrix with coordinates ``v``."""
    d = sym_dim(n, traceless)
    if v.shape[-1] != d:
        raise ValueError(f"expected {d} coordinates for Sym({n}), got shape {tuple(v.shape)}")
    n_diag = n - 1 if traceless else n
    diag = v[..., :n_diag]
    if traceless:
        diag = diag @ traceless_basis(n, v.dtype, v.device)
    out = torch.diag_embed(diag)
    rows, cols = torch.triu_indices(n, n, offset=1, device=v.device)
    off = v[..., n_diag:] / math.sqrt(2.0)
    out = out.clone()
    out[..., rows, cols] = off
    out[..., cols, rows] = off
    return out


def so_vee(x: Tensor) -> Tensor:
    """Coordinates of a skew matrix: ``x_ji`` for ``i < j`` (row-major over ``(i, j)``).

    For n = 2 this is the angle ``theta`` of ``[[0, -theta], [theta, 0]]``. The basis
    ``E_ji - E_ij`` has Frobenius norm sqrt(2); we keep the unnormalised angle convention.
    """
    n = _check_square(x, "skew matrices")
    rows, cols = torch.triu_indices(n, n, offset=1, device=x.device)
    return x[..., cols, rows]


def so_hat(v: Tensor, n: int) -> Tensor:
    """Inverse of :func:`so_vee`."""
    d = skew_dim(n)
    if v.shape[-1] != d:
        raise ValueError(f"expected {d} coordinates for so({n}), got shape {tuple(v.shape)}")
    out = v.new_zeros(*v.shape[:-1], n, n)
    rows, cols = torch.triu_indices(n, n, offset=1, device=v.device)
    out[..., cols, rows] = v
    out[..., rows, cols] = -v
    return out


def so_exp(v: Tensor, n: int) -> Tensor:
    """Rotation ``exp(hat(v))``; closed form for n = 2, ``matrix_exp`` otherwise."""
    if n == 2:
        if v.shape[-1] != 1:
            raise ValueError(f"expected 1 coordinate for so(2), got shape {tuple(v.shape)}")
        c, s = torch.cos(v[..., 0]), torch.sin(v[..., 0])
        return torch.stack([c, -s, s, c], dim=-1).reshape(*v.shape[:-1], 2, 2)
    return torch.linalg.matrix_exp(so_hat(v, n))


def so_log(r: Tensor) -> Tensor:
    """Coordinates of the principal logarithm of rotations ``r`` (rotation angles in
    ``(-pi, pi]``).

    Closed forms for n = 2 (``atan2``) and n = 3 (Rodrigues); for n > 3 a complex eigen-
    decomposition, which is exact away from rotation angles of exactly pi.
    """
    n = _check_square(r, "rotation matrices")
    if n == 1:
        return r.new_zeros(*r.shape[:-2], 0)
    if n == 2:
        return torch.atan2(r[..., 1, 0], r[..., 0, 0]).unsqueeze(-1)
    if n == 3:
        trace = torch.diagonal(r, dim1=-2, dim2=-1).sum(-1)
        cos = ((trace - 1.0) / 2.0).clamp(-1.0, 1.0)
        angle = torch.acos(cos)
        skew = 0.5 * (r - r.transpose(-1, -2))
        sin = torch.sin(angle)
        small = sin.abs() < 1e-6
        factor = torch.where(small, torch.ones_like(angle), angle / torch.where(small, 1.0, sin))
        log = skew * factor[..., None, None]
        # near angle pi the skew part vanishes: recover the axis from r + I = 2 a a^T
        near_pi = small & (cos < 0)
        if bool(near_pi.any()):
            sym = 0.5 * (r + torch.eye(3, dtype=r.dtype, device=r.device))
            evals, evecs = torch.linalg.eigh(sym[near_pi])
            axis = evecs[..., -1] * angle[near_pi].unsqueeze(-1)
            log = log.clone()
            log[near_pi] = so_hat(torch.stack([axis[..., 2], -axis[..., 1], axis[..., 0]], -1), 3)
        return so_vee(log)
    evals, evecs = torch.linalg.eig(r)
    log = (evecs * torch.log(evals).unsqueeze(-2)) @ torch.linalg.inv(evecs)
    log = log.real.to(r.dtype)
    return so_vee(0.5 * (log - log.transpose(-1, -2)))
