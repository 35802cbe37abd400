"""Matrix groups and their linear representations on tensor spaces.

Used by the soft-equivariance regularizers of Kim, Lee, Yang & Lee, "Regularizing Towards Soft
Equivariance Under Mixed Symmetries" (ICML 2023, arXiv 2306.00356), which need, for several
candidate groups acting on the same base space ``R^d``, the representations of the inputs,
hidden features and outputs of a network, in the style of EMLP (Finzi, Welling & Wilson 2021).

A :class:`MatrixGroup` is a value: a base dimension ``d``, a basis of its Lie algebra (``d x d``
generators ``A``, the group contains ``exp(t A)``), a list of discrete generators (``d x d``
matrices ``h`` that, together with the identity component, generate the group) and a sampler.

A :class:`Rep` is an ordered direct sum of blocks ``(rank, multiplicity)``: ``multiplicity``
copies of the rank-``k`` tensor space ``V^{(x) k}`` (``V = R^d``; rank 0 is the scalar), laid out
copy after copy, each copy flattened row-major.  The group acts by

* ``rho(g) = g (x) ... (x) g`` (``k`` Kronecker factors) on a rank-``k`` copy, ``1`` on scalars;
* ``drho(A) = sum_i I (x) .. (x) A (x) .. (x) I`` (Lie algebra action, the derivative of rho);

and block-diagonally on the sum.  Tensor products of sums distribute over the blocks
(``rank a (x) rank b = rank a+b``), so scalars, vectors, rank-2 tensors and any direct sums and
products of them are covered.

Pure torch; nothing here knows about layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "GROUP_NAMES",
    "MatrixGroup",
    "Rep",
    "Scalar",
    "Vector",
    "get_group",
    "o2",
    "o3",
    "permutations",
    "rotation_scaling",
    "scaling",
    "so2",
    "so3",
    "tensor",
    "trivial",
]

_AXES = {"x": 0, "y": 1, "z": 2}


# ----------------------------------------------------------------------------------------------
# Groups
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MatrixGroup:
    """A matrix group acting on ``R^dim``, described by its generators.

    Args:
        name: a short identifier (``"o3"``, ``"o2_z"``, ...); used in logs and cache keys.
        dim: dimension ``d`` of the base space.
        lie_generators: ``(k, d, d)`` float64 basis of the Lie algebra (``k`` may be 0).
        discrete_generators: ``(m, d, d)`` float64 matrices generating the components.
        sampler: ``sampler(n, generator, dtype) -> (n, d, d)`` random group elements.
    """

    name: str
    dim: int
    lie_generators: Tensor
    discrete_generators: Tensor
    sampler: object = field(repr=False)

    def __post_init__(self) -> None:
        for label, gens in (("lie", self.lie_generators), ("discrete", self.discrete_generators)):
            if gens.ndim != 3 or gens.shape[1:] != (self.dim, self.dim):
                raise ValueError(
                    f"{self.name}: {label} generators must have shape (k, {self.dim}, {self.dim}),"
                    f" got {tuple(gens.shape)}"
                )

    def sample(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """``n`` random elements as ``(n, d, d)`` matrices (Haar-like for compact groups)."""
        return self.sampler(n, generator, dtype)  # type: ignore[operator]

    @property
    def key(self) -> tuple:
        """Hashable identity used by the projector cache (name and generators' bytes)."""
        return (
            self.name,
            self.dim,
            self.lie_generators.numpy().tobytes(),
            self.discrete_generators.numpy().tobytes(),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MatrixGroup) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"MatrixGroup({self.name!r}, dim={self.dim})"


def _so_generators(d: int) -> Tensor:
    gens = []
    for i in range(d):
        for j in range(i + 1, d):
            a = torch.zeros(d, d, dtype=torch.float64)
            a[i, j], a[j, i] = -1.0, 1.0
            gens.append(a)
    return torch.stack(gens) if gens else torch.zeros(0, d, d, dtype=torch.float64)


def _none(d: int) -> Tensor:
    return torch.zeros(0, d, d, dtype=torch.float64)


def _haar_orthogonal(n: int, d: int, generator, dtype, special: bool) -> Tensor:
    z = torch.randn(n, d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(z)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    if special:
        flip = torch.linalg.det(q) < 0
        q[flip, :, 0] = -q[flip, :, 0]
    return q.to(dtype)


def o3(dim: int = 3) -> MatrixGroup:
    """The orthogonal group O(d) (default O(3)): so(d) plus one reflection."""
    reflection = torch.eye(dim, dtype=torch.float64)
    reflection[0, 0] = -1.0
    return MatrixGroup(
        f"o{dim}",
        dim,
        _so_generators(dim),
        reflection[None],
        lambda n, g, dt: _haar_orthogonal(n, dim, g, dt, special=False),
    )


def so3(dim: int = 3) -> MatrixGroup:
    """The rotation group SO(d) (default SO(3))."""
    return MatrixGroup(
        f"so{dim}",
        dim,
        _so_generators(dim),
        _none(dim),
        lambda n, g, dt: _haar_orthogonal(n, dim, g, dt, special=True),
    )


def _planar(axis: str, reflections: bool) -> MatrixGroup:
    if axis not in _AXES:
        raise ValueError(f"axis must be one of {sorted(_AXES)}, got {axis!r}")
    fixed = _AXES[axis]
    i, j = (k for k in range(3) if k != fixed)
    lie = torch.zeros(1, 3, 3, dtype=torch.float64)
    lie[0, i, j], lie[0, j, i] = -1.0, 1.0
    disc = _none(3)
    if reflections:
        disc = torch.eye(3, dtype=torch.float64)[None].clone()
        disc[0, j, j] = -1.0

    def sampler(n: int, generator, dtype) -> Tensor:
        theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        out = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
        c, s = torch.cos(theta), torch.sin(theta)
        out[:, i, i], out[:, i, j], out[:, j, i], out[:, j, j] = c, -s, s, c
        if reflections:
            flip = torch.rand(n, generator=generator) < 0.5
            out[flip, :, j] = -out[flip, :, j]
        return out.to(dtype)

    prefix = "o2" if reflections else "so2"
    return MatrixGroup(f"{prefix}_{axis}", 3, lie, disc, sampler)


def o2(axis: str = "z") -> MatrixGroup:
    """O(2) acting on the plane orthogonal to ``axis`` of R^3 (rotations about it + a mirror)."""
    return _planar(axis, reflections=True)


def so2(axis: str = "z") -> MatrixGroup:
    """SO(2): rotations of R^3 about ``axis``."""
    return _planar(axis, reflections=False)


def _log_uniform_scales(n: int, generator, max_log_scale: float) -> Tensor:
    return torch.exp(
        (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1) * max_log_scale
    )


def scaling(dim: int = 3, max_log_scale: float = math.log(2.0)) -> MatrixGroup:
    """Positive scalings ``s I`` of R^d; samples ``log s ~ U(-max_log_scale, max_log_scale)``."""

    def sampler(n: int, generator, dtype) -> Tensor:
        s = _log_uniform_scales(n, generator, max_log_scale)
        return (s[:, None, None] * torch.eye(dim, dtype=torch.float64)).to(dtype)

    return MatrixGroup(
        "scaling", dim, torch.eye(dim, dtype=torch.float64)[None], _none(dim), sampler
    )


def rotation_scaling(dim: int = 3, max_log_scale: float = math.log(2.0)) -> MatrixGroup:
    """SO(d) x R_{>0}: rotations composed with positive scalings."""

    def sampler(n: int, generator, dtype) -> Tensor:
        q = _haar_orthogonal(n, dim, generator, torch.float64, special=True)
        s = _log_uniform_scales(n, generator, max_log_scale)
        return (s[:, None, None] * q).to(dtype)

    lie = torch.cat([_so_generators(dim), torch.eye(dim, dtype=torch.float64)[None]])
    return MatrixGroup(f"so{dim}_scaling", dim, lie, _none(dim), sampler)


def permutations(n_points: int) -> MatrixGroup:
    """The symmetric group S_n permuting the coordinates of R^n (a transposition and a cycle)."""
    if n_points < 2:
        raise ValueError(f"permutations need n_points >= 2, got {n_points}")
    eye = torch.eye(n_points, dtype=torch.float64)
    swap = eye[[1, 0, *range(2, n_points)]]
    cycle = eye[[*range(1, n_points), 0]]

    def sampler(n: int, generator, dtype) -> Tensor:
        perms = torch.stack([torch.randperm(n_points, generator=generator) for _ in range(n)])
        return eye[perms].to(dtype)

    return MatrixGroup(
        f"s{n_points}", n_points, _none(n_points), torch.stack([swap, cycle]), sampler
    )


def trivial(dim: int = 3) -> MatrixGroup:
    """The trivial group {I}: every linear map is equivariant."""
    return MatrixGroup(
        "trivial",
        dim,
        _none(dim),
        _none(dim),
        lambda n, g, dt: torch.eye(dim, dtype=dt).repeat(n, 1, 1),
    )


GROUP_NAMES = (
    "o3",
    "so3",
    "o2_x",
    "o2_y",
    "o2_z",
    "so2_x",
    "so2_y",
    "so2_z",
    "scaling",
    "so3_scaling",
    "trivial",
    "s<n>",
)


def get_group(spec: str | MatrixGroup) -> MatrixGroup:
    """A group from its name (one of :data:`GROUP_NAMES`, e.g. ``"o2_z"``, ``"s5"``) or itself."""
    if isinstance(spec, MatrixGroup):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"expected a group name or MatrixGroup, got {type(spec).__name__}")
    name = spec.lower()
    simple = {
        "o3": o3,
        "so3": so3,
        "scaling": scaling,
        "so3_scaling": rotation_scaling,
        "trivial": trivial,
    }
    if name in simple:
        return simple[name]()
    if name[:3] in ("o2_", "so2") and name.split("_")[-1] in _AXES and "_" in name:
        head, axis = name.split("_")
        if head == "o2":
            return o2(axis)
        if head == "so2":
            return so2(axis)
    if name.startswith("s") and name[1:].isdigit():
        return permutations(int(name[1:]))
    raise ValueError(f"unknown group {spec!r}: expected one of {GROUP_NAMES}")


# ----------------------------------------------------------------------------------------------
# Representations
# ----------------------------------------------------------------------------------------------


def _kron_power(g: Tensor, rank: int) -> Tensor:
    """``g (x) ... (x) g`` (``rank`` factors) for a batch ``(n, d, d)``."""
    n = g.shape[0]
    out = torch.ones(n, 1, 1, dtype=g.dtype, device=g.device)
    for _ in range(rank):
        out = (out[:, :, None, :, None] * g[:, None, :, None, :]).reshape(
            n, out.shape[1] * g.shape[1], out.shape[2] * g.shape[2]
        )
    return out


def _lie_power(a: Tensor, rank: int) -> Tensor:
    """``sum_i I (x) .. A (at i) .. (x) I`` for a batch ``(n, d, d)`` of algebra elements."""
    n, d = a.shape[0], a.shape[1]
    eye = torch.eye(d, dtype=a.dtype, device=a.device).expand(n, d, d)
    out = torch.zeros(n, d**rank, d**rank, dtype=a.dtype, device=a.device)
    for i in range(rank):
        term = torch.ones(n, 1, 1, dtype=a.dtype, device=a.device)
        for k in range(rank):
            f = a if k == i else eye
            term = (term[:, :, None, :, None] * f[:, None, :, None, :]).reshape(
                n, term.shape[1] * d, term.shape[2] * d
            )
        out = out + term
    return out


@dataclass(frozen=True)
class Rep:
    """A direct sum of tensor-power blocks ``((rank, multiplicity), ...)`` over ``R^d``.

    ``Scalar``, ``Vector`` and ``tensor(k)`` build single copies; ``+`` is the direct sum,
    ``*`` with an int repeats, ``@`` (or :meth:`tensor_product`) is the tensor product.  The base
    dimension ``d`` is given when the representation is evaluated on a group (it is the group's
    ``dim``), so one ``Rep`` works for every candidate group acting on the same space.

    Example: the modified-inertia task maps ``5 * Scalar + 5 * Vector`` (masses and positions)
    to ``tensor(2)`` (a 3x3 matrix, flattened row-major).
    """

    blocks: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        for rank, mult in self.blocks:
            if not (isinstance(rank, int) and isinstance(mult, int)) or rank < 0 or mult < 1:
                raise ValueError(
                    f"blocks must be (rank >= 0, multiplicity >= 1) integer pairs, got "
                    f"{self.blocks}"
                )

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_multiplicities(cls, multiplicities: Sequence[int]) -> Rep:
        """``multiplicities[k]`` copies of rank ``k`` for each k (zeros skipped)."""
        return cls(tuple((k, int(m)) for k, m in enumerate(multiplicities) if m > 0))

    def __add__(self, other: Rep) -> Rep:
        if not isinstance(other, Rep):
            return NotImplemented
        return Rep(_merge(self.blocks + other.blocks))

    def __mul__(self, times: int) -> Rep:
        if not isinstance(times, int) or times < 1:
            raise ValueError(f"a representation can be repeated a positive int times, got {times}")
        return Rep(tuple((r, m * times) for r, m in self.blocks))

    __rmul__ = __mul__

    def tensor_product(self, other: Rep) -> Rep:
        """Blocks of ``self (x) other`` in the order :func:`tensor_features` produces them."""
        return Rep(tuple((ra + rb, ma * mb) for ra, ma in self.blocks for rb, mb in other.blocks))

    __matmul__ = tensor_product

    # -- sizes ----------------------------------------------------------------------------
    def size(self, d: int) -> int:
        """Dimension of the representation space over ``R^d``."""
        return sum(m * d**r for r, m in self.blocks)

    def block_slices(self, d: int) -> list[tuple[int, int, slice]]:
        """``(rank, multiplicity, slice)`` of each block in the flat layout."""
        out, start = [], 0
        for r, m in self.blocks:
            out.append((r, m, slice(start, start + m * d**r)))
            start += m * d**r
        return out

    @property
    def num_nonscalar_copies(self) -> int:
        return sum(m for r, m in self.blocks if r > 0)

    @property
    def max_rank(self) -> int:
        return max((r for r, _ in self.blocks), default=0)

    # -- actions ----------------------------------------------------------------------------
    def rho(self, g: Tensor) -> Tensor:
        """Dense ``(n, D, D)`` matrices of group elements ``g`` (``(n, d, d)`` or ``(d, d)``)."""
        return self._block_diag(g, _kron_power)

    def drho(self, a: Tensor) -> Tensor:
        """Dense ``(n, D, D)`` Lie-algebra action of algebra elements ``a``."""
        return self._block_diag(a, _lie_power)

    def _block_diag(self, g: Tensor, fn) -> Tensor:
        single = g.ndim == 2
        g = g[None] if single else g
        d = g.shape[-1]
        mats = []
        for r, m in self.blocks:
            block = fn(g, r)
            mats.extend([block] * m)
        total = self.size(d)
        out = torch.zeros(g.shape[0], total, total, dtype=g.dtype, device=g.device)
        start = 0
        for block in mats:
            k = block.shape[-1]
            out[:, start : start + k, start : start + k] = block
            start += k
        return out[0] if single else out

    def act(self, g: Tensor, x: Tensor) -> Tensor:
        """Apply ``rho(g)`` to features ``x`` of shape ``(n, D)`` (one ``g`` per row, or one
        ``(d, d)`` for all rows) without forming the dense matrix."""
        d = g.shape[-1]
        if x.shape[-1] != self.size(d):
            raise ValueError(
                f"features of size {self.size(d)} expected for {self} over R^{d}, got "
                f"{tuple(x.shape)}"
            )
        g = g.to(x.dtype)
        if g.ndim == 2:
            g = g.expand(x.shape[0], d, d)
        pieces = []
        for r, m, sl in self.block_slices(d):
            t = x[:, sl].reshape(x.shape[0], m, *([d] * r))
            for axis in range(r):
                # multiply tensor axis ``axis`` by g: t[..., i, ...] <- sum_j g[i, j] t[..., j, ...]
                moved = torch.movedim(t, 2 + axis, -1)
                shape = moved.shape
                moved = torch.bmm(moved.reshape(x.shape[0], -1, d), g.transpose(1, 2))
                t = torch.movedim(moved.reshape(shape), -1, 2 + axis)
            pieces.append(t.reshape(x.shape[0], -1))
        return torch.cat(pieces, dim=1)

    def __repr__(self) -> str:
        names = {0: "Scalar", 1: "Vector"}
        parts = [
            f"{m}*{names.get(r, f'T{r}')}" if m > 1 else names.get(r, f"T{r}")
            for r, m in self.blocks
        ]
        return " + ".join(parts) if parts else "Rep()"


def _merge(blocks: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Merge neighbouring blocks of the same rank (the layout is unchanged by it)."""
    out: list[tuple[int, int]] = []
    for r, m in blocks:
        if out and out[-1][0] == r:
            out[-1] = (r, out[-1][1] + m)
        else:
            out.append((r, m))
    return tuple(out)


def tensor(rank: int) -> Rep:
    """One copy of the rank-``rank`` tensor space ``V^{(x) rank}``."""
    return Rep(((int(rank), 1),))


Scalar = tensor(0)
Vector = tensor(1)


def tensor_features(x: Tensor, rep_a: Rep, y: Tensor, rep_b: Rep, d: int) -> Tensor:
    """Features of ``x (x) y`` laid out as ``rep_a.tensor_product(rep_b)``.

    For every block pair the copies are combined copy-by-copy (outer product of copies ``i`` of
    ``x`` and ``j`` of ``y``, flattened row-major), which transforms by the product
    representation: ``(rho_a(g) x) (x) (rho_b(g) y) = (rho_a (x) rho_b)(g) (x (x) y)``.
    """
    n = x.shape[0]
    pieces = []
    for _, ma, sa in rep_a.block_slices(d):
        xa = x[:, sa].reshape(n, ma, -1)
        for _, mb, sb in rep_b.block_slices(d):
            yb = y[:, sb].reshape(n, mb, -1)
            pieces.append((xa[:, :, None, :, None] * yb[:, None, :, None, :]).reshape(n, -1))
    return torch.cat(pieces, dim=1)
