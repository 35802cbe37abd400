"""Metropolis-Hastings sampling of transformations in proportion to the loss they cause.

Hounie, Chamon & Ribeiro ("Automatic Data Augmentation via Invariance-Constrained Learning",
ICML 2023, Sec. 4) need samples from the worst-case-like distribution of transformations

    lambda_c(g | x, y)  proportional to  loss(f(g x), y)^(1/T)

(``T = 1`` in the paper). Each example runs its own independence chain: the proposal ``q`` is the
space's uniform law (uniform operation and level, or the group's sampler), independent of the
current state, so ``q`` cancels and a proposal ``g'`` replaces the state ``g`` with probability

    min(1, (loss(g') / loss(g))^(1/T)),

and the chain's stationary law is ``lambda_c``. The chain starts from a proposal; a chain of
length ``L`` (the paper uses 2) evaluates ``L`` proposals, each as one batched forward pass
without gradient, and keeps its last state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geozoo.augment.operations import check_images
from geozoo.augment.spaces import AugmentationSpace
from geozoo.nn.batchnorm import batchnorm_statistics_kept

__all__ = [
    "ChainResult",
    "MetropolisHastingsAugmenter",
    "acceptance_probability",
    "metropolis_hastings",
    "per_example_cross_entropy",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


def per_example_cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of each example, shape ``(N,)``."""
    return F.cross_entropy(outputs.float(), targets, reduction="none")


def acceptance_probability(current: Tensor, proposed: Tensor, temperature: float = 1.0) -> Tensor:
    """``min(1, (proposed / current)^(1/T))`` elementwise, for non-negative losses (a zero
    current loss accepts any proposal)."""
    tiny = torch.finfo(torch.float32).tiny
    log_ratio = (proposed.clamp_min(tiny).log() - current.clamp_min(tiny).log()) / temperature
    return log_ratio.clamp(max=0.0).exp()


@dataclass
class ChainResult:
    """The last states of a batch of chains.

    Attributes:
        params: the transformations ``(N, P)``.
        losses: their losses ``(N,)`` (as evaluated in the chain, without gradient).
        accepted: how many proposals each chain accepted ``(N,)``.
        steps: proposals after the initial state (``chain_length - 1``).
        payload: what the loss function returned with each kept state (e.g. the transformed
            images), or ``None``.
    """

    params: Tensor
    losses: Tensor
    accepted: Tensor
    steps: int
    payload: Tensor | None = None

    @property
    def acceptance_rate(self) -> float:
        """Fraction of accepted proposals (``nan`` for chains of length 1)."""
        if self.steps == 0:
            return float("nan")
        return float(self.accepted.float().mean()) / self.steps


def metropolis_hastings(
    propose: Callable[[int], Tensor],
    loss: Callable[[Tensor], Tensor | tuple[Tensor, Tensor]],
    num: int,
    chain_length: int = 2,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> ChainResult:
    """Run ``num`` independence chains targeting ``loss(g)^(1/T)``.

    Args:
        propose: ``num -> (num, P)`` independent draws from the proposal law.
        loss: ``(num, P) -> (num,)`` non-negative losses of transformations, one per chain, or
            ``(losses, payload)`` with a payload ``(num, ...)`` kept along with the states.
        num: number of chains.
        chain_length: proposals evaluated per chain (the first is the initial state).
        temperature: ``T``.
        generator: source of the acceptance draws (and of nothing else).
    """
    _check_chain(chain_length, temperature)
    state = propose(num)
    value, payload = _scored(loss(state))
    accepted = torch.zeros(num, dtype=torch.long, device=value.device)
    for _ in range(chain_length - 1):
        proposal = propose(num)
        proposed, proposed_payload = _scored(loss(proposal))
        u = torch.rand(num, generator=generator).to(value.device)
        accept = u < acceptance_probability(value, proposed, temperature)
        state = torch.where(_column(accept, state), proposal, state)
        value = torch.where(accept, proposed, value)
        if payload is not None:
            payload = torch.where(_column(accept, payload), proposed_payload, payload)
        accepted += accept.long()
    return ChainResult(state, value, accepted, chain_length - 1, payload)


def _scored(output: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor | None]:
    return output if isinstance(output, tuple) else (output, None)


def _column(mask: Tensor, like: Tensor) -> Tensor:
    """``mask`` (N,) shaped to broadcast over ``like`` (N, ...)."""
    return mask.to(like.device).reshape(-1, *([1] * (like.dim() - 1)))


def _check_chain(chain_length: int, temperature: float) -> None:
    if isinstance(chain_length, bool) or not isinstance(chain_length, int) or chain_length < 1:
        raise ValueError(f"chain_length must be a positive integer, got {chain_length!r}")
    if (
        not isinstance(temperature, int | float)
        or not temperature > 0
        or temperature == float("inf")
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


class MetropolisHastingsAugmenter:
    """Per-example Metropolis-Hastings chains over an augmentation space (Hounie et al. 2023).

    Args:
        space: the :class:`~geozoo.augment.spaces.AugmentationSpace` (proposals are its uniform
            law, or the group's sampler).
        chain_length: proposals per chain (the paper: 2, one accept/reject step); 1 is uniform
            sampling with its loss evaluated.
        temperature: ``T`` in the target ``loss^(1/T)``; large ``T`` tends to uniform sampling.
        loss_fn: per-example loss ``(outputs, targets) -> (N,)`` (default: cross-entropy).

    Calling it scores ``chain_length`` proposals per image, each batch in one forward pass of
    ``network`` without gradient, in the network's current mode, with batch-norm running
    statistics left as they were.
    """

    def __init__(
        self,
        space: AugmentationSpace,
        chain_length: int = 2,
        temperature: float = 1.0,
        loss_fn: LossFn = per_example_cross_entropy,
    ) -> None:
        if not isinstance(space, AugmentationSpace):
            raise TypeError(f"space must be an AugmentationSpace, got {type(space).__name__}")
        _check_chain(chain_length, temperature)
        self.space = space
        self.chain_length = chain_length
        self.temperature = float(temperature)
        self.loss_fn = loss_fn

    def __repr__(self) -> str:
        return (
            f"MetropolisHastingsAugmenter({self.space!r}, chain_length={self.chain_length}, "
            f"temperature={self.temperature})"
        )

    @torch.no_grad()
    def __call__(
        self,
        network: nn.Module,
        images: Tensor,
        targets: Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, ChainResult]:
        """The augmented batch ``(N, C, H, W)`` (each image moved by its chain's last state) and
        the chains' :class:`ChainResult`."""
        check_images(images)
        if targets.shape[0] != images.shape[0]:
            raise ValueError(
                f"expected one target per image ({images.shape[0]}), got {tuple(targets.shape)}"
            )

        def propose(num: int) -> Tensor:
            return self.space.sample(num, generator, images.device)

        def loss(params: Tensor) -> tuple[Tensor, Tensor]:
            moved = self.space.apply(images, params)
            return self.loss_fn(network(moved), targets).float(), moved

        with batchnorm_statistics_kept(network):
            result = metropolis_hastings(
                propose, loss, images.shape[0], self.chain_length, self.temperature, generator
            )
        return result.payload, result  # type: ignore[return-value]
