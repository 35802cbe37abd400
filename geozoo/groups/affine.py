"""Affine groups ``R^n x| H`` for a linear group ``H`` of :mod:`geozoo.groups.matrix`
(Mironenco & Forre, ICLR 2024, Sec. 4: the convolutions are equivariant to these groups).

An element ``(t, A)`` acts on points by ``x -> A x + t`` and is stored as the homogeneous
``(n + 1) x (n + 1)`` matrix ``[[A, t], [0, 1]]``, so composition is the matrix product:
``(t, A)(s, B) = (t + A s, A B)``. The left Haar measure is ``dt dmu_H(A) / |det A|``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from geozoo.groups.matrix import PolarGroup

__all__ = ["Affine"]


class Affine:
    """The affine group ``R^n x| H``.

    Args:
        linear: the linear part ``H`` (e.g. ``GLPlus(2)``, ``SL(2)``); it must be a subgroup.
        translation_range: :meth:`sample` draws translations uniformly from
            ``[-translation_range, translation_range]^n``.
    """

    def __init__(self, linear: PolarGroup, translation_range: float = 1.0) -> None:
        if not isinstance(linear, PolarGroup):
            raise TypeError(f"expected a geozoo.groups PolarGroup, got {type(linear).__name__}")
        if not linear.is_subgroup:
            raise ValueError(f"{linear!r} is not closed under the matrix product")
        self.linear = linear
        self.n = linear.n
        self.translation_range = float(translation_range)

    def __repr__(self) -> str:
        return f"Affine({self.linear!r})"

    @property
    def dim(self) -> int:
        return self.n + self.linear.dim

    # ----------------------------------------------------------------- elements
    def element(self, translation: Tensor, linear: Tensor) -> Tensor:
        """The homogeneous matrix of ``(t, A)``; shapes ``(..., n)`` and ``(..., n, n)``."""
        n = self.n
        batch = torch.broadcast_shapes(translation.shape[:-1], linear.shape[:-2])
        out = linear.new_zeros(*batch, n + 1, n + 1)
        out[..., :n, :n] = linear
        out[..., :n, n] = translation
        out[..., n, n] = 1.0
        return out

    def split(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """``(t, A)`` from a homogeneous matrix."""
        n = self.n
        if g.shape[-2:] != (n + 1, n + 1):
            raise ValueError(
                f"expected affine matrices (..., {n + 1}, {n + 1}), got {tuple(g.shape)}"
            )
        return g[..., :n, n], g[..., :n, :n]

    def identity(self, *batch: int, dtype=torch.float32, device=None) -> Tensor:
        return (
            torch.eye(self.n + 1, dtype=dtype, device=device)
            .expand(*batch, self.n + 1, self.n + 1)
            .clone()
        )

    def compose(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ b

    def inverse(self, g: Tensor) -> Tensor:
        """``(t, A)^{-1} = (-A^{-1} t, A^{-1})``."""
        t, a = self.split(g)
        a_inv = self.linear.inverse(a)
        return self.element(-(a_inv @ t.unsqueeze(-1)).squeeze(-1), a_inv)

    def act(self, g: Tensor, x: Tensor) -> Tensor:
        """``A x + t`` for points ``x`` of shape ``(..., n)``."""
        t, a = self.split(g)
        return (a @ x.unsqueeze(-1)).squeeze(-1) + t

    def det(self, g: Tensor) -> Tensor:
        return torch.linalg.det(self.split(g)[1])

    def contains(self, g: Tensor, atol: float = 1e-5) -> Tensor:
        n = self.n
        bottom = g[..., n, :]
        expected = torch.zeros(n + 1, dtype=g.dtype, device=g.device)
        expected[n] = 1.0
        ok = ((bottom - expected).abs() <= atol).all(-1)
        return ok & self.linear.contains(g[..., :n, :n], atol)

    # ----------------------------------------------------------------- decomposition
    def decompose(self, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(t, R, P)`` with ``g = T(t) R P``."""
        t, a = self.split(g)
        r, p = self.linear.decompose(a)
        return t, r, p

    def compose_factors(self, t: Tensor, r: Tensor, p: Tensor) -> Tensor:
        return self.element(t, r @ p)

    def log(self, g: Tensor) -> Tensor:
        """Global chart ``(t, xi_H^{-1}(A))``, shape ``(..., n + dim H)``."""
        t, a = self.split(g)
        return torch.cat([t, self.linear.log(a)], dim=-1)

    def exp(self, v: Tensor) -> Tensor:
        """Inverse of :meth:`log`: ``T(v[:n]) xi_H(v[n:])``."""
        if v.shape[-1] != self.dim:
            raise ValueError(f"{self!r} has {self.dim} chart coordinates, got {tuple(v.shape)}")
        return self.element(v[..., : self.n], self.linear.exp(v[..., self.n :]))

    def sample(
        self, num: int, generator: torch.Generator | None = None, dtype=torch.float32, device=None
    ) -> Tensor:
        """Uniform translation in the box times :meth:`PolarGroup.sample` of the linear part."""
        t = 2 * torch.rand(num, self.n, generator=generator, dtype=torch.float64) - 1
        t = (t * self.translation_range).to(dtype=dtype, device=device)
        return self.element(t, self.linear.sample(num, generator, dtype, device))
