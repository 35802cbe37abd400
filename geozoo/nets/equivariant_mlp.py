"""MLPs on tensor representations: plain, hard-equivariant (EMLP-like), RPP and soft.

One architecture, in the shape of EMLP (Finzi, Welling & Wilson, ICML 2021) as used by the
soft-equivariance paper (Kim, Lee, Yang & Lee, ICML 2023, arXiv 2306.00356, Sec. 5):
``num_blocks`` blocks of

    lin = Linear(h)                         # to hidden + one gate scalar per non-scalar copy
    pre = lin + Bilinear(lin)               # tensor products of a few low-rank copies
    h   = Gate(pre)                         # silu on scalars, sigmoid(gate) * copy otherwise

followed by a final linear map to the output representation.  Every linear map is a
:class:`RepLinear` whose weight is, depending on ``mode``:

* ``"free"``: unconstrained (the "soft" model of Kim et al., regularised by
  :class:`geozoo.objectives.MixedSymmetryRegularizer`);
* ``"equivariant"``: ``W = P_G V`` (hard equivariance to ``group``, EMLP-like);
* ``"rpp"``: ``W = P_G V + U``, Residual Pathway Priors (Finzi, Benton & Wilson, NeurIPS 2021),
  with the L2 priors of :class:`geozoo.objectives.ResidualPathwayPrior`.

Gates, bilinear products and nonlinearities are equivariant for every group acting on the
tensor representations of :mod:`geozoo.groups.representations` (gates are scalars), so with
``mode="equivariant"`` the whole network is exactly ``G``-equivariant.

:class:`PlainMLP` is the ordinary MLP baseline.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from geozoo.groups import MatrixGroup, get_group
from geozoo.groups.projection import (
    SparseLinearMap,
    equivariant_projector,
    sparse_block_diagonal,
    sparse_csr,
    sparse_dtype,
    sparse_projector,
)
from geozoo.groups.representations import Rep, Scalar, tensor_product_order
from geozoo.zoo.pretrained import InputSpec, PretrainedCfg, regression_metrics
from geozoo.zoo.registry import register_model

__all__ = [
    "EquivariantMLP",
    "GatedNonlinearity",
    "PlainMLP",
    "RepBilinear",
    "RepLinear",
    "as_rep",
]

MODES = ("free", "equivariant", "rpp")


def as_rep(spec: Rep | Sequence[int]) -> Rep:
    """A :class:`Rep` from itself or from multiplicities per rank (``[5, 5]`` = 5 scalars +
    5 vectors, ``[0, 0, 1]`` = one rank-2 tensor)."""
    if isinstance(spec, Rep):
        return spec
    if isinstance(spec, Sequence) and all(isinstance(m, int) and m >= 0 for m in spec):
        rep = Rep.from_multiplicities(spec)
        if rep.blocks:
            return rep
    raise ValueError(
        f"expected a Rep or non-negative multiplicities per rank such as [5, 5], got {spec!r}"
    )


class RepLinear(nn.Module):
    """A linear map between representations, free, projected (hard) or RPP.

    Args:
        rep_in, rep_out: input and output representations.
        dim: dimension ``d`` of the base space the groups act on.
        mode: ``"free"``, ``"equivariant"`` or ``"rpp"`` (see the module docstring).
        group: the group of the projector for ``"equivariant"`` and ``"rpp"``.
        rpp_init_scale: initial scale of the free path ``U`` relative to ``V`` (RPP uses 1e-3).
    """

    def __init__(
        self,
        rep_in: Rep,
        rep_out: Rep,
        dim: int = 3,
        mode: str = "free",
        group: MatrixGroup | str | None = None,
        rpp_init_scale: float = 1e-3,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode != "free" and group is None:
            raise ValueError(f"mode {mode!r} needs a group for its projector")
        self.rep_in, self.rep_out, self.dim, self.mode = rep_in, rep_out, dim, mode
        self.group = get_group(group) if group is not None else None
        if self.group is not None and self.group.n != dim:
            raise ValueError(f"group {self.group.name} acts on R^{self.group.n}, not R^{dim}")
        n_in, n_out = rep_in.size(dim), rep_out.size(dim)
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        nn.init.orthogonal_(self.weight)
        self.bias = nn.Parameter(torch.zeros(n_out))
        if mode == "rpp":
            self.weight_free = nn.Parameter(rpp_init_scale * self.weight.detach().clone())
            self.bias_free = nn.Parameter(torch.zeros(n_out))
        else:
            self.register_parameter("weight_free", None)
            self.register_parameter("bias_free", None)

    def effective_weight(self) -> Tensor:
        """The weight actually used in :meth:`forward`."""
        if self.mode == "free":
            return self.weight
        projector = equivariant_projector(self.group, self.rep_out, self.rep_in)
        w = projector(self.weight)
        return w + self.weight_free if self.mode == "rpp" else w

    def effective_bias(self) -> Tensor:
        if self.mode == "free":
            return self.bias
        projector = equivariant_projector(self.group, self.rep_out, self.rep_in)
        b = projector.project_bias(self.bias)
        return b + self.bias_free if self.mode == "rpp" else b

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight(), self.effective_bias())

    def extra_repr(self) -> str:
        group = f", group={self.group.name}" if self.group is not None else ""
        return f"{self.rep_in} -> {self.rep_out}, mode={self.mode}{group}"


class GatedNonlinearity(nn.Module):
    """Gated nonlinearity (Weiler et al. 2018; EMLP): ``silu`` on scalars, each non-scalar copy
    multiplied by ``sigmoid`` of its own gate scalar.  Input: ``rep`` followed by one gate
    scalar per non-scalar copy; output: ``rep``."""

    def __init__(self, rep: Rep, dim: int = 3) -> None:
        super().__init__()
        self.rep, self.dim = rep, dim
        size = rep.size(dim)
        gate_index = torch.zeros(size, dtype=torch.long)
        scalar_mask = torch.zeros(size, dtype=torch.bool)
        copy = 0
        for rank, mult, sl in rep.block_slices(dim):
            if rank == 0:
                scalar_mask[sl] = True
                continue
            width = dim**rank
            for k in range(mult):
                start = sl.start + k * width
                gate_index[start : start + width] = copy
                copy += 1
        self.size = size
        self.register_buffer("gate_index", gate_index, persistent=False)
        self.register_buffer("scalar_mask", scalar_mask, persistent=False)
        # silu(v) = v sigmoid(v): every output is its value times the sigmoid of one input
        # coordinate (its own for scalars, its copy's gate otherwise), so one gather, one
        # sigmoid and one product make the whole nonlinearity
        own = torch.arange(size)
        self.register_buffer(
            "sigmoid_index", torch.where(scalar_mask, own, size + gate_index), persistent=False
        )

    @property
    def input_rep(self) -> Rep:
        n = self.rep.num_nonscalar_copies
        return self.rep + Rep(((0, n),)) if n else self.rep

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] == self.size:  # scalars only
            return F.silu(x)
        return x[..., : self.size] * torch.sigmoid(x.index_select(-1, self.sigmoid_index))


class RepBilinear(nn.Module):
    """``x -> L(s (x) s)`` with ``s`` the first ``scalars`` scalar and ``vectors`` vector copies
    of ``x`` and ``L`` a :class:`RepLinear` from the product representation to ``rep_out``.

    Tensor products of equivariant features are equivariant (they transform by the product
    representation), so with a projected ``L`` the layer is exactly equivariant; it supplies the
    quadratic terms (inner and outer products) that linear maps and gates cannot produce.
    """

    def __init__(
        self,
        rep_in: Rep,
        rep_out: Rep,
        scalars: int = 4,
        vectors: int = 4,
        dim: int = 3,
        mode: str = "free",
        group: MatrixGroup | str | None = None,
    ) -> None:
        super().__init__()
        ranges, blocks = [], []
        wanted = {0: scalars, 1: vectors}
        for rank, mult, sl in rep_in.block_slices(dim):
            taken = sum(m for r, m in blocks if r == rank)
            take = min(wanted.get(rank, 0) - taken, mult)
            if take > 0:
                ranges.append((sl.start, sl.start + take * dim**rank))
                blocks.append((rank, take))
        if not blocks:
            raise ValueError(f"no scalar or vector copies in {rep_in} to form products from")
        self.sub_rep = Rep(tuple(blocks))
        self.dim = dim
        self.ranges = tuple(ranges)
        self.linear = RepLinear(self.sub_rep @ self.sub_rep, rep_out, dim, mode, group)
        # s (x) s is symmetric (s_i s_j = s_j s_i), so the layer sees only the products with
        # i <= j, gathered straight from x, and its weight columns of (i, j) and (j, i) are
        # summed: the same map in half the features.  ``column_order`` takes the columns from the
        # product representation's layout to the row-major outer product s s^T.
        sub = torch.cat([torch.arange(a, b) for a, b in self.ranges])
        n = len(sub)
        rows, cols = torch.triu_indices(n, n)
        column_order = torch.argsort(tensor_product_order(self.sub_rep, self.sub_rep, dim))
        self.register_buffer("left", sub[rows], persistent=False)
        self.register_buffer("right", sub[cols], persistent=False)
        self.register_buffer("upper", column_order[rows * n + cols], persistent=False)
        self.register_buffer("lower", column_order[cols * n + rows], persistent=False)
        self.register_buffer("off_diagonal", (rows != cols).float(), persistent=False)
        # for the fused blocks (:class:`_FusedNetwork`): both factors of the products in
        # one gather (right ones first, so that each half is the gradient factor of the other
        # half of ``pair``), and for every weight column the folded column its gradient is (each
        # column is the upper or the off-diagonal lower entry of exactly one s_i s_j, i <= j)
        unfold = torch.empty(n * n, dtype=torch.long)
        pairs = torch.arange(len(rows))
        unfold[self.upper] = pairs
        unfold[self.lower[rows != cols]] = pairs[rows != cols]
        self.register_buffer("pair", torch.cat([sub[rows], sub[cols]]), persistent=False)
        self.register_buffer("swapped_pair", torch.cat([sub[cols], sub[rows]]), persistent=False)
        self.register_buffer("unfold", unfold, persistent=False)
        with torch.no_grad():  # start small, as a correction to the linear path
            self.linear.weight.mul_(0.1)

    def folded_weight(self, weight: Tensor | None = None) -> Tensor:
        """The weight on the products ``s_i s_j``, ``i <= j`` (``W_ij + W_ji`` off the
        diagonal) of ``weight`` (default: the layer's effective weight)."""
        if weight is None:
            weight = self.linear.effective_weight()
        lower = weight.index_select(1, self.lower)
        off_diagonal = self.off_diagonal.to(weight.dtype)
        return torch.addcmul(weight.index_select(1, self.upper), lower, off_diagonal)

    def forward(
        self, x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None
    ) -> Tensor:
        """``weight`` and ``bias``: the effective ones of ``self.linear`` if already computed."""
        products = x.index_select(-1, self.left) * x.index_select(-1, self.right)
        bias = self.linear.effective_bias() if bias is None else bias
        return F.linear(products, self.folded_weight(weight), bias)


def _block_forward(
    h: Tensor,
    weight: Tensor,
    bias: Tensor,
    bilinear_weight: Tensor,
    bilinear_bias: Tensor,
    bilinear: RepBilinear,
    gate: GatedNonlinearity,
) -> tuple[Tensor, tuple]:
    """One block ``h -> Gate(lin + Bilinear(lin))``, ``lin = W h + b``, on feature-major
    activations ``(features, batch)``; returns the output and the tensors
    :func:`_block_backward` needs."""
    lin = torch.addmm(bias.unsqueeze(-1), weight, h)
    folded = bilinear.folded_weight(bilinear_weight)
    factors = lin.index_select(0, bilinear.swapped_pair).unflatten(0, (2, -1))
    products = factors[1] * factors[0]
    pre = torch.addmm(bilinear_bias.unsqueeze(-1), folded, products).add_(lin)
    gates = torch.sigmoid_(pre.index_select(0, gate.sigmoid_index))
    values = pre[: gate.size]
    return values * gates, (h, weight, folded, factors, products, values, gates)


#: how many tensors :func:`_block_forward` saves per block
_SAVED = 7
_sigmoid_backward = torch.ops.aten.sigmoid_backward.default


def _block_backward(
    grad: Tensor,
    saved: Sequence[Tensor],
    bilinear: RepBilinear,
    gate: GatedNonlinearity,
    needs: Sequence[bool],
) -> list[Tensor | None]:
    """Gradients of :func:`_block_forward` with respect to ``h`` and the four parameters (those
    ``needs`` asks for) from the gradient of its output."""
    h, weight, folded, factors, products, values, gates = saved
    # the values' rows are written whole, the gate rows only receive the index_add below
    grad_pre = grad.new_empty(folded.shape[0], grad.shape[-1])
    torch.mul(grad, gates, out=grad_pre[: values.shape[0]])
    grad_pre[values.shape[0] :].zero_()
    grad_gates = _sigmoid_backward(grad * values, gates)
    grad_pre.index_add_(0, gate.sigmoid_index, grad_gates)
    grad_folded = grad_pre @ products.T if needs[3] else None
    grad_bilinear_bias = grad_pre.sum(-1) if needs[4] else None
    grad_products = folded.T @ grad_pre
    grad_factors = (grad_products * factors).flatten(0, 1)  # left, right
    grad_lin = grad_pre.index_add_(0, bilinear.pair, grad_factors)
    return [
        weight.T @ grad_lin if needs[0] else None,
        grad_lin @ h.T if needs[1] else None,
        grad_lin.sum(-1) if needs[2] else None,
        grad_folded.index_select(1, bilinear.unfold) if needs[3] else None,
        grad_bilinear_bias,
    ]


class _FusedNetwork(torch.autograd.Function):
    """The whole :class:`EquivariantMLP` (its blocks and head) as one autograd function with a
    hand-written backward pass, on feature-major activations ``(features, batch)`` inside.

    The same map as the blocks' modules (:class:`RepLinear`, :class:`RepBilinear`,
    :class:`GatedNonlinearity`; tests compare them) in far fewer operations, none of them
    recorded by autograd: at the small widths of the soft-equivariance tasks a step costs what
    its operations cost to dispatch and record more than their arithmetic.  Feature-major rows
    make every gather (the products' factors, the gates) and its scatter in the backward pass a
    copy of contiguous rows, where batch-major columns are strided.  ``params``: the effective
    ``(weight, bias)`` of each block's linear and bilinear layers, then the head's.
    Differentiable once.
    """

    @staticmethod
    def forward(ctx, x: Tensor, network: EquivariantMLP, *params: Tensor) -> Tensor:  # type: ignore[override]
        h, saved = x.T, []
        for i, block in enumerate(network.blocks):
            h, state = _block_forward(
                h, *params[4 * i : 4 * i + 4], block["bilinear"], block["gate"]
            )
            saved.append(state)
        weight, bias = params[-2:]
        # every tensor through save_for_backward: autograd then refuses a backward pass after an
        # in-place change of the input and frees the intermediates once the pass is done
        ctx.save_for_backward(*(t for state in saved for t in state), h, weight)
        ctx.blocks = network.blocks
        # feature-major product, then transposed: the batch-major addmm(bias, h.T, weight.T)
        # takes a slow BLAS path for a narrow output (about 4x the time on CPU)
        return torch.addmm(bias.unsqueeze(-1), weight, h).T.contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        *tensors, last, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad = grad.T
        grads: list[Tensor | None] = [
            grad @ last.T if needs[-2] else None,
            grad.sum(-1) if needs[-1] else None,
        ]
        grad_h = weight.T @ grad
        for i in reversed(range(len(ctx.blocks))):
            block, state = ctx.blocks[i], tensors[_SAVED * i : _SAVED * (i + 1)]
            block_needs = (i > 0 or needs[0], *needs[2 + 4 * i : 6 + 4 * i])
            grad_h, *block_grads = _block_backward(
                grad_h, state, block["bilinear"], block["gate"], block_needs
            )
            grads[:0] = block_grads
        return grad_h.T if needs[0] else None, None, *grads


class EquivariantMLP(nn.Module):
    """EMLP-shaped network on tensor representations (see the module docstring).

    Args:
        rep_in: input representation (``Rep`` or multiplicities per rank).
        rep_out: output representation.
        hidden: hidden representation, e.g. ``[32, 16, 4]`` (scalars, vectors, rank-2 tensors).
        num_blocks: number of linear-bilinear-gate blocks before the final linear map.
        dim: base-space dimension ``d`` (3 for the point-cloud tasks).
        mode: ``"free"`` (soft), ``"equivariant"`` (hard) or ``"rpp"``.
        group: group name or :class:`MatrixGroup` for ``"equivariant"`` / ``"rpp"``.
        bilinear: ``(scalars, vectors)`` copies entering each bilinear layer.
        bilinear_group: make the bilinear layers hard-equivariant to this group whatever
            ``mode`` is.  Kim et al.'s soft network (official code: ``SoftEMLP``) does this with
            the largest candidate group: only its linear layers are free and regularized, and the
            bilinear layers, equivariant to every candidate, never break a symmetry.
        fused: run the network as one :class:`_FusedNetwork` (fast, differentiable once);
            ``False`` composes the block's modules through autograd (higher-order derivatives,
            ``torch.func`` transforms).  The same map either way; under autocast (mixed
            precision) the modules are composed whatever ``fused`` is.
    """

    def __init__(
        self,
        rep_in: Rep | Sequence[int],
        rep_out: Rep | Sequence[int],
        hidden: Rep | Sequence[int] = (32, 16, 4),
        num_blocks: int = 3,
        dim: int = 3,
        mode: str = "free",
        group: MatrixGroup | str | None = None,
        bilinear: Sequence[int] = (4, 4),
        bilinear_group: MatrixGroup | str | None = None,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.rep_in, self.rep_out, self.dim = as_rep(rep_in), as_rep(rep_out), dim
        self.fused = fused
        self.hidden = as_rep(hidden)
        self.mode = mode
        self.group_name = get_group(group).name if group is not None else None
        blocks = nn.ModuleList()
        previous = self.rep_in
        for _ in range(num_blocks):
            gate = GatedNonlinearity(self.hidden, dim)
            block = nn.ModuleDict(
                {
                    "linear": RepLinear(previous, gate.input_rep, dim, mode, group),
                    "bilinear": RepBilinear(
                        gate.input_rep,
                        gate.input_rep,
                        *bilinear,
                        dim=dim,
                        mode=mode if bilinear_group is None else "equivariant",
                        group=group if bilinear_group is None else bilinear_group,
                    ),
                    "gate": gate,
                }
            )
            blocks.append(block)
            previous = self.hidden
        self.blocks = blocks
        self.head = RepLinear(previous, self.rep_out, dim, mode, group)
        self._structure: tuple[nn.Module, ...] = ()
        self._signatures = [_signature(m) for m in self._modules_in_order()]
        self._layers()

    def _modules_in_order(self) -> tuple[nn.Module, ...]:
        """Each block's linear, bilinear (and its linear) and gate modules, then the head."""
        modules = []
        for block in self.blocks:
            bilinear = block["bilinear"]
            modules += [block["linear"], bilinear, bilinear.linear, block["gate"]]
        return (*modules, self.head)

    def _layers(self) -> list[RepLinear]:
        """The :class:`RepLinear` layers in the order the network runs them.  A module replaced
        since the last call is checked against the one it replaces (same kind, same
        representations) and the layer lists and projectors are rebuilt."""
        modules = self._modules_in_order()
        if modules != self._structure:
            places = [
                f"blocks[{i}]{place}"
                for i in range(len(self.blocks))
                for place in ("['linear']", "['bilinear']", "['bilinear'].linear", "['gate']")
            ]
            for module, expected, where in zip(modules, self._signatures, [*places, "head"]):
                if _signature(module) != expected:
                    raise ValueError(
                        f"EquivariantMLP.{where} must be a {expected[0].__name__} for "
                        f"{expected[1]} over R^{self.dim} (what it replaces), got {module!r}"
                    )
            self._structure = modules
            self._linears = [m for m in modules if isinstance(m, RepLinear)]
            self._free = [m for m in self._linears if m.mode == "free"]
            self._projected = [m for m in self._linears if m.mode != "free"]
            self._projectors: dict[tuple[torch.dtype, torch.device], Tensor] = {}
        return self._linears

    def _projector(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Block-diagonal projector of every projected layer's ``vec(V)`` and bias (CSR)."""
        key = (dtype, device)
        if key not in self._projectors:
            blocks = []
            for layer in self._projected:
                blocks.append(sparse_projector(layer.group, layer.rep_out, layer.rep_in))
                blocks.append(sparse_projector(layer.group, layer.rep_out, Scalar))
            self._projectors[key] = sparse_csr(sparse_block_diagonal(blocks), dtype, device)
        return self._projectors[key]

    def effective_parameters(self) -> dict[RepLinear, tuple[Tensor, Tensor]]:
        """``(weight, bias)`` of every :class:`RepLinear`, as its ``effective_weight()`` and
        ``effective_bias()``, with all projections of the hard and RPP layers from one sparse
        product (one per layer and step would cost more than the layers themselves)."""
        self._layers()
        params = {m: (m.weight, m.bias) for m in self._free}
        if self._projected:
            theta = torch.cat([t for m in self._projected for t in (m.weight.flatten(), m.bias)])
            dtype = sparse_dtype(theta.dtype)  # 16-bit weights are projected in float32
            matrix = self._projector(dtype, theta.device)  # symmetric: its own transpose
            flat = SparseLinearMap.apply(matrix, matrix, theta.to(dtype).unsqueeze(-1))
            flat = flat.squeeze(-1).to(theta.dtype)
            offset = 0
            for m in self._projected:
                n_w, n_b = m.weight.numel(), m.bias.numel()
                weight = flat[offset : offset + n_w].view_as(m.weight)
                bias = flat[offset + n_w : offset + n_w + n_b]
                offset += n_w + n_b
                if m.mode == "rpp":
                    weight, bias = weight + m.weight_free, bias + m.bias_free
                params[m] = (weight, bias)
        return params

    def rep_linears(self) -> Iterator[RepLinear]:
        """The :class:`RepLinear` layers that are not hard-equivariant (those the projection-form
        regularizer acts on; with ``bilinear_group`` the bilinear layers are left out, as in
        Kim et al.'s code)."""
        for module in self._layers():
            if not (module.mode == "equivariant" and self.mode != "equivariant"):
                yield module

    def forward(self, x: Tensor) -> Tensor:
        expected = self.rep_in.size(self.dim)
        if x.shape[-1] != expected:
            raise ValueError(
                f"expected inputs (..., {expected}) for {self.rep_in} over R^{self.dim}, got "
                f"{tuple(x.shape)}"
            )
        params = self.effective_parameters()
        # under autocast the modules' operations run in mixed dtypes that only autograd's own
        # backward casts back (the fused backward would multiply float32 by bfloat16)
        if not self.fused or torch.is_autocast_enabled(x.device.type):
            for block in self.blocks:
                lin = F.linear(x, *params[block["linear"]])
                x = block["gate"](lin + block["bilinear"](lin, *params[block["bilinear"].linear]))
            return F.linear(x, *params[self.head])
        flat = [t for layer in self._linears for t in params[layer]]
        out = _FusedNetwork.apply(x.reshape(-1, expected), self, *flat)
        return out.reshape(*x.shape[:-1], out.shape[-1])


def _signature(module: nn.Module) -> tuple:
    """What :class:`EquivariantMLP` needs of a module in its place: its kind and the
    representations (or, for a bilinear layer, the coordinates) it acts on."""
    if isinstance(module, RepLinear):
        return RepLinear, f"{module.rep_in} -> {module.rep_out}", module.dim
    if isinstance(module, RepBilinear):
        return RepBilinear, f"the products of the coordinates {module.ranges}", module.dim
    if isinstance(module, GatedNonlinearity):
        return GatedNonlinearity, f"{module.rep}", module.dim
    return type(module), "", None


class PlainMLP(nn.Module):
    """An ordinary MLP (Linear + SiLU) on flattened features: the unconstrained baseline.

    ``rep_in`` / ``rep_out`` only fix the sizes (and tell sample-form regularizers how the
    group acts on inputs and outputs).
    """

    def __init__(
        self,
        rep_in: Rep | Sequence[int],
        rep_out: Rep | Sequence[int],
        width: int = 256,
        num_layers: int = 4,
        dim: int = 3,
    ) -> None:
        super().__init__()
        self.rep_in, self.rep_out, self.dim = as_rep(rep_in), as_rep(rep_out), dim
        sizes = [self.rep_in.size(dim)] + [width] * (num_layers - 1) + [self.rep_out.size(dim)]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.SiLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        expected = self.rep_in.size(self.dim)
        if x.shape[-1] != expected:
            raise ValueError(f"expected inputs (..., {expected}), got {tuple(x.shape)}")
        return self.net(x)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


#: The modified-inertia task: 5 masses and 5 positions in, a 3x3 tensor out.
INERTIA = PretrainedCfg(
    input=InputSpec((20,), (float("-inf"), float("inf"))), metrics=regression_metrics
)


@register_model(pretrained_cfg=INERTIA)
def emlp(**kwargs) -> EquivariantMLP:
    """EMLP-shaped network; ``mode`` free (soft, for the mixed-symmetry regularizer),
    equivariant (hard) or rpp.  Default: modified-inertia shapes (5 scalars + 5 vectors -> T2)."""
    defaults = {"rep_in": [5, 5], "rep_out": [0, 0, 1]}
    return EquivariantMLP(**{**defaults, **kwargs})


@register_model(pretrained_cfg=INERTIA)
def plain_mlp(**kwargs) -> PlainMLP:
    """Plain MLP baseline; default: modified-inertia shapes."""
    defaults = {"rep_in": [5, 5], "rep_out": [0, 0, 1]}
    return PlainMLP(**{**defaults, **kwargs})
