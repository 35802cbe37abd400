"""Layers a user imports into their own architectures."""

from geozoo.nn.attention import ReducedSelfAttention, ReducedTransformerBlock
from geozoo.nn.checks import check_images

__all__ = ["ReducedSelfAttention", "ReducedTransformerBlock", "check_images"]
