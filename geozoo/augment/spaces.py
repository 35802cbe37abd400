"""Augmentation spaces: what a sampler draws transformations from and how they act on images.

A space draws transformations as a parameter tensor ``(N, P)`` (one row per example), applies
them to an image batch, and sorts them into bins for the statistics of where a sampler goes. Two
spaces come with geozoo:

* :class:`OperationSpace`: a list of :data:`~geozoo.augment.operations.OPERATIONS` with discrete
  levels; a uniform draw is "uniform operation, uniform level" (and a uniform sign), the proposal
  of Hounie, Chamon & Ribeiro (ICML 2023, Sec. 4) and TrivialAugment's sampler (Mueller & Hutter,
  ICCV 2021);
* :class:`~geozoo.augment.group_actions.GroupSpace`: elements of a Lie group of
  :mod:`geozoo.groups` from the group's own sampler, acting by affine warps.

:func:`augmentation_space` builds either from YAML-friendly arguments.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from geozoo.augment.operations import (
    OPERATIONS,
    Operation,
    apply_operations,
    check_images,
    get_operation,
)

__all__ = ["AugmentationSpace", "OperationSpace", "augmentation_space"]


class AugmentationSpace(ABC):
    """A set of transformations with a uniform (or the group's) proposal law.

    Attributes:
        num_params: columns of the parameter tensor of one transformation.
        bin_shape: the shape of the visit histogram (:meth:`bins` indexes it flattened).
    """

    num_params: int
    bin_shape: tuple[int, ...]

    @abstractmethod
    def sample(
        self, num: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> Tensor:
        """``num`` independent proposals as a float tensor ``(num, num_params)``."""

    @abstractmethod
    def apply(self, images: Tensor, params: Tensor) -> Tensor:
        """Transform image ``i`` of ``(N, C, H, W)`` by ``params[i]``."""

    @abstractmethod
    def bins(self, params: Tensor) -> Tensor:
        """The flattened histogram bin ``(N,)`` of each transformation."""

    def check_params(self, images: Tensor, params: Tensor) -> None:
        check_images(images)
        if params.shape != (images.shape[0], self.num_params):
            raise ValueError(
                f"expected parameters of shape ({images.shape[0]}, {self.num_params}) for "
                f"{images.shape[0]} images, got {tuple(params.shape)}"
            )

    @property
    def num_bins(self) -> int:
        return int(torch.tensor(self.bin_shape).prod())


def _uniform_int(high: int, num: int, generator: torch.Generator | None) -> Tensor:
    return torch.randint(high, (num,), generator=generator)


class OperationSpace(AugmentationSpace):
    """Operations of :data:`~geozoo.augment.operations.OPERATIONS` at ``levels`` discrete levels.

    A transformation is ``(operation index, magnitude, sign)``; :meth:`sample` draws the
    operation uniformly, the level ``k`` uniformly from ``1 .. levels`` (magnitude ``k /
    levels``; 0, the identity, is never proposed, as in the paper's code) and the sign uniformly.

    Args:
        operations: operation names (or :class:`Operation` values).
        levels: number of strength levels.
        maximum: strength at magnitude 1 per operation name, overriding the defaults.
    """

    num_params = 3

    def __init__(
        self,
        operations: Sequence[str | Operation] = tuple(OPERATIONS),
        levels: int = 30,
        maximum: Mapping[str, float] | None = None,
    ) -> None:
        if isinstance(operations, str):
            raise TypeError(f"operations must be a list of names, got the string {operations!r}")
        if not operations:
            raise ValueError("an OperationSpace needs at least one operation")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be a positive integer, got {levels!r}")
        maximum = dict(maximum or {})
        ops = [get_operation(op) for op in operations]
        names = [op.name for op in ops]
        if len(set(names)) != len(names):
            raise ValueError(f"operations must be distinct, got {names}")
        unused = sorted(set(maximum) - set(names))
        if unused:
            raise ValueError(f"maximum names operations {unused} that are not in {names}")
        self.operations = [
            op.with_maximum(maximum[op.name]) if op.name in maximum else op for op in ops
        ]
        self.levels = levels
        self.bin_shape = (len(self.operations), levels)

    @property
    def names(self) -> list[str]:
        return [op.name for op in self.operations]

    def __repr__(self) -> str:
        return f"OperationSpace({self.names}, levels={self.levels})"

    def sample(
        self, num: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> Tensor:
        index = _uniform_int(len(self.operations), num, generator)
        level = _uniform_int(self.levels, num, generator) + 1
        sign = 2 * _uniform_int(2, num, generator) - 1
        params = torch.stack([index.float(), level.float() / self.levels, sign.float()], dim=1)
        return params.to(device)

    def apply(self, images: Tensor, params: Tensor) -> Tensor:
        self.check_params(images, params)
        params = params.to(images.device)
        return apply_operations(
            images, self.operations, params[:, 0].long(), params[:, 1], params[:, 2]
        )

    def bins(self, params: Tensor) -> Tensor:
        level = (params[:, 1] * self.levels).round().long().clamp(1, self.levels) - 1
        return params[:, 0].long() * self.levels + level


def augmentation_space(
    operations: Sequence[str] | None = None,
    group: str | None = None,
    levels: int = 30,
    maximum: Mapping[str, float] | None = None,
    translation: float = 0.0,
) -> AugmentationSpace:
    """An :class:`OperationSpace` of ``operations`` or a
    :class:`~geozoo.augment.group_actions.GroupSpace` of ``group`` (exactly one of the two)."""
    if (operations is None) == (group is None):
        raise ValueError(
            "give either operations (names from geozoo.augment.OPERATIONS) or group (a "
            f"geozoo.groups name such as 'gl2'), got operations={operations!r}, group={group!r}"
        )
    if group is not None:
        from geozoo.augment.group_actions import GroupSpace  # it builds on this module

        if maximum:
            raise ValueError("maximum applies to operations; a group space uses its sampler")
        return GroupSpace(group, translation=translation)
    if translation:
        raise ValueError("translation applies to group spaces; use translate_x/translate_y")
    return OperationSpace(operations, levels=levels, maximum=maximum)  # type: ignore[arg-type]
