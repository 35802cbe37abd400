"""The one interface of geozoo's groups: a group is a value, a group of real ``n x n`` matrices
acting linearly on ``R^n``.

Every group a layer, network, objective or data set takes is a :class:`MatrixGroup`: the
polar-decomposed Lie groups of :mod:`geozoo.groups.matrix` (SO(n), GL+(n), SL(n), ...), the
orthogonal and finite groups of :mod:`geozoo.groups.orthogonal` (O(n), C_N, D_N, S_n, planar
subgroups of R^3). Each knows

* its canonical ``name`` (the string :func:`geozoo.groups.get_group` maps back to it),
* the size ``n`` of its matrices and its Lie-group dimension ``dim``,
* a basis of its Lie algebra and a list of discrete generators, which together generate it
  (what the equivariant projectors of :mod:`geozoo.groups.projection` need, as in EMLP: Finzi,
  Welling & Wilson, ICML 2021),
* a sampler: the Haar measure where it is a probability (compact groups), otherwise the law
  the group documents (the positive factors of :mod:`geozoo.groups.matrix`),
* its ``order`` when it is finite.

Several uses of one group are the same value: ``SO(2)`` is the rotation factor of the affine
layers, the continuous group of escnn's steerable fields (:func:`geozoo.nn.steerable.
steerable_gspace`) and, embedded as rotations about an axis, the 3 x 3 group ``so2_z``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["MatrixGroup"]


class MatrixGroup:
    """Base class of group values (subclasses fill in the structure and the sampler).

    Values compare equal when they have the same type and the same :meth:`params` (including
    sampler parameters), and are hashable, so they can key caches.
    """

    n: int

    # ----------------------------------------------------------------- identity of the value
    @property
    def name(self) -> str:
        """Canonical name; ``get_group(group.name)`` rebuilds the group with default sampler
        parameters."""
        raise NotImplementedError

    def params(self) -> tuple:
        """The constructor arguments that identify this value."""
        return (self.n,)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.params() == self.params()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.params()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(p) for p in self.params())})"

    # ----------------------------------------------------------------- structure
    @property
    def lie_generators(self) -> Tensor:
        """``(dim, n, n)`` float64 basis of the Lie algebra (empty for discrete groups)."""
        return torch.zeros(0, self.n, self.n, dtype=torch.float64)

    @property
    def discrete_generators(self) -> Tensor:
        """``(m, n, n)`` float64 matrices that, with the identity component, generate the
        group."""
        return torch.zeros(0, self.n, self.n, dtype=torch.float64)

    @property
    def dim(self) -> int:
        """Dimension of the group as a manifold (0 for finite groups)."""
        return int(self.lie_generators.shape[0])

    @property
    def order(self) -> int | None:
        """Number of elements of a finite group, ``None`` for a continuous one."""
        return None

    # ----------------------------------------------------------------- group law
    def identity(self, *batch: int, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
        """The identity matrix, broadcast to ``(*batch, n, n)``."""
        eye = torch.eye(self.n, dtype=dtype, device=device)
        return eye.expand(*batch, self.n, self.n).clone()

    def compose(self, a: Tensor, b: Tensor) -> Tensor:
        """The product ``a b``."""
        return a @ b

    def inverse(self, g: Tensor) -> Tensor:
        """``g^{-1}``."""
        return torch.linalg.inv(g)

    def act(self, g: Tensor, x: Tensor) -> Tensor:
        """The linear action ``g x`` on points ``x`` of shape ``(..., n)`` (broadcast)."""
        return (g @ x.unsqueeze(-1)).squeeze(-1)

    # ----------------------------------------------------------------- sampling
    def sample(
        self,
        num: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``num`` random elements as ``(num, n, n)`` matrices (Haar for compact groups)."""
        raise NotImplementedError
