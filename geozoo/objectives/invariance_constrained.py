"""Invariance-constrained learning: automatic data augmentation as a constraint with a dual
variable (Hounie, Chamon & Ribeiro, "Automatic Data Augmentation via Invariance-Constrained
Learning", ICML 2023, arXiv 2209.15031).

The constrained learning problem (their Sec. 3, with ``lambda_c`` the loss-weighted
distribution over transformations ``g``)

    min_theta  E loss(f(x), y)   s.t.   E_{(x, y)} E_{g ~ lambda_c(. | x, y)} loss(f(g x), y) <= eps

is solved through its Lagrangian ``E loss(f(x), y) + mu (E loss(f(g x), y) - eps)`` by a primal
step on ``theta`` and a projected dual ascent step on ``mu`` after every batch:

    mu <- max(0, mu + eta (loss(f(g x), y) - eps)).

:class:`InvarianceConstrained` contributes ``mu * CE(f(g x), y)`` to the task's loss (the clean
term is the task's own :class:`~geozoo.objectives.CrossEntropy`), with ``g`` drawn per example by
:class:`~geozoo.augment.MetropolisHastingsAugmenter`. :class:`UniformAugmentation` is the baseline
over the same space: a fixed-weight ``CE(f(g x), y)`` with ``g`` uniform, so the arms of an
experiment differ only in their YAML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from geozoo.augment.mcmc import MetropolisHastingsAugmenter
from geozoo.augment.operations import OPERATIONS
from geozoo.augment.spaces import AugmentationSpace, augmentation_space
from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext

__all__ = ["InvarianceConstrained", "UniformAugmentation"]


class AugmentationObjective(Objective):
    """Shared part of the augmentation objectives: the space and the visit histogram.

    Args:
        operations: names from :data:`geozoo.augment.OPERATIONS` (the space of operations at
            ``levels`` levels), or
        group: a :func:`geozoo.groups.get_group` name acting on the plane (``"so2"``, ``"gl2"``
            ...), whose sampler proposes transformations (exactly one of the two; default: every
            operation that applies to any number of channels).
        levels: strength levels of the operations.
        maximum: strength at magnitude 1 per operation, overriding the defaults.
        translation: with ``group``, uniform translations in ``[-t, t]^2`` (half-sides).
        weight, name: as for every :class:`~geozoo.objectives.Objective`.

    The buffer ``visits`` counts, per histogram bin of the space (operation x level, or rotation
    angle x scale for a group), the transformations drawn on this process in training (for
    :class:`InvarianceConstrained`, the chains' last states, back-propagated with weight
    ``mu``); it is checkpointed with the model.
    """

    def __init__(
        self,
        operations: Sequence[str] | None = None,
        group: str | None = None,
        levels: int = 30,
        maximum: Mapping[str, float] | None = None,
        translation: float = 0.0,
        weight: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__(weight=weight, name=name)
        if operations is None and group is None:
            operations = [k for k, op in OPERATIONS.items() if not op.rgb_only]
        self.space: AugmentationSpace = augmentation_space(
            operations, group, levels, maximum, translation
        )
        self.register_buffer("visits", torch.zeros(self.space.bin_shape, dtype=torch.float64))

    @staticmethod
    def _inputs(ctx: StepContext) -> tuple[Tensor, Tensor]:
        if ctx.targets is None:
            raise ValueError("augmentation objectives need class targets, but the batch has none")
        return ctx.inputs, ctx.targets

    @torch.no_grad()
    def _record(self, params: Tensor) -> None:
        counts = torch.bincount(self.space.bins(params).cpu(), minlength=self.space.num_bins)
        self.visits += counts.reshape(self.space.bin_shape).to(self.visits)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, space={self.space!r}"


class UniformAugmentation(AugmentationObjective):
    """``CE(f(g x), y)`` with ``g`` drawn uniformly from the space, one per example: plain random
    augmentation (TrivialAugment's sampler, Mueller & Hutter, ICCV 2021) as an objective, added
    with a fixed weight to the task's clean loss. Arguments as for
    :class:`AugmentationObjective` (default name ``uniform_augmentation``); zero outside
    training."""

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        if ctx.stage != "train":
            return ObjectiveOutput(ctx.outputs.new_zeros((), dtype=torch.float32), {})
        images, targets = self._inputs(ctx)
        params = self.space.sample(images.shape[0], device=images.device)
        self._record(params)
        loss = F.cross_entropy(ctx.network(self.space.apply(images, params)).float(), targets)
        return ObjectiveOutput(loss, {})


class InvarianceConstrained(AugmentationObjective):
    """``mu * CE(f(g x), y)`` with ``g ~ lambda_c`` by Metropolis-Hastings and ``mu`` the dual
    variable of the invariance constraint (Hounie, Chamon & Ribeiro, ICML 2023, Alg. 1).

    Args:
        epsilon: the constraint level ``eps`` on the augmented loss (the paper's margin).
        dual_lr: the dual step size ``eta``.
        dual_init: ``mu`` at the start (the paper: 0, so nothing is augmented until the
            augmented loss exceeds ``eps``).
        chain_length: proposals per Metropolis-Hastings chain (the paper: 2); 1 samples
            uniformly (the paper's "uniform + constraint" ablation).
        temperature: ``T`` of the target ``loss^(1/T)`` (the paper: 1).
        **space_and_weight: ``operations``, ``group``, ``levels``, ``maximum``,
            ``translation``, ``weight`` and ``name`` (default ``invariance_constrained``), as for
            :class:`AugmentationObjective`.

    After every training step ``mu <- max(0, mu + eta (CE_aug - eps))``, with ``CE_aug`` the
    batch mean averaged over DDP ranks, so ``mu`` (the buffer ``dual``, checkpointed) is the
    same on every rank. While ``mu = 0`` the augmented batch is not back-propagated: its loss
    is the one the chains already computed. Logged: ``dual`` (the ``mu`` of this step),
    ``augmented_ce``, ``slack`` (``CE_aug - eps``) and ``acceptance`` (fraction of accepted
    proposals).
    """

    def __init__(
        self,
        epsilon: float = 0.5,
        dual_lr: float = 0.05,
        dual_init: float = 0.0,
        chain_length: int = 2,
        temperature: float = 1.0,
        **space_and_weight: Any,
    ) -> None:
        super().__init__(**space_and_weight)
        for label, value in (("epsilon", epsilon), ("dual_lr", dual_lr), ("dual_init", dual_init)):
            if not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
        self.epsilon, self.dual_lr = float(epsilon), float(dual_lr)
        self.sampler = MetropolisHastingsAugmenter(self.space, chain_length, temperature)
        self.register_buffer("dual", torch.tensor(float(dual_init), dtype=torch.float64))

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        mu = self.dual.detach().clone().float()
        if ctx.stage != "train":
            return ObjectiveOutput(ctx.outputs.new_zeros((), dtype=torch.float32), {"dual": mu})
        images, targets = self._inputs(ctx)
        augmented, chain = self.sampler(ctx.network, images, targets)
        self._record(chain.params)
        if float(mu) > 0:
            augmented_ce = F.cross_entropy(ctx.network(augmented).float(), targets)
            loss = mu * augmented_ce
            value = augmented_ce.detach()
        else:  # same on every rank (mu is synchronised)
            value = chain.losses.mean()
            loss = ctx.outputs.new_zeros((), dtype=torch.float32)
        value = self.update_dual(value)
        logs = {"dual": mu, "augmented_ce": value, "slack": value - self.epsilon}
        if chain.steps:
            logs["acceptance"] = torch.tensor(chain.acceptance_rate)
        return ObjectiveOutput(loss, logs)

    @torch.no_grad()
    def update_dual(self, augmented_ce: Tensor) -> Tensor:
        """``mu <- max(0, mu + eta (CE_aug - eps))`` with ``CE_aug`` averaged over DDP ranks;
        returns that average."""
        value = augmented_ce.detach().to(self.dual).clone()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(value)
            value /= dist.get_world_size()
        self.dual.copy_((self.dual + self.dual_lr * (value - self.epsilon)).clamp_min(0.0))
        return value.float()

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, epsilon={self.epsilon}, dual_lr={self.dual_lr}, "
            f"chain_length={self.sampler.chain_length}, temperature={self.sampler.temperature}"
        )
