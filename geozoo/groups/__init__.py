"""Lie-group math in pure torch (no ``nn.Module``): SO(n), O(n), PD(n), GL+(n), SL(n),
rotation-scaling, the finite planar groups C_N and D_N, permutations and the affine groups, with
polar decomposition, global charts and samplers (Mironenco & Forre, "Lie Group Decompositions
for Equivariant Neural Networks", ICLR 2024).

Groups are values (:class:`MatrixGroup`); :func:`get_group` is the one parser from names
(``"gl2"``, ``"so2"``, ``"c8"``, ``"o2_z"``, ...) to values."""

from geozoo.groups.affine import Affine
from geozoo.groups.base import MatrixGroup
from geozoo.groups.haar import haar_orthogonal
from geozoo.groups.linalg import so_exp, so_log, sym_exp, sym_log, sym_pow
from geozoo.groups.matrix import (
    PD,
    SL,
    SO,
    GLPlus,
    PolarGroup,
    RotationScaling,
    Scaling,
    UnitPD,
    polar,
)
from geozoo.groups.names import GROUP_NAMES, get_group
from geozoo.groups.orthogonal import (
    Cyclic,
    Dihedral,
    Embedded,
    Orthogonal,
    Permutations,
    Trivial,
)
from geozoo.groups.representations import Rep

__all__ = [
    "GROUP_NAMES",
    "PD",
    "SL",
    "SO",
    "Affine",
    "Cyclic",
    "Dihedral",
    "Embedded",
    "GLPlus",
    "MatrixGroup",
    "Orthogonal",
    "Permutations",
    "PolarGroup",
    "Rep",
    "RotationScaling",
    "Scaling",
    "Trivial",
    "UnitPD",
    "get_group",
    "haar_orthogonal",
    "polar",
    "so_exp",
    "so_log",
    "sym_exp",
    "sym_log",
    "sym_pow",
]
