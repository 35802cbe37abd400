"""One vocabulary of group names: :func:`get_group` maps every accepted string to one group value.

Strings stay accepted everywhere a group is an argument (YAML recipes, the ``config.json`` of zoo
checkpoints) and all go through this parser, so a name means the same group in the affine
layers, the steerable layers, the soft-equivariance objectives and the data sets.

==========================  =============================================  ==================
name (case-insensitive)     group value                                    used by
==========================  =============================================  ==================
``so<n>``                   ``SO(n)``                                      affine layers, escnn
``o<n>``                    ``Orthogonal(n)`` (O(n))                       soft equivariance
``gl<n>`` / ``sl<n>``       ``GLPlus(n)`` / ``SL(n)``                      affine layers
``so<n>_scaling``, ``rs<n>`` ``RotationScaling(n)``                        both
``scaling``, ``scaling<n>`` ``Scaling(n)`` (``n = 3`` when omitted)        soft equivariance
``pd<n>`` / ``unitpd<n>``   ``PD(n)`` / ``UnitPD(n)`` (factors, not groups under the product)
``c<N>`` / ``d<N>``         ``Cyclic(N)`` / ``Dihedral(N)`` on the plane    escnn
``s<n>``                    ``Permutations(n)``                            soft equivariance
``trivial``, ``trivial<n>`` ``Trivial(n)`` (``n = 3`` when omitted)        soft equivariance
``<planar>_<x|y|z>``        ``Embedded(get_group(planar), axis)``, e.g.    soft equivariance
                            ``so2_z``, ``o2_x``, ``c4_z``
==========================  =============================================  ==================

Each value's ``name`` is its canonical spelling, and ``get_group(g.name) == g`` for the default
sampler parameters; keyword arguments of :func:`get_group` go to the constructor (e.g.
``get_group("gl2", pd_scale=0.25)``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

from geozoo.groups.base import MatrixGroup
from geozoo.groups.matrix import PD, SL, SO, GLPlus, RotationScaling, Scaling, UnitPD
from geozoo.groups.orthogonal import (
    AXES,
    Cyclic,
    Dihedral,
    Embedded,
    Orthogonal,
    Permutations,
    Trivial,
)

__all__ = ["GROUP_NAMES", "get_group"]

#: The accepted spellings (``<n>``: a matrix size, ``<N>``: a group order).
GROUP_NAMES = (
    "so<n>",
    "o<n>",
    "gl<n>",
    "sl<n>",
    "so<n>_scaling",
    "rs<n>",
    "scaling",
    "scaling<n>",
    "pd<n>",
    "unitpd<n>",
    "c<N>",
    "d<N>",
    "s<n>",
    "trivial",
    "trivial<n>",
    "<2x2 group>_<x|y|z> (e.g. so2_z, o2_x)",
)

# (pattern, constructor of the integer argument); the first full match wins
_PATTERNS: tuple[tuple[str, Callable[..., MatrixGroup]], ...] = (
    (r"so(\d+)", SO),
    (r"o(\d+)", Orthogonal),
    (r"gl(\d+)", GLPlus),
    (r"sl(\d+)", SL),
    (r"so(\d+)_scaling", RotationScaling),
    (r"rs(\d+)", RotationScaling),
    (r"scaling(\d*)", Scaling),
    (r"pd(\d+)", PD),
    (r"unitpd(\d+)", UnitPD),
    (r"c(\d+)", Cyclic),
    (r"d(\d+)", Dihedral),
    (r"s(\d+)", Permutations),
    (r"trivial(\d*)", Trivial),
)


def _unknown(spec: str, reason: str = "") -> ValueError:
    detail = f" ({reason})" if reason else ""
    return ValueError(
        f"unknown group {spec!r}{detail}: expected one of {', '.join(GROUP_NAMES)} or a "
        "geozoo.groups group value"
    )


def _construct(factory: Callable[..., MatrixGroup], size: int, spec: str, params: dict):
    accepted = inspect.signature(factory).parameters
    extra = sorted(set(params) - set(accepted))
    if extra:
        raise ValueError(
            f"group {spec!r} ({factory.__name__}) takes no parameter(s) {extra}; its parameters "
            f"are {[p for p in accepted if p not in ('n', 'order')]}"
        )
    try:
        return factory(size, **params)
    except ValueError as error:
        raise _unknown(spec, str(error)) from error


def get_group(spec: str | MatrixGroup, **params) -> MatrixGroup:
    """The group named ``spec`` (see the module table), or ``spec`` itself if it is a group.

    Args:
        spec: a name such as ``"gl2"``, ``"so2"``, ``"c8"``, ``"o2_z"``, or a group value.
        params: sampler parameters passed to the constructor (``pd_scale``,
            ``max_log_scale``); not allowed with a value.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or a parameter the
            group does not take.
    """
    if isinstance(spec, MatrixGroup):
        if params:
            raise ValueError(f"parameters {sorted(params)} apply to group names, not to {spec!r}")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"expected a group name or a group value, got {type(spec).__name__}")
    name = spec.strip().lower()
    for pattern, factory in _PATTERNS:
        match = re.fullmatch(pattern, name)
        if match:
            size = int(match.group(1)) if match.group(1) else 3
            return _construct(factory, size, spec, params)
    planar = re.fullmatch(r"(.+)_([a-z])", name)
    if planar and planar.group(2) in AXES:
        try:
            inner = get_group(planar.group(1), **params)
        except ValueError as error:
            raise _unknown(spec) from error
        if inner.n != 2:
            raise _unknown(spec, f"{inner.name} does not act on the plane")
        return Embedded(inner, planar.group(2))
    raise _unknown(spec)
