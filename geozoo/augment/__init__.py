"""geozoo.augment: batched image operations, whole-group actions and the Metropolis-Hastings
sampler of invariance-constrained augmentation (Hounie, Chamon & Ribeiro, ICML 2023); the
constraint and its dual variable are :class:`geozoo.objectives.InvarianceConstrained`."""

from geozoo.augment.group_actions import GroupAction, GroupSpace
from geozoo.augment.mcmc import (
    ChainResult,
    MetropolisHastingsAugmenter,
    acceptance_probability,
    metropolis_hastings,
)
from geozoo.augment.operations import OPERATIONS, Operation, apply_operations, get_operation
from geozoo.augment.spaces import AugmentationSpace, OperationSpace, augmentation_space

__all__ = [
    "OPERATIONS",
    "AugmentationSpace",
    "ChainResult",
    "GroupAction",
    "GroupSpace",
    "MetropolisHastingsAugmenter",
    "Operation",
    "OperationSpace",
    "acceptance_probability",
    "apply_operations",
    "augmentation_space",
    "get_operation",
    "metropolis_hastings",
]
