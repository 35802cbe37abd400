"""How a candidate symmetry acts on a network's inputs and outputs, for the sample-form
equivariance regularizer ``E_g ||f(g . x) - g . f(x)||^2`` (Kim et al., ICML 2023).

The sample form needs no particular architecture, only the two actions of each group element.
Three kinds of data are covered, each by one :class:`SampleAction`:

* :class:`RepresentationAction`: flat features ``(N, D)`` transformed by representations
  ``rho_in(g)``, ``rho_out(g)`` of a matrix group (:mod:`geozoo.groups.representations`), one
  random ``g`` per example; the default for networks exposing ``rep_in``/``rep_out``
  (:class:`geozoo.nets.EquivariantMLP`, :class:`geozoo.nets.PlainMLP`);
* :class:`PointCloudAction`: point clouds ``(N, K, d)`` moved by ``x -> x g^T`` per cloud, with
  invariant outputs (class logits), the same action on point-like outputs, or a representation;
* :class:`TransformAction`: any finite set of :mod:`geozoo.testing` transforms, one drawn per
  Monte-Carlo sample for the whole batch; :func:`image_action` takes image groups by their
  :func:`geozoo.groups.get_group` names (``"c4"``, ``"d4"``, ``"so2"``, ...) plus ``"flip"``, so
  a CNN is regularized from YAML with ``groups: [c4, flip], inputs: images``.

:func:`sample_action` turns the ``(group, inputs, rep_in, rep_out)`` arguments of the
regularizers into one of these, checking them when the regularizer is built.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from geozoo.groups import SO, Cyclic, MatrixGroup, get_group
from geozoo.groups.representations import Rep
from geozoo.testing import Transform, d4_elements, flip, rotate, transform_pairs

__all__ = [
    "IMAGE_GROUPS",
    "INPUT_KINDS",
    "ImageGroupAction",
    "PointCloudAction",
    "RandomRotationAction",
    "RepresentationAction",
    "SampleAction",
    "TransformAction",
    "image_action",
    "image_elements",
    "sample_action",
]

Action = Callable[[Tensor], Tensor]

#: Input kinds a group given by name can act on.
INPUT_KINDS = ("vectors", "points", "images")


def _identity(y: Tensor) -> Tensor:
    return y


class SampleAction(ABC):
    """One candidate symmetry of the sample form: draws group elements and acts with them.

    Attributes:
        name: the key of the symmetry in logs (``R_<name>``, ``strength_<name>``).
    """

    name: str

    def check_network(self, network: nn.Module) -> None:
        """Raise ``TypeError`` if this action cannot be applied to ``network`` (default: no
        requirement)."""
        return None

    @abstractmethod
    def draw(
        self, inputs: Tensor, network: nn.Module, generator: torch.Generator | None = None
    ) -> tuple[Action, Action]:
        """One Monte-Carlo draw: the maps ``x -> g . x`` on the input batch and ``y -> g . y`` on
        the outputs (per-example ``g`` where the action allows it)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _as_rep(rep: Rep | Sequence[int] | None, label: str) -> Rep | None:
    """A representation, or multiplicities per tensor rank as in :class:`EquivariantMLP`."""
    if rep is None or isinstance(rep, Rep):
        return rep
    if isinstance(rep, Sequence) and all(isinstance(m, int) for m in rep):
        return Rep.from_multiplicities(rep)
    raise TypeError(f"{label} must be a Rep or multiplicities per rank such as [5, 5], got {rep!r}")


class RepresentationAction(SampleAction):
    """A matrix group acting on flat features by representations (one ``g`` per example).

    Args:
        group: group name (``"o3"``, ``"o2_z"``, ...) or :class:`MatrixGroup`.
        rep_in, rep_out: representations of inputs and outputs (or multiplicities per rank);
            both ``None`` to take the network's ``rep_in``/``rep_out`` attributes.
    """

    def __init__(
        self,
        group: str | MatrixGroup,
        rep_in: Rep | Sequence[int] | None = None,
        rep_out: Rep | Sequence[int] | None = None,
    ) -> None:
        self.group = get_group(group)
        self.name = self.group.name
        self.rep_in, self.rep_out = _as_rep(rep_in, "rep_in"), _as_rep(rep_out, "rep_out")
        if (self.rep_in is None) != (self.rep_out is None):
            raise ValueError(
                "give both rep_in and rep_out, or neither to use the network's own attributes"
            )

    def representations(self, network: nn.Module) -> tuple[Rep, Rep]:
        if self.rep_in is not None and self.rep_out is not None:
            return self.rep_in, self.rep_out
        rep_in, rep_out = getattr(network, "rep_in", None), getattr(network, "rep_out", None)
        if not isinstance(rep_in, Rep) or not isinstance(rep_out, Rep):
            raise TypeError(
                f"the sample form on {type(network).__name__} needs to know how {self.name} acts:"
                " pass rep_in/rep_out for flat features, inputs='points' for point clouds, or "
                "inputs='images' with image groups such as ['c4', 'flip'] for images (or a "
                "network with rep_in and rep_out attributes, e.g. geozoo.nets.EquivariantMLP)"
            )
        return rep_in, rep_out

    def check_network(self, network: nn.Module) -> None:
        self.representations(network)
        # reps read from the network are over its R^dim (EquivariantMLP, PlainMLP)
        dim = getattr(network, "dim", None) if self.rep_in is None else None
        if isinstance(dim, int) and dim != self.group.n:
            raise ValueError(
                f"{self.name} acts on R^{self.group.n}, but {type(network).__name__}'s "
                f"representations are over R^{dim}"
            )

    def draw(
        self, inputs: Tensor, network: nn.Module, generator: torch.Generator | None = None
    ) -> tuple[Action, Action]:
        rep_in, rep_out = self.representations(network)
        g = self.group.sample(inputs.shape[0], generator=generator, dtype=inputs.dtype)
        g = g.to(inputs.device)
        return (lambda x: rep_in.act(g, x)), (lambda y: rep_out.act(g, y))


class PointCloudAction(SampleAction):
    """A matrix group moving point clouds ``(N, K, d)`` by ``x -> x g^T``, one ``g`` per cloud.

    Args:
        group: group name or :class:`MatrixGroup` acting on ``R^d``.
        output: ``"invariant"`` (class logits, energies), ``"points"`` (outputs ``(N, ..., d)``
            move like the input) or a representation of flat outputs ``(N, D)``.
    """

    def __init__(
        self, group: str | MatrixGroup, output: str | Rep | Sequence[int] = "invariant"
    ) -> None:
        self.group = get_group(group)
        self.name = self.group.name
        if isinstance(output, str) and output not in ("invariant", "points"):
            raise ValueError(f"output must be 'invariant', 'points' or a Rep, got {output!r}")
        self.output = output if isinstance(output, str) else _as_rep(output, "output")

    def draw(
        self, inputs: Tensor, network: nn.Module, generator: torch.Generator | None = None
    ) -> tuple[Action, Action]:
        d = self.group.n  # the space it acts on (``dim`` is the Lie-group dimension)
        if inputs.dim() < 2 or inputs.shape[-1] != d:
            raise ValueError(
                f"{self.name} acts on points in R^{d}: expected inputs (N, K, {d}), got "
                f"{tuple(inputs.shape)}"
            )
        g = self.group.sample(inputs.shape[0], generator=generator, dtype=inputs.dtype)
        g = g.to(inputs.device)

        def move(x: Tensor) -> Tensor:  # (N, ..., d) @ g^T per example
            flat = x.reshape(x.shape[0], -1, d)
            return torch.bmm(flat, g.transpose(1, 2).to(x.dtype)).reshape(x.shape)

        if self.output == "invariant":
            return move, _identity
        if self.output == "points":
            return move, move
        rep = self.output
        return move, (lambda y: rep.act(g, y))


class TransformAction(SampleAction):
    """A finite set of :mod:`geozoo.testing` transforms; each draw picks one for the batch.

    Args:
        transform_in: the group elements acting on inputs (e.g. ``geozoo.testing.d4_elements()``).
        transform_out: the matching output actions, or ``None`` for invariant outputs.
        name: the key in logs.
    """

    def __init__(
        self,
        transform_in: Transform | Sequence[Transform],
        transform_out: Transform | Sequence[Transform] | None = None,
        name: str = "transforms",
    ) -> None:
        self.transform_in, self.transform_out = transform_pairs(transform_in, transform_out)
        self.name = name

    def draw(
        self, inputs: Tensor, network: nn.Module, generator: torch.Generator | None = None
    ) -> tuple[Action, Action]:
        index = int(torch.randint(len(self.transform_in), (), generator=generator))
        out = _identity if self.transform_out is None else self.transform_out[index]
        return self.transform_in[index], out


class RandomRotationAction(SampleAction):
    """Image rotations by a uniform angle in [0, 360) (:func:`geozoo.testing.rotate`, resampled,
    so only approximate near the border) with invariant outputs: the group SO(2) (``"so2"``)."""

    name, group = "so2", SO(2)

    def draw(
        self, inputs: Tensor, network: nn.Module, generator: torch.Generator | None = None
    ) -> tuple[Action, Action]:
        angle = 360.0 * float(torch.rand((), generator=generator))
        return rotate(angle), _identity


#: Image symmetries named here because the group vocabulary has no name for them: the single
#: mirrors (``"d1"`` is the group of ``flip_vertical``, the mirror about the x axis).
IMAGE_GROUPS = ("flip", "flip_vertical")

_EXPECTED = (
    "c2, c4, d1, d2, d4, flip, flip_vertical (exact on the pixel grid) or so2 (resampled "
    "rotations by any angle)"
)


def image_elements(group: str | MatrixGroup) -> list[Transform]:
    """The elements but the identity of a group acting exactly on the pixel grid, as
    :mod:`geozoo.testing` transforms: a subgroup of D4 named or given as for
    :func:`geozoo.groups.get_group` (``"c2"``, ``"c4"``, ``"d1"``, ``"d2"``, ``"d4"``), or
    ``"flip"`` / ``"flip_vertical"`` (one mirror)."""
    if group in ("flip", "flip_vertical"):
        return [flip("horizontal" if group == "flip" else "vertical")]
    try:
        value = get_group(group)
    except ValueError as error:
        raise ValueError(f"unknown image group {group!r}: expected {_EXPECTED}") from error
    if isinstance(value, Cyclic) and value.order > 1:
        # C_N and D_N (mirror about the x axis) are closed under y -> -y, so their matrices are
        # the same set in the y-down pixel coordinates of Transform.matrix
        elements = value.elements()
        chosen = [t for t in d4_elements() if (t.matrix - elements).abs().amax((1, 2)).min() < 1e-9]
        if len(chosen) == value.order - 1:
            return chosen
    raise ValueError(
        f"image group {group!r} does not act exactly on the pixel grid: expected {_EXPECTED}"
    )


class ImageGroupAction(SampleAction):
    """A group of :func:`image_elements` acting on images, with invariant outputs; each draw
    picks one element for the batch. Holds only the group, so it pickles (``ddp_spawn``).

    Attributes:
        group: the group value, ``None`` for the single mirrors ``"flip"``/``"flip_vertical"``.
    """

    def __init__(self, group: str | MatrixGroup) -> None:
        image_elements(group)  # checked now
        mirror = isinstance(group, str) and group in IMAGE_GROUPS
        self._spec = group
        self.group = None if mirror else get_group(group)
        self.name = group if mirror else self.group.name  # type: ignore[union-attr,assignment]

    def draw(
        self, inputs: Tensor, network: nn.Module, generator: torch.Generator | None = None
    ) -> tuple[Action, Action]:
        elements = image_elements(self._spec)
        index = int(torch.randint(len(elements), (), generator=generator))
        return elements[index], _identity


def image_action(group: str | MatrixGroup) -> SampleAction:
    """A group acting on images ``(N, C, H, W)`` with invariant outputs: one of
    :func:`image_elements` (exact on the pixel grid: ``"c2"``, ``"c4"``, ``"d1"``, ``"d2"``,
    ``"d4"``, ``"flip"``, ``"flip_vertical"``) or ``"so2"`` (uniform angles, resampled)."""
    if not (isinstance(group, str) and group in IMAGE_GROUPS):
        with contextlib.suppress(ValueError):
            if get_group(group) == SO(2):
                return RandomRotationAction()
    return ImageGroupAction(group)


def sample_action(
    group: str | MatrixGroup | SampleAction,
    inputs: str = "vectors",
    rep_in: Rep | Sequence[int] | None = None,
    rep_out: Rep | Sequence[int] | None = None,
) -> SampleAction:
    """The action of ``group`` on ``inputs`` (one of :data:`INPUT_KINDS`), checked now.

    A :class:`SampleAction` is returned as is. For ``"vectors"``, ``rep_in``/``rep_out`` (or the
    network's attributes) act on flat features; for ``"points"``, the group moves point clouds
    and ``rep_out`` (default: invariant outputs) acts on the outputs; for ``"images"``, ``group``
    is one of :func:`image_action`'s groups.
    """
    if isinstance(group, SampleAction):
        return group
    if inputs not in INPUT_KINDS:
        raise ValueError(f"inputs must be one of {INPUT_KINDS}, got {inputs!r}")
    if inputs == "images":
        if rep_in is not None or rep_out is not None:
            raise ValueError(
                "rep_in/rep_out act on flat features; image groups act by geozoo.testing "
                "transforms (pass a TransformAction for equivariant, non-invariant outputs)"
            )
        return image_action(group)
    if inputs == "points":
        if rep_in is not None:
            raise ValueError("inputs='points': the group moves the points; give rep_out only")
        return PointCloudAction(group, "invariant" if rep_out is None else rep_out)
    return RepresentationAction(group, rep_in, rep_out)
