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

Everything here imports escnn lazily through :func:`import_escnn`, which first points escnn's
on-disk cache (joblib) at a writable folder outside the package (``$GEOZOO_ESCNN_CACHE``, else
``~/.cache/geozoo/escnn``) and makes its numerical kernel-basis solver deterministic. Networks
built from these blocks are exported to plain torch modules for inference (``export()``), so
loading a pretrained zoo model needs neither escnn nor any basis computation.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from torch import Tensor, nn

__all__ = [
    "FiberPool",
    "SteerableConvBlock",
    "basis_backend",
    "escnn_cache_dir",
    "fiber_size",
    "field_type",
    "import_escnn",
    "steerable_gspace",
]


def escnn_cache_dir() -> Path:
    """Where escnn's joblib cache goes: ``$GEOZOO_ESCNN_CACHE`` or ``~/.cache/geozoo/escnn``."""
    env = os.environ.get("GEOZOO_ESCNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "geozoo" / "escnn"


def import_escnn() -> Any:
    """Import escnn with its cache outside the package and a deterministic basis solver.

    escnn 1.0 fixes its cache at ``<site-packages>/escnn/group/_cache`` when its modules are
    imported (a read-only install then fails). This wraps the import so every joblib ``Memory``
    created for a location inside the escnn package uses :func:`escnn_cache_dir` instead.
    It also replaces escnn's randomized SVD in the numerical null-space solver (random, and
    rejected by scikit-learn >= 1.6 for ``np.matrix`` input) with an exact SVD.

    Returns:
        the ``escnn`` module. Raises ``ImportError`` with install instructions if missing.
    """
    if "escnn" in sys.modules and sys.modules["escnn"] is not None:
        module = sys.modules["escnn"]
        _patch_numerical()
        return module
    try:
        import joblib
    except ImportError as error:  # pragma: no cover - joblib comes with escnn's dependencies
        raise ImportError("escnn needs joblib: `pip install joblib`") from error
    cache = escnn_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    spec = importlib.util.find_spec("escnn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "geozoo's steerable layers need escnn: `pip install lie_learn pymanopt autograd "
            "joblib && pip install --no-deps escnn` (py3nj is optional: it needs a Fortran "
            "compiler and only speeds up SO(3) Clebsch-Gordan coefficients). Pretrained "
            "steerable zoo models load without escnn."
        )
    package_dir = str(Path(next(iter(spec.submodule_search_locations))).resolve())
    original_init = joblib.Memory.__init__

    def redirected_init(self, location=None, *args, **kwargs):
        if location is not None and str(Path(str(location)).resolve()).startswith(package_dir):
            location = str(cache)
        original_init(self, location, *args, **kwargs)

    joblib.Memory.__init__ = redirected_init
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*py3nj.*")
            import escnn
            import escnn.group
    finally:
        joblib.Memory.__init__ = original_init
    escnn.group.__cache_path__ = str(cache)
    _patch_numerical()
    return escnn


def _patch_numerical() -> None:
    numerical = sys.modules.get("escnn.group._numerical")
    if numerical is not None and getattr(numerical, "randomized_svd", None) is not None:
        numerical.randomized_svd = None  # escnn then uses scipy's exact, deterministic SVD


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


def steerable_gspace(group: str, max_frequency: int = 3) -> Any:
    """The escnn gspace of ``group`` acting on the plane: ``"cN"``, ``"dN"`` or ``"so2"``.

    ``max_frequency`` bounds the irreps of SO(2) used by its fields and kernels.
    """
    escnn = import_escnn()
    gspaces = escnn.gspaces
    name = group.lower()
    if name == "so2":
        return gspaces.rot2dOnR2(N=-1, maximum_frequency=max_frequency)
    if len(name) > 1 and name[0] in "cd" and name[1:].isdigit() and int(name[1:]) >= 1:
        n = int(name[1:])
        return gspaces.rot2dOnR2(N=n) if name[0] == "c" else gspaces.flipRot2dOnR2(N=n)
    raise ValueError(f"group must be 'cN', 'dN' (N >= 1) or 'so2', got {group!r}")


def field_type(gspace: Any, fields: int, kind: str = "regular", max_frequency: int = 3) -> Any:
    """An escnn ``FieldType`` of ``fields`` copies of one representation.

    Args:
        kind: ``"trivial"`` (scalars, e.g. image channels), ``"regular"`` (finite groups) or
            ``"irreps"`` (the direct sum of the irreps of frequency 0..``max_frequency``;
            for SO(2)).
    """
    escnn = import_escnn()
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
    return escnn.nn.FieldType(gspace, fields * [rep])


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
        escnn = import_escnn()
        enn = escnn.nn
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the size, got {kernel_size}")
        out_type = field_type(in_type.gspace, fields, kind, max_frequency)
        layers = [enn.R2Conv(in_type, out_type, kernel_size, padding=kernel_size // 2, bias=False)]
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
        return self.layers.export()


class FiberPool(nn.Module):
    """Invariant pooling over the fiber of regular fields: ``(N, F * |G|, H, W) -> (N, F, H, W)``
    by max (or mean) over each field's ``|G|`` channels, which the group permutes.

    Plain torch, so it runs on exported networks without escnn.
    """

    def __init__(self, group_order: int, reduction: str = "max") -> None:
        super().__init__()
        if reduction not in ("max", "mean"):
            raise ValueError(f"reduction must be 'max' or 'mean', got {reduction!r}")
        self.group_order, self.reduction = int(group_order), reduction

    def forward(self, x: Tensor) -> Tensor:
        n, c, *spatial = x.shape
        if c % self.group_order:
            raise ValueError(
                f"expected channels divisible by the group order {self.group_order}, got {c}"
            )
        fibers = x.reshape(n, c // self.group_order, self.group_order, *spatial)
        return fibers.amax(2) if self.reduction == "max" else fibers.mean(2)

    def extra_repr(self) -> str:
        return f"group_order={self.group_order}, reduction={self.reduction!r}"
