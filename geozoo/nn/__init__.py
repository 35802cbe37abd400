"""Layers a user imports into their own architectures, and :class:`RiemannianAdam` for their
manifold parameters (loaded on first use: it imports geoopt)."""

from geozoo.nn.affine_conv import (
    AffineGroupConv2d,
    AffineLiftingConv2d,
    AffineSampler,
    GroupBatchNorm,
    GroupLayerNorm,
    GroupPool,
)
from geozoo.nn.attention import ReducedSelfAttention, ReducedTransformerBlock
from geozoo.nn.batchnorm import batchnorm_statistics_kept
from geozoo.nn.canonicalize import MomentCanonicalization
from geozoo.nn.checks import check_images
from geozoo.nn.margin_heads import AdaFaceHead, ArcFaceHead, CosFaceHead, MarginHead
from geozoo.nn.riemannian import MahalanobisDistance, OrthogonalLinear
from geozoo.nn.steerable import FiberPool, SteerableConvBlock

__all__ = [
    "AdaFaceHead",
    "AffineGroupConv2d",
    "AffineLiftingConv2d",
    "AffineSampler",
    "ArcFaceHead",
    "CosFaceHead",
    "FiberPool",
    "GroupBatchNorm",
    "GroupLayerNorm",
    "GroupPool",
    "MahalanobisDistance",
    "MarginHead",
    "MomentCanonicalization",
    "OrthogonalLinear",
    "ReducedSelfAttention",
    "ReducedTransformerBlock",
    "RiemannianAdam",
    "SteerableConvBlock",
    "batchnorm_statistics_kept",
    "check_images",
]


def __getattr__(name: str):
    # geoopt takes ~0.8 s to import: only the optimizer's first lookup pays for it
    if name == "RiemannianAdam":
        from geozoo.nn.optim import RiemannianAdam

        return RiemannianAdam
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # list the lazy optimizer too (tab completion, the CLI's "did you mean" suggestions)
    return sorted({*globals(), "RiemannianAdam"})
