"""Orthogonal projectors onto equivariant linear maps between two representations.

For a group ``G`` and representations ``rho_in`` and ``rho_out`` (:class:`~geozoo.groups.
representations.Rep`), a matrix ``W`` is equivariant when ``rho_out(g) W = W rho_in(g)`` for all
``g`` in ``G``.  As in EMLP (Finzi, Welling & Wilson, ICML 2021) it suffices to impose this on the
generators (for the row-major ``vec``):

* Lie-algebra generators ``A``:  ``(drho_out(A) (x) I - I (x) drho_in(A)^T) vec(W) = 0``;
* discrete generators ``h``:    ``(rho_out(h) (x) I - I (x) rho_in(h)^T) vec(W) = 0``.

The null space of the stacked constraints, from an SVD in float64, has an orthonormal basis
``Q``; ``P = Q Q^T`` is the orthogonal projector used by the projection-form regularizer of Kim
et al. (ICML 2023, arXiv 2306.00356, Sec. 4: ``R_G(W) = 1/2 ||W - P_G W||^2``), by the hard
EMLP-like layers (``W = P_G V``) and by Residual Pathway Priors (``W = P_G V + U``).

Because the representations are direct sums of tensor-power blocks, equivariant maps are block
matrices whose ``(i, j)`` block only depends on the two block ranks and is applied copy by copy;
so the null space is only ever computed for single copies (at most ``d^{r_out + r_in}`` unknowns)
and cached per ``(group, rank_out, rank_in)``.  Projectors for whole representation pairs are
cached too (:func:`equivariant_projector`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache, lru_cache

import torch
from torch import Tensor

from geozoo.groups.base import MatrixGroup
from geozoo.groups.representations import Rep, Scalar, tensor

__all__ = [
    "EquivariantProjector",
    "MultiGroupResidual",
    "SparseLinearMap",
    "block_projector",
    "equivariant_projector",
    "multi_group_residual",
    "null_space",
    "sparse_block_diagonal",
    "sparse_csr",
    "sparse_dtype",
    "sparse_projector",
]


def null_space(constraints: Tensor, rtol: float = 1e-9) -> Tensor:
    """Orthonormal basis ``(n, r)`` of ``{v : C v = 0}`` for ``C`` of shape ``(k, n)``."""
    n = constraints.shape[-1]
    if constraints.shape[0] == 0:
        return torch.eye(n, dtype=constraints.dtype)
    _, s, vh = torch.linalg.svd(constraints, full_matrices=True)
    scale = max(float(s.max()) if s.numel() else 0.0, 1.0)
    rank = int((s > rtol * scale * max(constraints.shape)).sum())
    return vh[rank:].T.contiguous()


@cache
def block_projector(group: MatrixGroup, rank_out: int, rank_in: int) -> Tensor:
    """Float64 orthogonal projector onto equivariant maps ``V^{(x) rank_in} -> V^{(x) rank_out}``.

    Returns an ``(n, n)`` symmetric idempotent matrix with ``n = d^(rank_out + rank_in)``, acting
    on row-major flattened ``(d^rank_out, d^rank_in)`` matrices.
    """
    rep_out, rep_in = tensor(rank_out), tensor(rank_in)
    d = group.n
    n_out, n_in = d**rank_out, d**rank_in
    eye_out = torch.eye(n_out, dtype=torch.float64)
    eye_in = torch.eye(n_in, dtype=torch.float64)
    rows = []
    if group.lie_generators.shape[0]:
        d_out = rep_out.drho(group.lie_generators)
        d_in = rep_in.drho(group.lie_generators)
        for a_out, a_in in zip(d_out, d_in):
            rows.append(torch.kron(a_out, eye_in) - torch.kron(eye_out, a_in.T.contiguous()))
    if group.discrete_generators.shape[0]:
        r_out = rep_out.rho(group.discrete_generators)
        r_in = rep_in.rho(group.discrete_generators)
        for h_out, h_in in zip(r_out, r_in):
            rows.append(torch.kron(h_out, eye_in) - torch.kron(eye_out, h_in.T.contiguous()))
    constraints = torch.cat(rows) if rows else torch.zeros(0, n_out * n_in, dtype=torch.float64)
    basis = null_space(constraints)
    projector = basis @ basis.T
    return 0.5 * (projector + projector.T)  # exactly symmetric


class SparseLinearMap(torch.autograd.Function):
    """``y = A x`` for a constant sparse ``A`` with a precomputed ``A^T`` for the backward pass
    (autograd would otherwise transpose the sparse matrix at every step)."""

    @staticmethod
    def forward(ctx, matrix: Tensor, transpose: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.transpose = transpose
        return matrix @ x

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, None, ctx.transpose @ grad


def _rank_layout(rep: Rep, d: int) -> tuple[list[tuple[int, int]], Tensor]:
    """Ranks present (sorted) with their total multiplicities, and the permutation that gathers
    the coordinates of all copies of each rank together (rank by rank, copies in order)."""
    per_rank: dict[int, list[int]] = {}
    mult: dict[int, int] = {}
    for r, m, sl in rep.block_slices(d):
        per_rank.setdefault(r, []).extend(range(sl.start, sl.stop))
        mult[r] = mult.get(r, 0) + m
    ranks = sorted(per_rank)
    order = torch.tensor([i for r in ranks for i in per_rank[r]], dtype=torch.long)
    return [(r, mult[r]) for r in ranks], order


class EquivariantProjector:
    """The orthogonal projector ``P_G`` onto ``G``-equivariant maps ``rep_in -> rep_out``.

    Call it on a weight ``(..., D_out, D_in)`` to get the nearest equivariant weight (in
    Frobenius norm); :meth:`project_bias` does the same for a bias (a map from a scalar).
    Internally the coordinates are regrouped by rank so that one small projector per pair of
    ranks is applied to all copies at once.

    Args:
        group: the symmetry group.
        rep_out: representation of the outputs.
        rep_in: representation of the inputs.
    """

    def __init__(self, group: MatrixGroup, rep_out: Rep, rep_in: Rep) -> None:
        self.group, self.rep_out, self.rep_in = group, rep_out, rep_in
        d = group.n
        self.shape = (rep_out.size(d), rep_in.size(d))
        self._out_ranks, self._out_order = _rank_layout(rep_out, d)
        self._in_ranks, self._in_order = _rank_layout(rep_in, d)
        self._out_inverse = torch.argsort(self._out_order)
        self._in_inverse = torch.argsort(self._in_order)
        self._cast: dict[tuple[torch.dtype, torch.device], dict] = {}

    @property
    def basis_size(self) -> int:
        """Dimension of the space of equivariant maps (the projector's rank)."""
        total = 0
        for r_o, m_o in self._out_ranks:
            for r_i, m_i in self._in_ranks:
                p = block_projector(self.group, r_o, r_i)
                total += m_o * m_i * round(float(torch.trace(p)))
        return total

    def _tensors(self, dtype: torch.dtype, device: torch.device) -> dict:
        key = (dtype, device)
        if key not in self._cast:
            ranks = {(r_o, r_i) for r_o, _ in self._out_ranks for r_i, _ in self._in_ranks}
            self._cast[key] = {
                "blocks": {
                    rk: block_projector(self.group, *rk).to(dtype=dtype, device=device)
                    for rk in ranks
                },
                "out_order": self._out_order.to(device),
                "in_order": self._in_order.to(device),
                "out_inverse": self._out_inverse.to(device),
                "in_inverse": self._in_inverse.to(device),
            }
        return self._cast[key]

    def _check(self, weight: Tensor) -> None:
        if weight.shape[-2:] != self.shape:
            raise ValueError(
                f"expected a weight of shape (..., {self.shape[0]}, {self.shape[1]}) for "
                f"{self.rep_in} -> {self.rep_out} under {self.group.name}, got "
                f"{tuple(weight.shape)}"
            )

    def sorted_blocks(self, weight: Tensor):
        """Yield ``(rank_out, rank_in, w)`` with ``w`` of shape ``(..., copies, n)``: the copies
        of each block of ``weight`` flattened row-major (``n = d^(rank_out + rank_in)``)."""
        self._check(weight)
        t = self._tensors(weight.dtype, weight.device)
        lead = weight.shape[:-2]
        d = self.group.n
        w_sorted = weight[..., t["out_order"], :][..., t["in_order"]]
        row = 0
        for r_o, m_o in self._out_ranks:
            d_o = d**r_o
            col = 0
            for r_i, m_i in self._in_ranks:
                d_i = d**r_i
                w = w_sorted[..., row : row + m_o * d_o, col : col + m_i * d_i]
                w = w.reshape(*lead, m_o, d_o, m_i, d_i).transpose(-3, -2)
                yield r_o, r_i, w.reshape(*lead, m_o * m_i, d_o * d_i)
                col += m_i * d_i
            row += m_o * d_o

    def sparse(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The projector as a sparse CSR matrix on row-major ``vec(W)`` (cached per dtype and
        device)."""
        t = self._tensors(dtype, device)
        if "sparse" not in t:
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                matrix = sparse_projector(self.group, self.rep_out, self.rep_in)
                t["sparse"] = sparse_csr(matrix, dtype, device)
        return t["sparse"]

    def __call__(self, weight: Tensor) -> Tensor:
        if weight.ndim == 2:  # one sparse product (the common case inside layers)
            self._check(weight)
            dtype = sparse_dtype(weight.dtype)
            matrix = self.sparse(dtype, weight.device)  # symmetric: its own transpose
            flat = SparseLinearMap.apply(matrix, matrix, weight.reshape(-1, 1).to(dtype))
            return flat.reshape(self.shape).to(weight.dtype)
        t = self._tensors(weight.dtype, weight.device)
        lead = weight.shape[:-2]
        d = self.group.n
        pieces = {}
        for r_o, r_i, w in self.sorted_blocks(weight):
            pieces[(r_o, r_i)] = w @ t["blocks"][(r_o, r_i)]
        rows = []
        for r_o, m_o in self._out_ranks:
            cols = []
            for r_i, m_i in self._in_ranks:
                w = pieces[(r_o, r_i)].reshape(*lead, m_o, m_i, d**r_o, d**r_i).transpose(-3, -2)
                cols.append(w.reshape(*lead, m_o * d**r_o, m_i * d**r_i))
            rows.append(torch.cat(cols, dim=-1))
        out = torch.cat(rows, dim=-2)
        return out[..., t["out_inverse"], :][..., t["in_inverse"]]

    def project_bias(self, bias: Tensor) -> Tensor:
        """Project a bias ``(..., D_out)`` onto the ``G``-invariant vectors of ``rep_out``."""
        bias_projector = equivariant_projector(self.group, self.rep_out, Scalar)
        return bias_projector(bias.unsqueeze(-1)).squeeze(-1)

    def matrix(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The dense ``(D_out D_in, D_out D_in)`` projector on row-major ``vec(W)`` (small reps
        only: it applies the projector to every basis matrix)."""
        n = self.shape[0] * self.shape[1]
        basis = torch.eye(n, dtype=dtype).reshape(n, *self.shape)
        return self(basis).reshape(n, n).T

    def __repr__(self) -> str:
        return f"EquivariantProjector({self.group.name}: {self.rep_in} -> {self.rep_out})"


class MultiGroupResidual:
    """Squared distances ``(||W - P_g W||^2)_g`` to several groups' equivariant maps at once.

    The projection-form regularizer of Kim et al. (2023) needs this for every layer and every
    candidate group at every step; stacking the groups' block projectors makes it one batched
    matrix product per pair of ranks.  All groups must act on the same ``R^d``.
    """

    def __init__(self, groups: tuple[MatrixGroup, ...], rep_out: Rep, rep_in: Rep) -> None:
        dims = {g.n for g in groups}
        if len(dims) != 1:
            raise ValueError(f"all groups must act on the same R^d, got dims {sorted(dims)}")
        self.groups = groups
        self.layout = EquivariantProjector(groups[0], rep_out, rep_in)
        self._stacks: dict[tuple[torch.dtype, torch.device], dict] = {}

    def _stack(self, dtype: torch.dtype, device: torch.device) -> dict:
        key = (dtype, device)
        if key not in self._stacks:
            ranks = {
                (r_o, r_i) for r_o, _ in self.layout._out_ranks for r_i, _ in self.layout._in_ranks
            }
            self._stacks[key] = {
                rk: torch.stack([block_projector(g, *rk) for g in self.groups]).to(
                    device=device, dtype=dtype
                )
                for rk in ranks
            }
        return self._stacks[key]

    def __call__(self, weight: Tensor) -> Tensor:
        """``(len(groups),)`` vector of ``||W - P_g W||_F^2``."""
        stack = self._stack(weight.dtype, weight.device)
        total = weight.new_zeros(len(self.groups))
        for r_o, r_i, w in self.layout.sorted_blocks(weight):
            residual = w.unsqueeze(-3) - w.unsqueeze(-3) @ stack[(r_o, r_i)]
            total = total + residual.square().sum(dim=(-2, -1))
        return total


@lru_cache(maxsize=512)
def multi_group_residual(
    groups: tuple[MatrixGroup, ...], rep_out: Rep, rep_in: Rep
) -> MultiGroupResidual:
    """Cached :class:`MultiGroupResidual` for ``(groups, rep_out, rep_in)``."""
    return MultiGroupResidual(groups, rep_out, rep_in)


@lru_cache(maxsize=512)
def equivariant_projector(group: MatrixGroup, rep_out: Rep, rep_in: Rep) -> EquivariantProjector:
    """Cached :class:`EquivariantProjector` for a ``(group, rep_out, rep_in)`` triple."""
    return EquivariantProjector(group, rep_out, rep_in)


def sparse_projector(group: MatrixGroup, rep_out: Rep, rep_in: Rep) -> Tensor:
    """``P_G`` as a sparse COO ``(D_out D_in, D_out D_in)`` float64 matrix on row-major
    ``vec(W)`` (block structure made explicit; used to evaluate many projections in one sparse
    product)."""
    layout = EquivariantProjector(group, rep_out, rep_in)
    d = group.n
    n_in = layout.shape[1]
    rows_all, cols_all, vals_all = [], [], []
    row = 0
    for r_o, m_o in layout._out_ranks:
        d_o = d**r_o
        col = 0
        for r_i, m_i in layout._in_ranks:
            d_i = d**r_i
            block = block_projector(group, r_o, r_i)
            k, l_ = torch.nonzero(block.abs() > 1e-12, as_tuple=True)
            if k.numel():
                out_idx = layout._out_order[row : row + m_o * d_o].reshape(m_o, d_o)
                in_idx = layout._in_order[col : col + m_i * d_i].reshape(m_i, d_i)
                # flat[a, c, p, q] = out_idx[a, p] * n_in + in_idx[c, q]
                flat = (out_idx[:, None, :, None] * n_in + in_idx[None, :, None, :]).reshape(
                    m_o, m_i, d_o * d_i
                )
                rows_all.append(flat[:, :, k].reshape(-1))
                cols_all.append(flat[:, :, l_].reshape(-1))
                vals_all.append(block[k, l_].expand(m_o, m_i, -1).reshape(-1))
            col += m_i * d_i
        row += m_o * d_o
    n = layout.shape[0] * layout.shape[1]
    if not rows_all:
        return torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (n, n))
    indices = torch.stack([torch.cat(rows_all), torch.cat(cols_all)])
    return torch.sparse_coo_tensor(
        indices, torch.cat(vals_all), (n, n), check_invariants=False
    ).coalesce()


def sparse_block_diagonal(blocks: Sequence[Tensor]) -> Tensor:
    """The sparse COO block-diagonal matrix of square sparse ``blocks`` (to apply the projectors
    of many weights in one product)."""
    indices, values, offset = [], [], 0
    for block in blocks:
        block = block.coalesce()
        indices.append(block.indices() + offset)
        values.append(block.values())
        offset += block.shape[0]
    return torch.sparse_coo_tensor(
        torch.cat(indices, dim=1), torch.cat(values), (offset, offset), check_invariants=False
    ).coalesce()


def sparse_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype sparse products of ``dtype`` tensors run in: float32 for the 16-bit dtypes
    (PyTorch's CPU sparse kernels have no bfloat16 or float16 versions), else ``dtype``."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def sparse_csr(matrix: Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A sparse COO matrix as CSR in ``dtype`` on ``device``, with 32-bit indices where they fit
    (the CPU kernels convert 64-bit ones at every product otherwise)."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        csr = matrix.to(device=device, dtype=dtype).to_sparse_csr()
        if csr.values().numel() < 2**31 and max(csr.shape) < 2**31:
            csr = torch.sparse_csr_tensor(
                csr.crow_indices().int(), csr.col_indices().int(), csr.values(), csr.shape
            )
    return csr
