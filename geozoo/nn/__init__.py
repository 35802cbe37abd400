"""Layers a user imports into their own architectures."""

from geozoo.nn.affine_conv import (
    AffineGroupConv2d,
    AffineLiftingConv2d,
    AffineSampler,
    GroupBatchNorm,
    GroupLayerNorm,
    GroupPool,
)
from geozoo.nn.attention import ReducedSelfAttention, ReducedTransformerBlock
from geozoo.nn.canonicalize import MomentCanonicalization
from geozoo.nn.checks import check_images
from geozoo.nn.riemannian import MahalanobisDistance, OrthogonalLinear
from geozoo.nn.steerable import FiberPool, SteerableConvBlock

__all__ = [
    "AffineGroupConv2d",
    "AffineLiftingConv2d",
    "AffineSampler",
    "FiberPool",
    "GroupBatchNorm",
    "GroupLayerNorm",
    "GroupPool",
    "MahalanobisDistance",
    "MomentCanonicalization",
    "OrthogonalLinear",
    "ReducedSelfAttention",
    "ReducedTransformerBlock",
    "SteerableConvBlock",
    "check_images",
]
