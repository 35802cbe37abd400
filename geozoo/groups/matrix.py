"""Matrix Lie groups in their polar (Cartan) decomposition, following Mironenco & Forre,
"Lie Group Decompositions for Equivariant Neural Networks", ICLR 2024 (arXiv 2310.11366).

Every group here is a subgroup of GL+(n, R) that factorises as ``G = K x P`` through the polar
decomposition ``g = R P``: ``R = g (g^T g)^{-1/2}`` in the rotation factor ``K`` (SO(n), or the
trivial group) and ``P = (g^T g)^{1/2}`` in a set of positive-definite matrices ``P``:

============================  ============  ===================================  ===========
group                          rotation K    positive factor P                    dim
============================  ============  ===================================  ===========
``SO(n)``                      SO(n)         {I}                                  n(n-1)/2
``PD(n)``  (not a subgroup)    {I}           all SPD matrices                     n(n+1)/2
``UnitPD(n)`` (idem)           {I}           SPD with det = 1                     n(n+1)/2-1
``GLPlus(n)``                  SO(n)         all SPD matrices                     n^2
``SL(n)``                      SO(n)         SPD with det = 1                     n^2-1
``RotationScaling(n)``         SO(n)         s I, s > 0                           n(n-1)/2+1
``Scaling(n)``                 {I}           s I, s > 0                           1
============================  ============  ===================================  ===========

The global parametrisation of the paper (Sec. 3, "Lie group decompositions") is the
diffeomorphism ``xi: so(n) x p -> G, (X, S) -> exp(X) exp(S)`` for the symmetric part, with inverse
``xi^{-1}(g) = (log R, log P)``; here both are returned as one coordinate vector
(:meth:`PolarGroup.log` / :meth:`PolarGroup.exp`). ``exp`` on the symmetric factor is a global
diffeomorphism onto ``P`` (the group exponential of GL+(n) is not surjective, the chart is). On
SO(n) the log is the principal one: it is a chart away from rotation angles of pi, which is the
measure-zero cut locus of the paper's construction.

Haar measure (Sec. 4): GL+(n) and SL(n) are unimodular and their Haar measure factorises as
``dmu_G(R P) = dmu_SO(R) dmu_P(P)`` with ``dmu_P(P) = det(P)^{-(n+1)/2} prod_{i<=j} dP_ij`` the
GL-invariant measure on the positive-definite matrices. ``dmu_P`` has infinite mass, so it
cannot be sampled; :meth:`PolarGroup.sample` draws the rotation from the Haar measure of SO(n)
and the positive factor from a log-normal law (``log P`` Gaussian with standard deviation
``pd_scale`` per orthonormal coordinate; see :meth:`PolarGroup.sample_positive`). A Monte-Carlo
group integral with these samples is exactly invariant to left translation by rotations, and only
approximately invariant to left translation by a positive factor ``Q``: the samples of ``Q g`` are
distributed as log-normal around ``log Q`` instead of around 0, so the relative error grows with
``||log Q|| / pd_scale``. :mod:`geozoo.nn.affine` measures this error for the layers.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from geozoo.groups.base import MatrixGroup
from geozoo.groups.haar import haar_orthogonal
from geozoo.groups.linalg import (
    skew_dim,
    so_exp,
    so_hat,
    so_log,
    sym_exp,
    sym_hat,
    sym_log,
    sym_vee,
)

__all__ = [
    "PD",
    "SL",
    "SO",
    "GLPlus",
    "PolarGroup",
    "RotationScaling",
    "Scaling",
    "UnitPD",
    "polar",
]

Positive = Literal["none", "full", "unit", "scalar"]

#: Default ``max_log_scale`` of the scaling groups: scales uniform in log over [1/2, 2].
DEFAULT_MAX_LOG_SCALE = math.log(2.0)


def polar(g: Tensor) -> tuple[Tensor, Tensor]:
    """Right polar decomposition ``g = R P`` of matrices with positive determinant.

    Through the SVD ``g = U S V^T``: ``R = U V^T`` (a rotation, since det g > 0) and
    ``P = V S V^T = (g^T g)^{1/2}`` (positive-definite). Shapes ``(..., n, n)``.
    """
    if g.dim() < 2 or g.shape[-1] != g.shape[-2]:
        raise ValueError(f"expected square matrices of shape (..., n, n), got {tuple(g.shape)}")
    u, s, vh = torch.linalg.svd(g)
    r = u @ vh
    p = (vh.transpose(-1, -2) * s.unsqueeze(-2)) @ vh
    return r, 0.5 * (p + p.transpose(-1, -2))


class PolarGroup(MatrixGroup):
    """A subgroup (or factor) of GL+(n) with elements stored as ``(..., n, n)`` matrices.

    Args:
        n: matrix size.
        rotation: whether the rotation factor is SO(n) (else trivial).
        positive: the positive factor: ``"none"`` ({I}), ``"full"`` (all SPD), ``"unit"``
            (SPD with det 1) or ``"scalar"`` (``s I``).
        pd_scale: standard deviation of each orthonormal coordinate of ``log P`` under
            :meth:`sample` (the log-normal substitute for the infinite Haar measure of P).
        max_log_scale: scalar positive factors only: draw ``log s`` uniformly from
            ``[-max_log_scale, max_log_scale]`` instead of the log-normal law (``None``).
    """

    def __init__(
        self,
        n: int,
        rotation: bool,
        positive: Positive,
        pd_scale: float = 0.2,
        max_log_scale: float | None = None,
    ) -> None:
        if int(n) < 1:
            raise ValueError(f"expected matrix size n >= 1, got {n}")
        if positive not in ("none", "full", "unit", "scalar"):
            raise ValueError(
                f"positive must be one of 'none', 'full', 'unit', 'scalar', got {positive!r}"
            )
        if pd_scale < 0:
            raise ValueError(f"pd_scale must be >= 0, got {pd_scale}")
        if max_log_scale is not None and (positive != "scalar" or not max_log_scale > 0):
            raise ValueError(
                "max_log_scale (the log-uniform scale law) needs a scalar positive factor and a "
                f"value > 0, got positive={positive!r}, max_log_scale={max_log_scale}"
            )
        self.n = int(n)
        self.rotation = bool(rotation)
        self.positive: Positive = positive
        self.pd_scale = float(pd_scale)
        self.max_log_scale = None if max_log_scale is None else float(max_log_scale)

    # ----------------------------------------------------------------- structure
    @property
    def rotation_dim(self) -> int:
        return skew_dim(self.n) if self.rotation else 0

    @property
    def positive_dim(self) -> int:
        n = self.n
        return {"none": 0, "full": n * (n + 1) // 2, "unit": n * (n + 1) // 2 - 1, "scalar": 1}[
            self.positive
        ]

    @property
    def dim(self) -> int:
        """Dimension of the group (number of chart coordinates)."""
        return self.rotation_dim + self.positive_dim

    @property
    def is_subgroup(self) -> bool:
        """False for PD(n) and UnitPD(n), which are not closed under the matrix product."""
        return self.rotation or self.positive in ("none", "scalar")

    @property
    def unimodular_det(self) -> bool:
        """True when every element has det 1."""
        return self.positive in ("none", "unit")

    @property
    def name(self) -> str:
        """Canonical name (see :func:`geozoo.groups.get_group`): ``so<n>``, ``gl<n>``,
        ``sl<n>``, ``so<n>_scaling``, ``scaling`` (n = 3, else ``scaling<n>``), ``pd<n>``,
        ``unitpd<n>``."""
        n = self.n
        key = (self.rotation, self.positive)
        if key == (True, "none"):
            return f"so{n}"
        if key == (True, "full"):
            return f"gl{n}"
        if key == (True, "unit"):
            return f"sl{n}"
        if key == (True, "scalar"):
            return f"so{n}_scaling"
        if key == (False, "scalar"):
            # the soft-equivariance spelling of the scalings of R^3 predates the suffix
            return "scaling" if n == 3 else f"scaling{n}"
        if key == (False, "full"):
            return f"pd{n}"
        if key == (False, "unit"):
            return f"unitpd{n}"
        return "trivial" if n == 3 else f"trivial{n}"

    def params(self) -> tuple:
        return (self.n, self.rotation, self.positive, self.pd_scale, self.max_log_scale)

    def __repr__(self) -> str:
        extra = ""
        if self.max_log_scale is not None:
            extra = f", max_log_scale={self.max_log_scale:.4g}"
        elif self.positive != "none":
            extra = f", pd_scale={self.pd_scale}"
        return f"{type(self).__name__}({self.n}{extra})"

    def __eq__(self, other: object) -> bool:
        # structural: SO(2) equals PolarGroup(2, True, "none", 0.0)
        return isinstance(other, PolarGroup) and self.params() == other.params()

    def __hash__(self) -> int:
        return hash(("PolarGroup", self.params()))

    @property
    def lie_generators(self) -> Tensor:
        """Chart basis: ``hat`` of the unit coordinate vectors of :meth:`exp` (so(n) first, then
        the symmetric, traceless symmetric or scalar part), float64 ``(dim, n, n)``."""
        parts = []
        if self.rotation:
            parts.append(so_hat(torch.eye(self.rotation_dim, dtype=torch.float64), self.n))
        if self.positive != "none":
            parts.append(self._positive_hat(torch.eye(self.positive_dim, dtype=torch.float64)))
        if not parts:
            return torch.zeros(0, self.n, self.n, dtype=torch.float64)
        return torch.cat(parts)

    # ----------------------------------------------------------------- group law
    def compose(self, a: Tensor, b: Tensor) -> Tensor:
        """The product ``a b``. For the non-subgroups PD(n)/UnitPD(n) the log-Euclidean product
        ``exp(log a + log b)`` (Arsigny et al., 2007), which makes them abelian groups."""
        if not self.is_subgroup:
            return sym_exp(sym_log(a) + sym_log(b))
        return a @ b

    def inverse(self, g: Tensor) -> Tensor:
        """``g^{-1}``; for rotations the transpose (exact), otherwise ``linalg.inv``."""
        if self.positive == "none":
            return g.transpose(-1, -2)
        return torch.linalg.inv(g)

    def act(self, g: Tensor, x: Tensor) -> Tensor:
        """The linear action on points: ``g x`` for ``g`` of shape ``(..., n, n)`` and ``x`` of
        shape ``(..., n)`` (broadcast). For PD(n) this is the linear map of the factor inside
        GL+(n), not an action of the log-Euclidean group."""
        return (g @ x.unsqueeze(-1)).squeeze(-1)

    def det(self, g: Tensor) -> Tensor:
        return torch.linalg.det(g)

    def contains(self, g: Tensor, atol: float = 1e-5) -> Tensor:
        """Boolean ``(...)`` tensor: is ``g`` (up to ``atol``) an element of the group?"""
        r, p = polar(g)
        eye = torch.eye(self.n, dtype=g.dtype, device=g.device)
        ok = torch.linalg.det(g) > 0
        if not self.rotation:
            ok &= ((r - eye).abs() <= atol).flatten(-2).all(-1)
        if self.positive == "none":
            ok &= ((p - eye).abs() <= atol).flatten(-2).all(-1)
        elif self.positive == "unit":
            ok &= (torch.linalg.det(p) - 1).abs() <= atol
        elif self.positive == "scalar":
            scale = torch.diagonal(p, dim1=-2, dim2=-1).mean(-1)
            ok &= ((p - scale[..., None, None] * eye).abs() <= atol).flatten(-2).all(-1)
        return ok

    # ----------------------------------------------------------------- decomposition
    def decompose(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """Polar factors ``(R, P)`` with ``g = R P`` (paper Sec. 3)."""
        return polar(g)

    def compose_factors(self, r: Tensor, p: Tensor) -> Tensor:
        """Inverse of :meth:`decompose`: ``R P``."""
        return r @ p

    # ----------------------------------------------------------------- chart
    def log(self, g: Tensor) -> Tensor:
        """Global chart ``xi^{-1}(g) = (vee(log R), vee(log P))``, shape ``(..., dim)``.

        Rotation coordinates come first (:func:`~geozoo.groups.linalg.so_vee`), then the
        Frobenius-orthonormal coordinates of ``log P`` (:func:`~geozoo.groups.linalg.sym_vee`;
        for ``"scalar"`` the single number ``sqrt(n) log s``).
        """
        r, p = self.decompose(g)
        parts = []
        if self.rotation:
            parts.append(so_log(r))
        if self.positive != "none":
            parts.append(self._positive_vee(sym_log(p)))
        if not parts:
            return g.new_zeros(*g.shape[:-2], 0)
        return torch.cat(parts, dim=-1)

    def exp(self, v: Tensor) -> Tensor:
        """The parametrisation ``xi(v) = exp(hat(v_R)) exp(hat(v_P))``; inverse of :meth:`log`
        (for rotation angles in ``(-pi, pi)``)."""
        if v.shape[-1] != self.dim:
            raise ValueError(
                f"{self!r} has {self.dim} chart coordinates, got shape {tuple(v.shape)}"
            )
        batch = v.shape[:-1]
        out = self.identity(*batch, dtype=v.dtype, device=v.device)
        if self.rotation:
            out = so_exp(v[..., : self.rotation_dim], self.n)
        if self.positive != "none":
            p = sym_exp(self._positive_hat(v[..., self.rotation_dim :]))
            out = out @ p
        return out

    def _positive_vee(self, s: Tensor) -> Tensor:
        if self.positive == "scalar":
            return (torch.diagonal(s, dim1=-2, dim2=-1).mean(-1) * math.sqrt(self.n)).unsqueeze(-1)
        return sym_vee(s, traceless=self.positive == "unit")

    def _positive_hat(self, v: Tensor) -> Tensor:
        if self.positive == "scalar":
            eye = torch.eye(self.n, dtype=v.dtype, device=v.device)
            return (v[..., 0] / math.sqrt(self.n))[..., None, None] * eye
        return sym_hat(v, self.n, traceless=self.positive == "unit")

    # ----------------------------------------------------------------- sampling
    def sample_rotation(
        self, num: int, generator: torch.Generator | None = None, dtype=torch.float32, device=None
    ) -> Tensor:
        """Haar-distributed rotations (:func:`~geozoo.groups.haar.haar_orthogonal` with
        ``det=1``; the identity if the rotation factor is trivial)."""
        if not self.rotation:
            return self.identity(num, dtype=dtype, device=device)
        return haar_orthogonal(num, self.n, generator, dtype, device, det=1)

    def sample_positive(
        self, num: int, generator: torch.Generator | None = None, dtype=torch.float32, device=None
    ) -> Tensor:
        """Log-normal positive factors ``P = exp(S)``, shape ``(num, n, n)``.

        ``S`` has i.i.d. ``N(0, pd_scale^2)`` coordinates in the Frobenius-orthonormal basis of
        the symmetric (``"full"``), traceless symmetric (``"unit"``) or scalar (``"scalar"``)
        matrices. Density w.r.t. Lebesgue measure ``dS`` on those coordinates:
        ``(2 pi pd_scale^2)^{-d/2} exp(-||S||_F^2 / (2 pd_scale^2))`` (see :meth:`log_density`).
        This replaces the GL-invariant measure ``det(P)^{-(n+1)/2} dP``, which has infinite
        mass; the cost in equivariance is described in the module docstring. With
        ``max_log_scale`` (scalar factors) ``log s`` is uniform on
        ``[-max_log_scale, max_log_scale]`` instead.
        """
        if self.positive == "none":
            return self.identity(num, dtype=dtype, device=device)
        if self.positive == "scalar":
            if self.max_log_scale is None:
                coords = self.pd_scale * torch.randn(num, generator=generator, dtype=torch.float64)
                log_s = coords / math.sqrt(self.n)
            else:
                u = torch.rand(num, generator=generator, dtype=torch.float64)
                log_s = (2 * u - 1) * self.max_log_scale
            p = torch.exp(log_s)[:, None, None] * torch.eye(self.n, dtype=torch.float64)
            return p.to(dtype=dtype, device=device)
        coords = torch.randn(num, self.positive_dim, generator=generator, dtype=torch.float64)
        p = sym_exp(self._positive_hat(coords * self.pd_scale))
        return p.to(dtype=dtype, device=device)

    def sample(
        self, num: int, generator: torch.Generator | None = None, dtype=torch.float32, device=None
    ) -> Tensor:
        """``num`` independent elements ``R P``: Haar rotation times a positive factor from
        :meth:`sample_positive` (the paper's factorised sampler, Sec. 4), multiplied in
        float64."""
        r = self.sample_rotation(num, generator, torch.float64)
        p = self.sample_positive(num, generator, torch.float64)
        return (r @ p).to(dtype=dtype, device=device)

    def log_density(self, g: Tensor) -> Tensor:
        """Log density of :meth:`sample` w.r.t. ``dmu_SO(R) x dS`` (normalised Haar on the rotation
        factor times Lebesgue measure on the orthonormal coordinates of ``S = log P``)."""
        coords = self.log(g)[..., self.rotation_dim :]
        d = self.positive_dim
        if d == 0:
            return g.new_zeros(g.shape[:-2])
        if self.max_log_scale is not None:  # uniform coordinate sqrt(n) log s
            half = math.sqrt(self.n) * self.max_log_scale
            inside = coords[..., 0].abs() <= half
            value = torch.full_like(coords[..., 0], -math.log(2 * half))
            return torch.where(inside, value, torch.full_like(value, -math.inf))
        if self.pd_scale == 0:
            raise ValueError("the sampler with pd_scale=0 has no density")
        var = self.pd_scale**2
        return -0.5 * (coords**2).sum(-1) / var - 0.5 * d * math.log(2 * math.pi * var)


class SO(PolarGroup):
    """The rotation group SO(n) = {R : R^T R = I, det R = 1}."""

    def __init__(self, n: int) -> None:
        super().__init__(n, rotation=True, positive="none", pd_scale=0.0)


class PD(PolarGroup):
    """Positive-definite matrices PD(n), the positive factor of GL+(n) (an abelian group under the
    log-Euclidean product, not under the matrix product)."""

    def __init__(self, n: int, pd_scale: float = 0.2) -> None:
        super().__init__(n, rotation=False, positive="full", pd_scale=pd_scale)

    def congruence(self, g: Tensor, p: Tensor) -> Tensor:
        """The transitive GL+(n) action ``g . P = g P g^T`` that leaves ``dmu_P`` invariant."""
        return g @ p @ g.transpose(-1, -2)


class UnitPD(PD):
    """Positive-definite matrices with det 1: the positive factor of SL(n)."""

    def __init__(self, n: int, pd_scale: float = 0.2) -> None:
        PolarGroup.__init__(self, n, rotation=False, positive="unit", pd_scale=pd_scale)


class GLPlus(PolarGroup):
    """GL+(n, R): invertible matrices with positive determinant, ``g = R P`` with ``R`` in SO(n)
    and ``P`` in PD(n)."""

    def __init__(self, n: int, pd_scale: float = 0.2) -> None:
        super().__init__(n, rotation=True, positive="full", pd_scale=pd_scale)


class SL(PolarGroup):
    """SL(n, R): matrices with det 1, ``g = R P`` with ``R`` in SO(n) and ``P`` in UnitPD(n)."""

    def __init__(self, n: int, pd_scale: float = 0.2) -> None:
        super().__init__(n, rotation=True, positive="unit", pd_scale=pd_scale)


def _scale_law(pd_scale: float | None, max_log_scale: float | None) -> tuple[float, float | None]:
    """``(pd_scale, max_log_scale)`` of a scaling group: log-normal when ``pd_scale`` is given,
    log-uniform otherwise (on ``[1/2, 2]`` unless ``max_log_scale`` says)."""
    if pd_scale is not None and max_log_scale is not None:
        raise ValueError(
            "give pd_scale (log-normal scales) or max_log_scale (log-uniform scales), not both: "
            f"got pd_scale={pd_scale}, max_log_scale={max_log_scale}"
        )
    if pd_scale is not None:
        return pd_scale, None
    return 0.2, DEFAULT_MAX_LOG_SCALE if max_log_scale is None else max_log_scale


class RotationScaling(PolarGroup):
    """Rotation-scalings ``s R`` (``s > 0``, ``R`` in SO(n)): SO(n) x R_{>0}.

    :meth:`sample` draws ``log s`` uniformly from ``[-max_log_scale, max_log_scale]`` (by default
    ``s`` in ``[1/2, 2]``, the range of the soft-equivariance tasks) or, given ``pd_scale``, from
    the log-normal law of the other groups (what the affine layers use).
    """

    def __init__(
        self, n: int, pd_scale: float | None = None, max_log_scale: float | None = None
    ) -> None:
        super().__init__(n, True, "scalar", *_scale_law(pd_scale, max_log_scale))


class Scaling(PolarGroup):
    """Isotropic scalings ``s I``, ``s > 0`` (sampler as :class:`RotationScaling`)."""

    def __init__(
        self, n: int, pd_scale: float | None = None, max_log_scale: float | None = None
    ) -> None:
        super().__init__(n, False, "scalar", *_scale_law(pd_scale, max_log_scale))
