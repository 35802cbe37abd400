"""Thin blocks over escnn's steerable convolutions (Weiler & Cesa, NeurIPS 2019, "General
E(2)-Equivariant Steerable CNNs"; Cesa, Lang & Weiler, ICLR 2022, escnn).

A steerable convolution maps feature fields of type ``rho_in`` to fields of type ``rho_out``
with kernels solving the constraint ``k(g x) = rho_out(g) k(x) rho_in(g)^-1`` (Weiler & Cesa
2019, eq. 2), so ``conv(g . f) = g . conv(f)`` for every ``g`` in the group. geozoo uses three
group choices on the plane:

* ``"cN"``: the N rotations by multiples of 360/N degrees, regular fields (N channels each);
* ``"dN"``: those rotations and N reflections, regular fields (2N channels each);
* ``"so2"``: all rotations, fields that are sums of the irreps of frequency 0..L
  (band-limited), with a norm nonlinearity that acts on each field's norm only.

Everything here imports escnn lazily through :func:`import_escnn` and leaves escnn as it is
for other code in the process: escnn's own settings are changed only inside geozoo's calls
(:func:`escnn_scope`) or where escnn offers a setting (its cache path, see
:func:`import_escnn`). Networks built from these blocks are exported to plain torch modules for
inference (``export()``), so loading a pretrained zoo model needs neither escnn nor any basis
computation.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from geozoo.groups import SO, Cyclic, Dihedral, MatrixGroup, get_group

__all__ = [
    "FiberPool",
    "SteerableConvBlock",
    "basis_backend",
    "escnn_cache_dir",
    "escnn_scope",
    "fiber_size",
    "field_type",
    "import_escnn",
    "steerable_gspace",
]


def escnn_cache_dir() -> Path:
    """Where geozoo points escnn's joblib cache when escnn's own location cannot be used or the
    user asks for another: ``$GEOZOO_ESCNN_CACHE`` or ``~/.cache/geozoo/escnn``."""
    env = os.environ.get("GEOZOO_ESCNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "geozoo" / "escnn"


def _cache_location(package_dir: Path) -> Path | None:
    """``None`` to keep escnn's own cache (``<escnn>/group/_cache``), else the folder to use:
    the one ``$GEOZOO_ESCNN_CACHE`` names, or :func:`escnn_cache_dir` when escnn's own cannot
    be written (a read-only install, where a plain ``import escnn`` fails)."""
    if os.environ.get("GEOZOO_ESCNN_CACHE"):
        return escnn_cache_dir()
    own = package_dir / "group" / "_cache"
    probe = own if own.exists() else own.parent
    return None if os.access(probe, os.W_OK) else escnn_cache_dir()


class _CachePathSetter(importlib.abc.MetaPathFinder):
    """Gives ``escnn.group.__cache_path__`` (escnn's cache setting, which its modules read once
    when they are imported) the value ``location`` as soon as ``escnn.group`` has defined it and
    before its submodules read it. Finds no module itself; only active during
    :func:`import_escnn`'s import statement."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.default: str | None = None

    def find_spec(self, name, path=None, target=None):
        package = sys.modules.get("escnn.group")
        if package is not None and name.startswith("escnn.group."):
            if self.default is None:
                self.default = package.__cache_path__
            package.__cache_path__ = self.location
        return None


def import_escnn() -> Any:
    """Import escnn, with its on-disk cache outside the package only where that is needed.

    escnn 1.0 builds its joblib caches while it is imported, at ``escnn.group.__cache_path__``
    (``<site-packages>/escnn/group/_cache``, fixed in its ``__init__``; a read-only install then
    cannot import escnn at all). If escnn is already imported, it is returned untouched.
    Otherwise geozoo keeps escnn's own location unless ``$GEOZOO_ESCNN_CACHE`` is set or that
    location is not writable; then it sets escnn's ``__cache_path__`` to :func:`escnn_cache_dir`
    for the duration of the import only (the caches escnn creates then live there; the
    attribute is restored afterwards). No other library is touched.

    Returns:
        the ``escnn`` module. Raises ``ImportError`` with install instructions if missing.
    """
    module = sys.modules.get("escnn")
    if module is not None:
        return module
    spec = importlib.util.find_spec("escnn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "geozoo's steerable layers need escnn: `pip install lie_learn pymanopt autograd "
            "joblib && pip install --no-deps escnn` (py3nj is optional: it needs a Fortran "
            "compiler and only speeds up SO(3) Clebsch-Gordan coefficients). Pretrained "
            "steerable zoo models load without escnn."
        )
    location = _cache_location(Path(next(iter(spec.submodule_search_locations))).resolve())
    setter = None
    if location is not None:
        location.mkdir(parents=True, exist_ok=True)
        setter = _CachePathSetter(str(location))
        sys.meta_path.insert(0, setter)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*py3nj.*")
            import escnn
            import escnn.group
    finally:
        if setter is not None:
            sys.meta_path.remove(setter)
            if setter.default is not None:
                escnn.group.__cache_path__ = setter.default
    return escnn


@contextlib.contextmanager
def escnn_scope() -> Iterator[Any]:
    """escnn's settings for geozoo's own basis computations, restored on exit.

    Inside, escnn's numerical null-space solver uses scipy's exact SVD instead of
    scikit-learn's randomized one (random, so bases would differ between runs, and rejected by
    scikit-learn >= 1.6 for the ``np.matrix`` input escnn gives it, which breaks D_N bases).
    Re-entrant; yields the ``escnn`` module. Every geozoo function that builds escnn groups,
    field types or layers runs inside it.
    """
    escnn = import_escnn()
    numerical = importlib.import_module("escnn.group._numerical")
    previous = numerical.randomized_svd
    numerical.randomized_svd = None
    try:
        yield escnn
    finally:
        numerical.randomized_svd = previous


def basis_backend() -> dict[str, str]:
    """How this install computes steerable bases: escnn version and Clebsch-Gordan backend.

    Without py3nj, escnn solves for Clebsch-Gordan coefficients numerically; bases of C_N, D_N
    and SO(2) on the plane do not need SO(3) coefficients, but numerically solved intertwiners
    can differ by signs between installs, which is why zoo checkpoints store exported weights.
    """
    escnn = import_escnn()
    try:
        import py3nj  # noqa: F401

        cg = "py3nj"
    except ImportError:
        cg = "numerical (no py3nj)"
    return {"escnn": getattr(escnn, "__version__", "unknown"), "clebsch_gordan": cg}


def steerable_gspace(group: str | MatrixGroup, max_frequency: int = 3) -> Any:
    """The escnn gspace of ``group`` acting on the plane: ``Cyclic(N)`` (``"cN"``),
    ``Dihedral(N)`` (``"dN"``) or ``SO(2)`` (``"so2"``), as values or names
    (:func:`geozoo.groups.get_group`).

    ``max_frequency`` bounds the irreps of SO(2) used by its fields and kernels.
    """
    value = get_group(group)
    with escnn_scope() as escnn:
        gspaces = escnn.gspaces
        if isinstance(value, Dihedral):
            return gspaces.flipRot2dOnR2(N=value.rotations)
        if isinstance(value, Cyclic):
            return gspaces.rot2dOnR2(N=value.rotations)
        if value == SO(2):
            return gspaces.rot2dOnR2(N=-1, maximum_frequency=max_frequency)
    raise ValueError(f"steerable layers need 'cN', 'dN' (N >= 1) or 'so2', got {group!r}")


def field_type(gspace: Any, fields: int, kind: str = "regular", max_frequency: int = 3) -> Any:
    """An escnn ``FieldType`` of ``fields`` copies of one representation.

    Args:
        kind: ``"trivial"`` (scalars, e.g. image channels), ``"regular"`` (finite groups) or
            ``"irreps"`` (the direct sum of the irreps of frequency 0..``max_frequency``;
            for SO(2)).
    """
    with escnn_scope() as escnn:
        rep = _representation(escnn, gspace, kind, max_frequency)
        return escnn.nn.FieldType(gspace, fields * [rep])


def _representation(escnn: Any, gspace: Any, kind: str, max_frequency: int) -> Any:
    if kind == "trivial":
        rep = gspace.trivial_repr
    elif kind == "regular":
        if gspace.fibergroup.order() < 1:
            raise ValueError("regular fields need a finite group; use kind='irreps' for 'so2'")
        rep = gspace.regular_repr
    elif kind == "irreps":
        group = gspace.fibergroup
        irreps = [group.irrep(k) for k in range(max_frequency + 1)]
        rep = escnn.group.directsum(irreps, name=f"irreps_0_{max_frequency}")
    else:
        raise ValueError(f"kind must be 'trivial', 'regular' or 'irreps', got {kind!r}")
    return rep


def fiber_size(gspace: Any, kind: str = "regular", max_frequency: int = 3) -> int:
    """Channels per field of ``kind`` (the group order for regular fields)."""
    return field_type(gspace, 1, kind, max_frequency).size


class SteerableConvBlock(nn.Module):
    """Steerable convolution, batch norm, nonlinearity and optional 2x2 max pooling.

    For regular fields (C_N, D_N): ``R2Conv -> InnerBatchNorm -> ReLU [-> PointwiseMaxPool]``;
    every part acts channel-wise within a field's fiber, so it commutes with the permutation
    action of the group. For irreps fields (SO(2)): ``R2Conv -> IIDBatchNorm2d ->
    NormNonLinearity(n_relu) [-> NormMaxPool]``, which only rescales each field by a function
    of its norm (Weiler & Cesa 2019, section 2.6).

    Args:
        in_type: escnn ``FieldType`` of the input.
        fields: number of output fields.
        kind: ``"regular"`` or ``"irreps"``.
        kernel_size: odd kernel size; padding keeps the spatial size.
        pool: append 2x2 max pooling.
        max_frequency: for ``"irreps"``.

    ``forward`` takes and returns escnn ``GeometricTensor``s; :meth:`export` returns the plain
    torch equivalent (regular fields only: escnn cannot export norm nonlinearities).
    """

    def __init__(
        self,
        in_type: Any,
        fields: int,
        kind: str = "regular",
        kernel_size: int = 3,
        pool: bool = False,
        max_frequency: int = 3,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the size, got {kernel_size}")
        with escnn_scope() as escnn:
            enn = escnn.nn
            out_type = field_type(in_type.gspace, fields, kind, max_frequency)
            conv = enn.R2Conv(in_type, out_type, kernel_size, padding=kernel_size // 2, bias=False)
            layers = [conv]
            if kind == "regular":
                layers += [enn.InnerBatchNorm(out_type), enn.ReLU(out_type, inplace=True)]
                if pool:
                    layers.append(enn.PointwiseMaxPool2D(out_type, 2))
            else:
                layers += [
                    enn.IIDBatchNorm2d(out_type),
                    enn.NormNonLinearity(out_type, "n_relu", bias=True),
                ]
                if pool:
                    layers.append(enn.NormMaxPool(out_type, 2))
            self.in_type, self.out_type, self.kind = in_type, out_type, kind
            self.layers = enn.SequentialModule(*layers)

    def forward(self, x: Any) -> Any:
        if x.type != self.in_type:
            raise ValueError(
                f"expected a GeometricTensor of type {self.in_type}, got one of type {x.type}"
            )
        return self.layers(x)

    def export(self) -> nn.Module:
        """The plain torch ``nn.Sequential`` computing the same function (call in eval mode)."""
        if self.training:
            raise RuntimeError("export() in eval mode: call block.eval() first")
        with escnn_scope():
            return self.layers.export()


class FiberPool(nn.Module):
    """Pooling over the fiber of regular fields: ``(N, F * |G|, H, W) -> (N, F * blocks, H, W)``
    by max (or mean) over each of a field's ``blocks`` equal runs of channels.

    With ``blocks=1`` the pooled features are invariant under the whole group, which permutes
    each fiber. For a dihedral group D_N, escnn orders the regular fiber as the N rotations and
    then the N reflected rotations; rotations permute channels within each run and reflections
    swap the runs, so ``blocks=2`` gives features invariant under the rotations C_N that a
    reflection swaps (the restriction D_N -> C_N of Weiler & Cesa, NeurIPS 2019, section 3.3).

    Plain torch, so it runs on exported networks without escnn.
    """

    def __init__(self, group_order: int, reduction: str = "max", blocks: int = 1) -> None:
        super().__init__()
        if reduction not in ("max", "mean"):
            raise ValueError(f"reduction must be 'max' or 'mean', got {reduction!r}")
        if blocks < 1 or group_order % blocks:
            raise ValueError(
                f"blocks must divide the group order {group_order}, got blocks={blocks}"
            )
        self.group_order, self.reduction, self.blocks = int(group_order), reduction, int(blocks)

    def forward(self, x: Tensor) -> Tensor:
        n, c, *spatial = x.shape
        if c % self.group_order:
            raise ValueError(
                f"expected channels divisible by the group order {self.group_order}, got {c}"
            )
        run = self.group_order // self.blocks
        fibers = x.reshape(n, c // run, run, *spatial)
        return fibers.amax(2) if self.reduction == "max" else fibers.mean(2)

    def extra_repr(self) -> str:
        return f"group_order={self.group_order}, reduction={self.reduction!r}, blocks={self.blocks}"
