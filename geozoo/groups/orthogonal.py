"""Subgroups of O(n) that are not polar-decomposed Lie groups: O(n) itself, the finite groups of
the plane (cyclic C_N and dihedral D_N, the symmetries of steerable CNNs: Weiler & Cesa,
NeurIPS 2019), permutation groups, the trivial group, and planar groups embedded in R^3 as the
rotations (and reflections) of the plane orthogonal to a coordinate axis.

SO(n) is :class:`geozoo.groups.SO` (the rotation factor of :mod:`geozoo.groups.matrix`); O(2)
and SO(2) embedded about the z axis are ``Embedded(Orthogonal(2), "z")`` and
``Embedded(SO(2), "z")``, named ``"o2_z"`` and ``"so2_z"``. Compact groups sample from their
Haar measure: the orthogonal family through :func:`~geozoo.groups.haar.haar_orthogonal`, finite
groups uniformly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from geozoo.groups.base import MatrixGroup
from geozoo.groups.haar import haar_orthogonal
from geozoo.groups.linalg import skew_dim, so_hat

__all__ = ["AXES", "Cyclic", "Dihedral", "Embedded", "Orthogonal", "Permutations", "Trivial"]

#: The coordinate axes of R^3 a planar group can be embedded about.
AXES = {"x": 0, "y": 1, "z": 2}


def _rotations_2d(angles: Tensor) -> Tensor:
    c, s = torch.cos(angles), torch.sin(angles)
    return torch.stack([c, -s, s, c], dim=-1).reshape(*angles.shape, 2, 2)


class _OrthogonalMatrices(MatrixGroup):
    """Groups of orthogonal matrices: the inverse is the transpose."""

    def inverse(self, g: Tensor) -> Tensor:
        return g.transpose(-1, -2)


class Orthogonal(_OrthogonalMatrices):
    """The orthogonal group O(n) = {Q : Q^T Q = I}: so(n) and one reflection; Haar samples from
    :func:`~geozoo.groups.haar.haar_orthogonal`.

    The reflection is ``diag(1, -1)`` on the plane (the mirror about the x axis, as in
    :class:`Dihedral` and escnn) and ``diag(-1, 1, ..., 1)`` otherwise. Any reflection generates
    the same group; the choice only fixes the rounding of the projectors built from it, kept
    identical to the soft-equivariance results in docs/soft_equivariance.md.
    """

    def __init__(self, n: int) -> None:
        if int(n) < 1:
            raise ValueError(f"expected matrix size n >= 1, got {n}")
        self.n = int(n)

    @property
    def name(self) -> str:
        return f"o{self.n}"

    @property
    def lie_generators(self) -> Tensor:
        return so_hat(torch.eye(skew_dim(self.n), dtype=torch.float64), self.n)

    @property
    def discrete_generators(self) -> Tensor:
        reflection = torch.eye(self.n, dtype=torch.float64)
        mirrored = 1 if self.n == 2 else 0
        reflection[mirrored, mirrored] = -1.0
        return reflection[None]

    def sample(self, num, generator=None, dtype=torch.float32, device=None) -> Tensor:
        return haar_orthogonal(num, self.n, generator, dtype, device)


class Cyclic(_OrthogonalMatrices):
    """C_N: the ``N`` rotations of the plane by multiples of ``2 pi / N`` (2 x 2 matrices)."""

    def __init__(self, order: int) -> None:
        if int(order) < 1:
            raise ValueError(f"expected a group order N >= 1, got {order}")
        self.n, self.rotations = 2, int(order)

    def params(self) -> tuple:
        return (self.rotations,)

    @property
    def name(self) -> str:
        return f"c{self.rotations}"

    @property
    def order(self) -> int:
        return self.rotations

    @property
    def discrete_generators(self) -> Tensor:
        return _rotations_2d(torch.tensor([2 * math.pi / self.rotations], dtype=torch.float64))

    def elements(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """All elements, ``(order, 2, 2)``: the rotation by ``2 pi k / N`` at index ``k`` (then,
        for D_N, the reflections in the same order)."""
        steps = torch.arange(self.rotations, dtype=torch.float64)
        return _rotations_2d(2 * math.pi * steps / self.rotations).to(dtype)

    def sample(self, num, generator=None, dtype=torch.float32, device=None) -> Tensor:
        """Uniform on the elements (the Haar measure of a finite group)."""
        index = torch.randint(self.order, (num,), generator=generator)
        return self.elements()[index].to(dtype=dtype, device=device)


class Dihedral(Cyclic):
    """D_N: C_N and the ``N`` reflections ``R(2 pi k / N) F`` with ``F = diag(1, -1)``, the
    mirror about the x axis (escnn's ``flipRot2dOnR2(N)`` with its default axis)."""

    @property
    def name(self) -> str:
        return f"d{self.rotations}"

    @property
    def order(self) -> int:
        return 2 * self.rotations

    @property
    def discrete_generators(self) -> Tensor:
        flip = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
        return torch.cat([super().discrete_generators, flip[None]])

    def elements(self, dtype: torch.dtype = torch.float64) -> Tensor:
        rotations = super().elements(torch.float64)
        flip = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
        return torch.cat([rotations, rotations @ flip]).to(dtype)


class Permutations(_OrthogonalMatrices):
    """The symmetric group S_n permuting the coordinates of R^n (generated by a transposition and
    an n-cycle)."""

    def __init__(self, n: int) -> None:
        if int(n) < 2:
            raise ValueError(f"permutations need n >= 2, got {n}")
        self.n = int(n)

    @property
    def name(self) -> str:
        return f"s{self.n}"

    @property
    def order(self) -> int:
        return math.factorial(self.n)

    @property
    def discrete_generators(self) -> Tensor:
        eye = torch.eye(self.n, dtype=torch.float64)
        swap = eye[[1, 0, *range(2, self.n)]]
        cycle = eye[[*range(1, self.n), 0]]
        return torch.stack([swap, cycle])

    def sample(self, num, generator=None, dtype=torch.float32, device=None) -> Tensor:
        """Uniform random permutation matrices."""
        perms = torch.stack([torch.randperm(self.n, generator=generator) for _ in range(num)])
        eye = torch.eye(self.n, dtype=torch.float64)
        return eye[perms.reshape(num, self.n)].to(dtype=dtype, device=device)


class Trivial(_OrthogonalMatrices):
    """The trivial group {I} on R^n: every linear map is equivariant to it."""

    def __init__(self, n: int = 3) -> None:
        if int(n) < 1:
            raise ValueError(f"expected matrix size n >= 1, got {n}")
        self.n = int(n)

    @property
    def name(self) -> str:
        return "trivial" if self.n == 3 else f"trivial{self.n}"

    @property
    def order(self) -> int:
        return 1

    def sample(self, num, generator=None, dtype=torch.float32, device=None) -> Tensor:
        return self.identity(num, dtype=dtype, device=device)


class Embedded(MatrixGroup):
    """A group of 2 x 2 matrices acting on the plane of R^3 orthogonal to a coordinate axis,
    fixing that axis: ``g -> [[g, 0], [0, 1]]`` in the coordinates ``(i, j, axis)``.

    ``Embedded(SO(2), "z")`` (``"so2_z"``) is SO(2) as the rotations about z,
    ``Embedded(Orthogonal(2), "z")`` (``"o2_z"``) adds the mirrors containing z. Samples are the
    embedded samples of the planar group (Haar for compact ones).

    Args:
        planar: a group with ``n == 2`` (SO(2), O(2), C_N, D_N, ...).
        axis: ``"x"``, ``"y"`` or ``"z"``.
    """

    def __init__(self, planar: MatrixGroup, axis: str = "z") -> None:
        if not isinstance(planar, MatrixGroup) or planar.n != 2:
            raise ValueError(f"expected a group of 2 x 2 matrices, got {planar!r}")
        if axis not in AXES:
            raise ValueError(f"axis must be one of {sorted(AXES)}, got {axis!r}")
        self.planar, self.axis, self.n = planar, axis, 3
        fixed = AXES[axis]
        self._plane = [k for k in range(3) if k != fixed]

    def params(self) -> tuple:
        return (self.planar, self.axis)

    @property
    def name(self) -> str:
        return f"{self.planar.name}_{self.axis}"

    @property
    def order(self) -> int | None:
        return self.planar.order

    def embed(self, g: Tensor) -> Tensor:
        """``(..., 2, 2) -> (..., 3, 3)``: ``g`` on the plane, 1 on the axis."""
        out = torch.zeros(*g.shape[:-2], 3, 3, dtype=g.dtype, device=g.device)
        out[..., AXES[self.axis], AXES[self.axis]] = 1.0
        i, j = self._plane
        out[..., i, i], out[..., i, j] = g[..., 0, 0], g[..., 0, 1]
        out[..., j, i], out[..., j, j] = g[..., 1, 0], g[..., 1, 1]
        return out

    @property
    def lie_generators(self) -> Tensor:
        gens = self.embed(self.planar.lie_generators)
        fixed = AXES[self.axis]
        gens[..., fixed, fixed] = 0.0  # algebra elements vanish on the fixed axis
        return gens

    @property
    def discrete_generators(self) -> Tensor:
        return self.embed(self.planar.discrete_generators)

    def inverse(self, g: Tensor) -> Tensor:
        i, j = self._plane
        planar = g[..., [i, j], :][..., :, [i, j]]
        return self.embed(self.planar.inverse(planar))

    def sample(self, num, generator=None, dtype=torch.float32, device=None) -> Tensor:
        planar = self.planar.sample(num, generator, torch.float64)
        return self.embed(planar).to(dtype=dtype, device=device)
