"""Layers a user imports into their own architectures."""

from geozoo.nn.checks import check_images

__all__ = ["check_images"]
