"""Plain networks whose zoo weights come from augmentation objectives rather than architecture."""

from __future__ import annotations

from typing import Any

from geozoo.nets.cnn import AFFNIST_FRAME, PlainCNN
from geozoo.zoo.registry import register_model

__all__ = ["cnn_mcmcaug_mnist"]


@register_model(pretrained_cfg=AFFNIST_FRAME)
def cnn_mcmcaug_mnist(**kwargs: Any) -> PlainCNN:
    """An 8-16-32 :class:`PlainCNN` for 40x40 digits trained under the invariance constraint
    with Metropolis-Hastings augmentation (Hounie, Chamon & Ribeiro, ICML 2023; recipe
    ``configs/daug_mh_mnist.yaml``, :class:`geozoo.objectives.InvarianceConstrained`)."""
    defaults = {"in_channels": 1, "num_classes": 10, "widths": (8, 16, 32), "input_size": (40, 40)}
    return PlainCNN(**{**defaults, **kwargs})
