"""Lie-group math in pure torch (no ``nn.Module``): SO(n), PD(n), GL+(n), SL(n), rotation-scaling
and the affine groups, with polar decomposition, global charts and samplers (Mironenco & Forre,
"Lie Group Decompositions for Equivariant Neural Networks", ICLR 2024)."""

from geozoo.groups.affine import Affine
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
    haar_so,
    polar,
)
from geozoo.groups.representations import MatrixGroup, Rep, get_group

__all__ = [
    "PD",
    "SL",
    "SO",
    "Affine",
    "GLPlus",
    "MatrixGroup",
    "PolarGroup",
    "Rep",
    "RotationScaling",
    "Scaling",
    "UnitPD",
    "get_group",
    "haar_so",
    "polar",
    "so_exp",
    "so_log",
    "sym_exp",
    "sym_log",
    "sym_pow",
]
