"""Minibatches of in-memory tensors without a ``DataLoader``: the fast path for small datasets.

A ``DataLoader`` over a ``TensorDataset`` fetches every example separately and collates the
batch in Python, which costs more than a whole training step of a small MLP.
:class:`TensorBatches` keeps the split as whole tensors (on the training device) and cuts each
batch with one index operation.  With ``shuffle=True`` it draws its permutation from the global
random generator exactly as ``DataLoader(dataset, batch_size, shuffle=True)`` does (one seed for
the iterator, one for the sampler's permutation), so a seeded run sees the same batches on both
paths (the draws happen at the first batch, which makes no difference in a training loop).
Under DDP every rank takes its strided share of the common permutation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["TensorBatches"]


class TensorBatches:
    """Iterable of ``(t[idx] for t in tensors)`` minibatches over whole in-memory tensors.

    Args:
        tensors: tensors with the same first dimension (e.g. inputs and targets).
        batch_size: examples per batch (the last batch may be smaller).
        shuffle: a new random order every epoch (drawn as ``DataLoader`` draws it).
        device: move the tensors there once, instead of every batch at every step.
        rank, world_size: this process's share of every epoch under data parallelism (each rank
            takes ``order[rank::world_size]`` of the common order).
    """

    def __init__(
        self,
        *tensors: Tensor,
        batch_size: int,
        shuffle: bool = False,
        device: torch.device | str | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not tensors:
            raise ValueError("TensorBatches needs at least one tensor")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ValueError(
                "all tensors must have the same first dimension, got "
                f"{[t.shape[0] for t in tensors]}"
            )
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                "expected batch_size >= 1 and 0 <= rank < world_size, got "
                f"batch_size={batch_size}, rank={rank}, world_size={world_size}"
            )
        self.tensors = tuple(t.to(device) if device is not None else t for t in tensors)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.rank, self.world_size = rank, world_size
        self.num_examples = n

    @property
    def local_examples(self) -> int:
        """Examples this rank sees per epoch."""
        return len(range(self.rank, self.num_examples, self.world_size))

    def __len__(self) -> int:
        return math.ceil(self.local_examples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        return self._batches()

    def _batches(self) -> Iterator[tuple[Tensor, ...]]:
        # the draws a DataLoader makes from the global generator: its iterator's base seed (even
        # unshuffled), then the seed of the sampler's permutation.  They happen at the first
        # batch, so that merely calling iter() (as Lightning does to check a loader) draws none.
        torch.empty((), dtype=torch.int64).random_()
        device = self.tensors[0].device
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
            order = torch.randperm(self.num_examples, generator=generator).to(device)
        else:
            order = torch.arange(self.num_examples, device=device)
        if self.world_size > 1:
            order = order[self.rank :: self.world_size]
        contiguous = not self.shuffle and self.world_size == 1
        for start in range(0, len(order), self.batch_size):
            if contiguous:
                yield tuple(t[start : start + self.batch_size] for t in self.tensors)
            else:
                index = order[start : start + self.batch_size]
                yield tuple(t[index] for t in self.tensors)
