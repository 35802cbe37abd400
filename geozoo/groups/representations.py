"""Linear representations of matrix groups on tensor spaces.

Used by the soft-equivariance regularizers of Kim, Lee, Yang & Lee, "Regularizing Towards Soft
Equivariance Under Mixed Symmetries" (ICML 2023, arXiv 2306.00356), which need, for several
candidate groups acting on the same base space ``R^d``, the representations of the inputs,
hidden features and outputs of a network, in the style of EMLP (Finzi, Welling & Wilson 2021).

The groups are the values of :mod:`geozoo.groups` (:func:`geozoo.groups.get_group`): each acts
on ``R^d`` (``d = group.n``) and gives a basis of its Lie algebra (``d x d`` generators ``A``,
the group contains ``exp(t A)``), a list of discrete generators (``d x d`` matrices ``h`` that,
together with the identity component, generate the group) and a sampler.

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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from geozoo.groups.base import MatrixGroup
from geozoo.groups.names import GROUP_NAMES, get_group

# the groups themselves live in geozoo.groups (one vocabulary); re-exported for old imports
__all__ = [
    "GROUP_NAMES",
    "MatrixGroup",
    "Rep",
    "Scalar",
    "Vector",
    "get_group",
    "tensor",
    "tensor_features",
    "tensor_product_order",
]


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
    Computed as one outer product of the whole feature vectors, reordered by one gather.
    """
    n = x.shape[0]
    outer = (x[:, :, None] * y[:, None, :]).reshape(n, -1)
    return outer.index_select(1, tensor_product_order(rep_a, rep_b, d).to(x.device))


@lru_cache(maxsize=256)
def tensor_product_order(rep_a: Rep, rep_b: Rep, d: int) -> Tensor:
    """Where each feature of :func:`tensor_features` sits in the row-major outer product
    ``(x[:, :, None] * y[:, None, :]).reshape(n, -1)`` (a permutation of its columns)."""
    width_b = rep_b.size(d)
    index = []
    for _, ma, sa in rep_a.block_slices(d):
        da = (sa.stop - sa.start) // ma
        for _, mb, sb in rep_b.block_slices(d):
            db = (sb.stop - sb.start) // mb
            rows = torch.arange(sa.start, sa.stop).reshape(ma, 1, da, 1)
            cols = torch.arange(sb.start, sb.stop).reshape(1, mb, 1, db)
            index.append((rows * width_b + cols).reshape(-1))
    return torch.cat(index)
