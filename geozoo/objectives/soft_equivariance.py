"""Soft-equivariance regularizers for mixed approximate symmetries, with auto-tuned strengths.

Kim, Lee, Yang & Lee, "Regularizing Towards Soft Equivariance Under Mixed Symmetries", ICML 2023
(arXiv 2306.00356).  Instead of building a symmetry into the architecture, one regularizer per
candidate group ``G_g`` is added to the loss,

    L = L_data + sum_g lambda_g R_g,

and the strengths ``lambda_g`` are tuned during training; the tuned strengths tell how well the
data supports each symmetry.  Two forms of ``R_g``:

* projection form (their Eq. for linear-layer networks, "PER"): for every linear layer,
  ``R_g = sum_l 1/2 (||W_l - P_g W_l||_F^2 + ||b_l - P_g b_l||^2)`` with ``P_g`` the orthogonal
  projector onto ``G_g``-equivariant maps (:mod:`geozoo.groups.projection`); needs a network
  exposing ``rep_linears()`` (e.g. :class:`geozoo.nets.EquivariantMLP`);
* sample form, for any network: ``E_{g ~ G} ||f(rho_in(g) x) - rho_out(g) f(x)||^2`` averaged
  over the batch, with ``g`` drawn from the group's sampler; how ``g`` acts on inputs and
  outputs is a :class:`~geozoo.objectives.sample_actions.SampleAction`: representations of flat
  features, rotations of point clouds, or :mod:`geozoo.testing` transforms of images.

:class:`MixedSymmetryRegularizer` holds one term per group.  Strength tuning (their Sec. 4.2):
after ``adjust_at`` epochs, ``lambda_g <- lambda_g (R_min / R_g)^p`` where ``R_g`` is the smallest
epoch-mean of the term over the last ``window`` epochs and ``R_min = min_g R_g`` over the groups
with a non-zero strength.  The symmetry whose regularizer is easiest to satisfy keeps its
strength; symmetries the data violates are relaxed polynomially.  The continuous variant moves
``log lambda_g`` each epoch a fraction ``rate`` towards ``log(lambda0_g (R_min / R_g)^p)``.
Strengths, histories and counters are buffers (checkpointed); epoch statistics are summed over
DDP ranks before an update and the strengths are broadcast from rank 0, so every rank keeps
identical strengths.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from geozoo.groups import MatrixGroup, get_group
from geozoo.groups.projection import (
    sparse_block_diagonal,
    sparse_csr,
    sparse_dtype,
    sparse_projector,
)
from geozoo.groups.representations import Rep, Scalar
from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext
from geozoo.objectives.sample_actions import (
    RepresentationAction,
    SampleAction,
    sample_action,
)

__all__ = [
    "MixedSymmetryRegularizer",
    "ProjectionEquivarianceRegularizer",
    "ProjectionPenaltyOperator",
    "ResidualPathwayPrior",
    "SampleEquivarianceRegularizer",
    "action_penalty",
    "projection_penalties",
    "projection_penalty",
    "sample_penalty",
]


def _rep_linears(network: nn.Module) -> list[nn.Module]:
    layers = list(network.rep_linears()) if hasattr(network, "rep_linears") else []
    if not layers:
        raise TypeError(
            f"the projection-form regularizer needs a network with rep_linears() (linear layers "
            f"with rep_in/rep_out, e.g. geozoo.nets.EquivariantMLP); got {type(network).__name__}."
            " Use form='sample' for other networks."
        )
    return layers


class _HalfSquaredResiduals(torch.autograd.Function):
    """``R_g = 1/2 ||theta - P_g theta||^2`` for every group from one sparse product, with
    ``theta`` the concatenation of ``tensors`` (flattened).

    An entry ``i`` of the residual ``r_g = theta - P_g theta`` is one of three kinds (see
    :class:`ProjectionPenaltyOperator`): ``theta_i`` where row ``i`` of ``P_g`` is zero (no
    equivariant map uses the entry; ``free`` is 1 there), exactly zero where the row is ``e_i``
    (every equivariant map may take any value there), and ``((I - P_g) theta)_i`` on the
    remaining rows, which ``matrix`` holds, group by group.  So
    ``2 R_g = free_g . theta^2 + ||M_g theta||^2`` with ``M_g`` the group's rows of ``matrix``, and
    the residuals are never laid out as a ``(groups, size)`` array.  ``I - P_g`` is an orthogonal
    projector, so ``dR_g / dtheta = r_g``: the backward pass reuses ``M theta`` instead of a
    second (transposed) product, adds each kept row's residual at its coordinate, and hands each
    tensor its slice of the gradient directly (no concatenation in the graph).
    """

    @staticmethod
    def forward(ctx, parts: PenaltyParts, *tensors: Tensor) -> Tensor:  # type: ignore[override]
        theta = torch.cat([t.reshape(-1) for t in tensors])
        inner = torch.mv(parts.matrix, theta).view(len(parts.free), parts.width)
        values = torch.mv(parts.free, theta * theta).add_(torch.linalg.vecdot(inner, inner))
        ctx.save_for_backward(theta, inner)
        ctx.parts = parts
        return values.mul_(0.5)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        theta, inner = ctx.saved_tensors
        parts = ctx.parts
        # sum_g grad_g r_g: theta_i weighted by the groups whose row i of P_g is zero, plus each
        # kept row's residual at its coordinate
        flat = torch.mv(parts.free.T, grad).mul_(theta)
        flat.scatter_add_(0, parts.coordinate, (inner * grad.unsqueeze(-1)).view(-1))
        pieces = flat.split([shape.numel() for shape in parts.shapes])
        return None, *(piece.view(shape) for piece, shape in zip(pieces, parts.shapes))


class PenaltyParts(NamedTuple):
    """The operands of :class:`_HalfSquaredResiduals` in one dtype on one device."""

    matrix: Tensor  # sparse CSR (groups * width, size): each group's kept rows of I - P_g
    coordinate: Tensor  # (groups * width,): the entry of theta each row is the residual of
    width: int  # rows per group in matrix
    free: Tensor  # (groups, size): 1 where the row of P_g is zero, else 0
    scale: Tensor  # (groups,): the factor of each R_g (normalize), else ones
    shapes: list[torch.Size]  # the shapes of the tensors theta is made of


class ProjectionPenaltyOperator:
    """All projections a projection-form regularizer needs, as one sparse matrix.

    For a fixed network and groups it stacks, for every group, the block-diagonal projector over
    the concatenated ``vec(W_l)`` and ``b_l`` of all ``RepLinear`` layers; one sparse product per
    step then gives the residuals ``theta - P_g theta`` for every group (the projectors are
    orthogonal, so ``R_g = 1/2 ||theta - P_g theta||^2`` is exactly the sum over layers of the
    paper's terms, and its gradient ``(I - P_g) theta`` needs no second product).  Only the rows
    of ``I - P_g`` that are not zero and not ``e_i`` enter the product: most entries of a weight
    are either used by no equivariant map (residual ``theta_i``) or by all (residual 0).  The
    operator is built once per network and groups and cast once per dtype and device.

    With ``normalize=True`` each ``R_g`` is divided by the dimension of the complement of the
    ``G_g``-equivariant subspace (``size - rank P_g``): the mean squared residual per constrained
    direction instead of the total, so groups with equivariant subspaces of different size are
    compared per constraint (an option of geozoo, not of the paper).
    """

    def __init__(
        self, network: nn.Module, groups: Sequence[MatrixGroup], normalize: bool = False
    ) -> None:
        self.layers = _rep_linears(network)
        self.groups = tuple(groups)
        per_group = []
        for group in self.groups:
            blocks = []
            for layer in self.layers:
                blocks.append(sparse_projector(group, layer.rep_out, layer.rep_in))
                blocks.append(sparse_projector(group, layer.rep_out, Scalar))
            per_group.append(sparse_block_diagonal(blocks))
        self.size = size = per_group[0].shape[0]
        # the trace of an orthogonal projector is its rank: the equivariant subspace's dimension
        ranks = [_sparse_trace(p) for p in per_group]
        self.equivariant_dims = tuple(round(r) for r in ranks)
        scale = [1.0 / max(size - r, 1.0) if normalize else 1.0 for r in ranks]
        self._scale64 = torch.tensor(scale, dtype=torch.float64)
        self.normalize = normalize
        # rows of the stacked I - P_g: e_i - P_g e_i on the rows where P_g is not zero, with the
        # entries sparse_projector also drops (|.| <= 1e-12) dropped again, so that a row e_i of
        # P_g (residual exactly 0) leaves no row at all
        n = len(self.groups)
        stacked = torch.cat(per_group, dim=0).coalesce()
        used = torch.unique(stacked.indices()[0])
        rows = torch.cat([stacked.indices()[0], used])
        cols = torch.cat([stacked.indices()[1], used % size])
        values = torch.cat([-stacked.values(), torch.ones(len(used), dtype=torch.float64)])
        residual = torch.sparse_coo_tensor(
            torch.stack([rows, cols]), values, (n * size, size), check_invariants=False
        ).coalesce()
        keep = residual.values().abs() > 1e-12
        rows, cols = residual.indices()[:, keep]
        # the kept rows of each group in a (groups, width) layout (empty rows pad the groups
        # with fewer): R_g sums along one axis, and grad_g scales one row of it
        kept, compressed = torch.unique(rows, return_inverse=True)
        group = kept // size
        counts = torch.bincount(group, minlength=n)
        self._width = width = int(counts.max()) if len(kept) else 0
        place = group * width + torch.arange(len(kept)) - (torch.cumsum(counts, 0) - counts)[group]
        self._matrix64 = torch.sparse_coo_tensor(
            torch.stack([place[compressed], cols]),
            residual.values()[keep],
            (n * width, size),
            check_invariants=False,
        ).coalesce()
        # each kept row's coordinate: where its residual goes in the gradient (the padding's
        # residuals are 0)
        self._coordinate = torch.zeros(n * width, dtype=torch.long)
        self._coordinate[place] = kept % size
        self._shapes = [t.shape for layer in self.layers for t in _weights(layer)]
        self._free64 = torch.ones(n * size, dtype=torch.float64)
        self._free64[used] = 0.0
        self._free64 = self._free64.view(n, size)
        self._cast: dict[tuple[torch.dtype, torch.device], PenaltyParts] = {}

    def parts(self, dtype: torch.dtype, device: torch.device) -> PenaltyParts:
        """The operands of the penalty in ``dtype`` on ``device`` (cast once)."""
        key = (dtype, device)
        if key not in self._cast:
            # normal tensors even on a first call under inference mode: they enter the graph of
            # every later (training) call
            with torch.inference_mode(False):
                self._cast[key] = PenaltyParts(
                    sparse_csr(self._matrix64, dtype, device),
                    self._coordinate.to(device),
                    self._width,
                    self._free64.to(device=device, dtype=dtype),
                    self._scale64.to(device=device, dtype=dtype),
                    self._shapes,
                )
        return self._cast[key]

    def parameters(self) -> list[Tensor]:
        """Every layer's effective weight and bias, in the operator's order."""
        return [t for layer in self.layers for t in _weights(layer)]

    def parameters_vector(self) -> Tensor:
        """``theta``: the concatenation of :meth:`parameters`, flattened."""
        return torch.cat([t.reshape(-1) for t in self.parameters()])

    def __call__(self) -> Tensor:
        tensors = self.parameters()
        dtype = tensors[0].dtype
        # the sparse kernels have no 16-bit CPU versions: such networks are penalized in float32
        compute = sparse_dtype(dtype)
        if compute != dtype:
            tensors = [t.to(compute) for t in tensors]
        parts = self.parts(compute, tensors[0].device)
        values = _HalfSquaredResiduals.apply(parts, *tensors)
        return (values * parts.scale if self.normalize else values).to(dtype)


def _weights(layer: nn.Module) -> tuple[Tensor, Tensor]:
    return layer.effective_weight(), layer.effective_bias()


def _sparse_trace(matrix: Tensor) -> float:
    matrix = matrix.coalesce()
    rows, cols = matrix.indices()
    return float(matrix.values()[rows == cols].sum())


_OPERATORS: weakref.WeakKeyDictionary[nn.Module, dict[tuple, ProjectionPenaltyOperator]] = (
    weakref.WeakKeyDictionary()
)


def projection_penalties(
    network: nn.Module, groups: Sequence[MatrixGroup | str], normalize: bool = False
) -> Tensor:
    """``(R_g)_g`` with ``R_g = sum_l 1/2 (||W_l - P_g W_l||^2 + ||b_l - P_g b_l||^2)`` over the
    network's ``RepLinear`` layers (Kim et al. 2023, projection-based equivariance regularizer),
    for all groups in one sparse product (the operator is cached per network and groups).
    ``normalize`` divides each by the number of directions its group constrains
    (:class:`ProjectionPenaltyOperator`)."""
    groups = tuple(get_group(g) for g in groups)
    per_network = _OPERATORS.setdefault(network, {})
    key = (groups, normalize)
    operator = per_network.get(key)
    # rebuilt when a layer of the network has been replaced since
    if operator is None or operator.layers != _rep_linears(network):
        operator = per_network[key] = ProjectionPenaltyOperator(network, groups, normalize)
    return operator()


def projection_penalty(network: nn.Module, group: MatrixGroup | str) -> Tensor:
    """``R_G`` of :func:`projection_penalties` for a single group."""
    return projection_penalties(network, [group])[0]


def action_penalty(
    network: nn.Module,
    inputs: Tensor,
    action: SampleAction,
    outputs: Tensor | None = None,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Monte-Carlo ``E_g mean_batch ||f(g . x) - g . f(x)||^2`` for one symmetry's ``action``
    (squared norms summed over every output axis but the batch)."""
    if outputs is None:
        outputs = network(inputs)
    total = outputs.new_zeros(())
    for _ in range(num_samples):
        act_in, act_out = action.draw(inputs, network, generator)
        difference = network(act_in(inputs)) - act_out(outputs)
        total = total + difference.reshape(difference.shape[0], -1).square().sum(-1).mean()
    return total / num_samples


def sample_penalty(
    network: nn.Module,
    inputs: Tensor,
    group: MatrixGroup | str,
    rep_in: Rep,
    rep_out: Rep,
    outputs: Tensor | None = None,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """:func:`action_penalty` for a matrix group acting on flat features by representations
    (one ``g`` per example and sample)."""
    action = RepresentationAction(group, rep_in, rep_out)
    return action_penalty(network, inputs, action, outputs, num_samples, generator)


class ProjectionEquivarianceRegularizer(Objective):
    """One projection-form term ``R_G`` for a fixed group (the building block of PER).

    Args:
        group: group name (``"o3"``, ``"o2_z"``, ...) or :class:`MatrixGroup`.
        weight: the strength, applied by the task.
    """

    def __init__(self, group: str | MatrixGroup, weight: float = 1.0) -> None:
        super().__init__(weight=weight, name=f"proj_equiv_{get_group(group).name}")
        self.group = get_group(group)

    def check_network(self, network: nn.Module) -> None:
        _rep_linears(network)

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        loss = projection_penalty(ctx.network, self.group)
        return ObjectiveOutput(loss, {"value": loss.detach()})


class SampleEquivarianceRegularizer(Objective):
    """Sample-form term ``E_g ||f(g.x) - g.f(x)||^2`` for any network and one symmetry.

    Args:
        group: group name or :class:`MatrixGroup` (acting as ``inputs`` says), an image group
            name with ``inputs="images"``, or any
            :class:`~geozoo.objectives.sample_actions.SampleAction`.
        weight: the strength, applied by the task.
        num_samples: group elements per example per step.
        rep_in, rep_out: representations of flat inputs / outputs (default: the network's);
            for point clouds, ``rep_out`` alone (default: invariant outputs).
        inputs: ``"vectors"``, ``"points"`` or ``"images"``
            (:func:`~geozoo.objectives.sample_actions.sample_action`).
    """

    def __init__(
        self,
        group: str | MatrixGroup | SampleAction,
        weight: float = 1.0,
        num_samples: int = 1,
        rep_in: Rep | Sequence[int] | None = None,
        rep_out: Rep | Sequence[int] | None = None,
        inputs: str = "vectors",
    ) -> None:
        action = sample_action(group, inputs, rep_in, rep_out)
        super().__init__(weight=weight, name=f"sample_equiv_{action.name}")
        self.action, self.num_samples = action, _positive_int(num_samples, "num_samples")

    def check_network(self, network: nn.Module) -> None:
        self.action.check_network(network)

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        loss = action_penalty(ctx.network, ctx.inputs, self.action, ctx.outputs, self.num_samples)
        return ObjectiveOutput(loss, {"value": loss.detach()})


def _positive_int(value: int, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{label} must be a positive integer, got {value!r}")
    return value


class MixedSymmetryRegularizer(Objective):
    """``sum_g lambda_g R_g`` over candidate groups with auto-tuned strengths (Kim et al. 2023).

    Args:
        groups: candidate groups (names such as ``["o3", "o2_x", "o2_y", "o2_z"]`` or
            :class:`MatrixGroup` values; for ``inputs="images"`` image group names such as
            ``["c4", "flip"]``; in sample form also any
            :class:`~geozoo.objectives.sample_actions.SampleAction`).
        init_strength: ``lambda0`` for every group, or one value per group (0 switches a term off
            and excludes it from ``R_min``, as the paper does for the full O(3) term).
        form: ``"projection"`` (weights; networks with ``rep_linears()``) or ``"sample"`` (any
            network; see ``inputs``).
        schedule: ``"oneshot"`` (the paper's single adjustment at epoch ``adjust_at``),
            ``"continuous"`` (an update at the end of every epoch from ``adjust_at`` on) or
            ``"fixed"`` (no tuning).
        adjust_at: epochs completed before the (first) adjustment ``T``.
        exponent: ``p`` in ``lambda_g <- lambda_g (R_min / R_g)^p``.
        window: how many recent epoch means of ``R_g`` the minimum is taken over.
        rate: for ``"continuous"``, the fraction of the way ``log lambda`` moves per epoch.
        num_samples: group elements per example for the sample form.
        weight: overall factor applied by the task.
        inputs: for the sample form, what the groups act on: ``"vectors"`` (flat features, by
            ``rep_in``/``rep_out`` or the network's attributes), ``"points"`` (point clouds
            ``(N, K, d)``; outputs invariant unless ``rep_out``) or ``"images"``
            (:func:`~geozoo.objectives.sample_actions.image_action`, invariant outputs).
        rep_in, rep_out: representations (or multiplicities per rank) for the sample form.
        normalize: projection form only: divide each ``R_g`` by the number of weight directions
            ``G_g`` constrains (:class:`ProjectionPenaltyOperator`), so that groups whose
            equivariant subspaces differ in dimension are compared per constraint.  Not in the
            paper; off by default.

    Everything is checked when the regularizer is built, and against the network when the task
    is built (:meth:`check_network`), not at the first training step.

    Logged under the objective's name: ``strength_<group>`` and ``R_<group>`` for each group.
    """

    def __init__(
        self,
        groups: Sequence[str | MatrixGroup | SampleAction],
        init_strength: float | Sequence[float] = 1.0,
        form: str = "projection",
        schedule: str = "oneshot",
        adjust_at: int = 100,
        exponent: float = 2.0,
        window: int = 20,
        rate: float = 0.1,
        num_samples: int = 1,
        weight: float = 1.0,
        name: str = "mixed_symmetry",
        inputs: str = "vectors",
        rep_in: Rep | Sequence[int] | None = None,
        rep_out: Rep | Sequence[int] | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__(weight=weight, name=name)
        if not groups:
            raise ValueError("MixedSymmetryRegularizer needs at least one candidate group")
        if form not in ("projection", "sample"):
            raise ValueError(f"form must be 'projection' or 'sample', got {form!r}")
        if schedule not in ("oneshot", "continuous", "fixed"):
            raise ValueError(
                f"schedule must be 'oneshot', 'continuous' or 'fixed', got {schedule!r}"
            )
        if adjust_at < 1 or window < 1 or not 0.0 < rate <= 1.0 or exponent < 0:
            raise ValueError(
                "expected adjust_at >= 1, window >= 1, 0 < rate <= 1 and exponent >= 0, got "
                f"adjust_at={adjust_at}, window={window}, rate={rate}, exponent={exponent}"
            )
        if form == "projection":
            if inputs != "vectors" or rep_in is not None or rep_out is not None:
                raise ValueError(
                    "the projection form reads representations from the network's layers "
                    "(rep_linears()): inputs, rep_in and rep_out belong to form='sample'"
                )
            if any(isinstance(g, SampleAction) for g in groups):
                raise TypeError("SampleAction groups need form='sample'")
            self.groups = [get_group(g) for g in groups]
            self.actions: list[SampleAction] = []
        else:
            self.actions = [sample_action(g, inputs, rep_in, rep_out) for g in groups]
            self.groups = [getattr(a, "group", None) for a in self.actions]
            if normalize:
                raise ValueError("normalize applies to form='projection' (weight-space distances)")
        self.normalize = normalize
        names = self.group_names
        if len(set(names)) != len(names):
            raise ValueError(f"candidate groups must be distinct, got {names}")
        strengths = (
            [float(init_strength)] * len(self.groups)
            if isinstance(init_strength, int | float)
            else [float(s) for s in init_strength]
        )
        if len(strengths) != len(self.groups) or min(strengths) < 0:
            raise ValueError(
                f"init_strength must be one non-negative value or one per group ({len(names)}), "
                f"got {init_strength!r}"
            )
        self.form, self.schedule = form, schedule
        self.adjust_at, self.exponent, self.window, self.rate = adjust_at, exponent, window, rate
        self.num_samples = _positive_int(num_samples, "num_samples")
        n = len(self.groups)
        self.register_buffer("strengths", torch.tensor(strengths, dtype=torch.float64))
        self.register_buffer("initial_strengths", torch.tensor(strengths, dtype=torch.float64))
        self.register_buffer("history", torch.full((window, n), float("inf"), dtype=torch.float64))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("adjustments", torch.zeros((), dtype=torch.long))
        self.register_buffer("epoch_sum", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("epoch_count", torch.zeros((), dtype=torch.float64))

    @property
    def group_names(self) -> list[str]:
        if self.actions:
            return [a.name for a in self.actions]
        return [g.name for g in self.groups]

    def check_network(self, network: nn.Module) -> None:
        """Raise ``TypeError`` now if the terms cannot be computed for ``network``."""
        if self.form == "projection":
            _rep_linears(network)
        for action in self.actions:
            action.check_network(network)

    def strength_dict(self) -> dict[str, float]:
        """Current strengths by group name."""
        return {n: float(s) for n, s in zip(self.group_names, self.strengths)}

    def penalties(self, ctx: StepContext) -> Tensor:
        """The vector ``(R_g)_g`` for this step (differentiable)."""
        if self.form == "projection":
            return projection_penalties(ctx.network, self.groups, self.normalize)
        return torch.stack(
            [
                action_penalty(ctx.network, ctx.inputs, a, ctx.outputs, self.num_samples)
                for a in self.actions
            ]
        )

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        names = self.group_names
        # logged from the float32 strengths, not their copy in the penalties' (maybe bf16) dtype
        logs = {f"strength_{n}": s for n, s in zip(names, self.strengths.float().unbind())}
        if ctx.stage != "train":  # the regularizer only shapes training
            return ObjectiveOutput(ctx.outputs.new_zeros(()), logs)
        values = self.penalties(ctx)
        strengths, detached = self.strengths.to(values), values.detach()
        # in place: `self.epoch_sum += ...` would pass through nn.Module.__setattr__ every step
        self.epoch_sum.add_(detached)
        self.epoch_count.add_(1)
        logs.update({f"R_{n}": v for n, v in zip(names, detached.unbind())})
        return ObjectiveOutput(torch.dot(strengths, values), logs)

    # -- strength tuning --------------------------------------------------------------------
    @torch.no_grad()
    def on_train_epoch_end(self, task: object = None) -> None:
        """Record the epoch mean of each ``R_g`` (summed over DDP ranks) and adjust strengths."""
        sums, count = self.epoch_sum, self.epoch_count
        distributed = dist.is_available() and dist.is_initialized()
        if distributed:
            sums, count = sums.clone(), count.clone()
            dist.all_reduce(sums)
            dist.all_reduce(count)
        steps = float(count)
        if steps > 0:
            self.history.copy_(torch.roll(self.history, -1, dims=0))
            self.history[-1] = sums / steps
        self.epoch_sum.zero_()
        self.epoch_count.zero_()
        if steps == 0:
            return
        self.epochs_seen.add_(1)  # in place: no nn.Module.__setattr__
        epoch = int(self.epochs_seen)
        due = (self.schedule == "oneshot" and epoch == self.adjust_at) or (
            self.schedule == "continuous" and epoch >= self.adjust_at
        )
        if due:
            self._adjust()
        if distributed:
            dist.broadcast(self.strengths, src=0)

    def target_strengths(self) -> Tensor:
        """``lambda0_g (R_min / R_g)^p`` from the windowed minima (zeros stay zero)."""
        best = self.history.min(dim=0).values
        active = self.initial_strengths > 0
        if not bool(torch.isfinite(best[active]).all()):
            return self.strengths.clone()
        r_min = best[active].min()
        ratio = (r_min / best.clamp_min(1e-300)).clamp(max=1.0)
        ratio = torch.where(best > 0, ratio, torch.ones_like(ratio))
        return torch.where(active, self.initial_strengths * ratio**self.exponent, 0.0 * best)

    def _adjust(self) -> None:
        target = self.target_strengths()
        if self.schedule == "oneshot":
            # the paper's update lambda <- lambda (R_min/R)^p applied to the current strengths
            factor = torch.where(
                self.initial_strengths > 0, target / self.initial_strengths.clamp_min(1e-300), 0.0
            )
            self.strengths.mul_(factor)
        else:
            active = self.strengths > 0
            log_new = (1 - self.rate) * self.strengths.clamp_min(1e-300).log() + self.rate * (
                target.clamp_min(1e-300).log()
            )
            self.strengths.copy_(torch.where(active, log_new.exp(), self.strengths))
        self.adjustments += 1

    def extra_repr(self) -> str:
        return (
            f"groups={self.group_names}, form={self.form}, schedule={self.schedule}, "
            f"adjust_at={self.adjust_at}, exponent={self.exponent}, window={self.window}"
            + (", normalize=True" if self.normalize else "")
        )


class ResidualPathwayPrior(Objective):
    """L2 priors of Residual Pathway Priors (Finzi, Benton & Wilson, NeurIPS 2021):
    ``equiv_wd ||V||^2 + basic_wd ||U||^2`` over layers ``W = P V + U`` (``mode="rpp"``).

    Args:
        equiv_wd: prior weight on the equivariant path (RPP default 1e-5).
        basic_wd: prior weight on the free path (RPP default 1).
        weight: factor applied by the task.
    """

    def __init__(self, equiv_wd: float = 1e-5, basic_wd: float = 1.0, weight: float = 1.0) -> None:
        super().__init__(weight=weight, name="rpp_prior")
        self.equiv_wd, self.basic_wd = equiv_wd, basic_wd

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        equiv, basic = None, None
        for layer in _rep_linears(ctx.network):
            if getattr(layer, "weight_free", None) is None:
                continue
            e = layer.weight.square().sum() + layer.bias.square().sum()
            b = layer.weight_free.square().sum() + layer.bias_free.square().sum()
            equiv = e if equiv is None else equiv + e
            basic = b if basic is None else basic + b
        if equiv is None:
            raise TypeError("ResidualPathwayPrior needs a network with mode='rpp' layers")
        loss = self.equiv_wd * equiv + self.basic_wd * basic
        return ObjectiveOutput(loss, {"equiv_sq": equiv.detach(), "basic_sq": basic.detach()})
