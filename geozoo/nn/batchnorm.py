"""Forward passes that must not train batch-norm running statistics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["batchnorm_statistics_kept"]


@contextlib.contextmanager
def batchnorm_statistics_kept(network: nn.Module) -> Iterator[None]:
    """Inside the block, batch-norm layers in training mode normalise by batch statistics
    without updating their running statistics (or ``num_batches_tracked``).

    For extra forward passes on inputs unlike the evaluation inputs (half faces, scored
    augmentation proposals): without it, the running statistics the network is evaluated with
    would mix in those inputs' statistics. Gradients flow as usual.
    """
    switched = [
        m
        for m in network.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    for module in switched:
        module.track_running_stats = False
    try:
        yield
    finally:
        for module in switched:
            module.track_running_stats = True
