"""The shared shape of geozoo's data modules: named in-memory splits and their loaders."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["InMemoryDataModule"]


class InMemoryDataModule(L.LightningDataModule):
    """A data module whose splits are datasets held in :attr:`datasets`: ``"train"``, ``"val"``
    and ``"test_{name}"`` for each name in :attr:`test_set_names` (several test sets, e.g. clean
    and affNIST-style, are evaluated as separate loaders and logged under their names).

    Subclasses implement :meth:`build_datasets`; ``setup`` builds them once.

    Args:
        batch_size: training batch size.
        eval_batch_size: batch size of validation and test loaders (default ``batch_size``).
        num_workers: DataLoader workers.
        seed: seed of the training shuffle (subclasses also use it for their splits).
    """

    test_set_names: Sequence[str] = ("clean",)

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.datasets: dict[str, Dataset] = {}

    def build_datasets(self) -> dict[str, Dataset]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement build_datasets()")

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self.datasets = self.build_datasets()

    def _loader(self, name: str, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            self.datasets[name],
            batch_size=self.batch_size if shuffle else (self.eval_batch_size or self.batch_size),
            shuffle=shuffle,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(f"test_{name}") for name in self.test_set_names]

    def predict_dataloader(self) -> DataLoader:
        return self._loader(f"test_{self.test_set_names[0]}")

    def test_loaders_by_name(self) -> dict[str, DataLoader]:
        """The test sets as ``{name: loader}`` (after :meth:`setup`)."""
        return dict(zip(self.test_set_names, self.test_dataloader()))
