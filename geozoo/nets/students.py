"""Small student networks for knowledge distillation experiments."""

from __future__ import annotations

from typing import Any

from geozoo.nets.cnn import AFFNIST_FRAME, PlainCNN
from geozoo.zoo.registry import register_model

__all__ = ["cnn_mnist_tiny"]


@register_model(pretrained_cfg=AFFNIST_FRAME)
def cnn_mnist_tiny(**kwargs: Any) -> PlainCNN:
    """A 4-8-16 channel :class:`PlainCNN` for 40x40 MNIST digits (about 1/15 of ``cnn_mnist``'s
    multiply-adds): the student of ``scripts/reproduce_distillation.py``.  Its two pooled stages
    are ``features.6`` (4 channels, 20x20) and ``features.13`` (8 channels, 10x10)."""
    defaults = {
        "in_channels": 1,
        "num_classes": 10,
        "widths": (4, 8, 16),
        "input_size": (40, 40),
        "dropout": 0.0,
    }
    return PlainCNN(**{**defaults, **kwargs})
