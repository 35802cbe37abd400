"""CIFAR-10 (Krizhevsky, 2009) as a LightningDataModule.

The images come from the dataset authors' *binary* archive (``cifar-10-binary.tar.gz``), whose
records are plain bytes: one label byte followed by 3,072 pixel bytes (the 1,024 red, then green,
then blue values of a 32x32 image in row-major order). Nothing is unpickled. Sources are tried in
order, as for MNIST:

1. an explicit ``data_dir`` holding ``data_batch_1.bin`` .. ``data_batch_5.bin`` and
   ``test_batch.bin`` (directly or in a ``cifar-10-batches-bin`` sub-folder);
2. the cache, ``$GEOZOO_CACHE/cifar10`` (default ``~/.cache/geozoo/cifar10``);
3. a download of the archive (170,052,171 bytes, md5 checked against the value published on
   https://www.cs.toronto.edu/~kriz/cifar.html), from which only the six record files are
   extracted into the cache.

No Python package ships CIFAR-10, so there is no offline fallback: without a local copy or a
network connection :func:`resolve_cifar10` raises :class:`CIFAR10NotFoundError` saying where to
put the files. geozoo's tests never download; they write small record files with
:func:`write_cifar_binary` and point ``data_dir`` at them.
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from geozoo.cache import cache_dir
from geozoo.data.base import InMemoryDataModule

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "CIFAR10Arrays",
    "CIFAR10DataModule",
    "CIFAR10NotFoundError",
    "default_cifar_cache_dir",
    "download_cifar10",
    "load_cifar10_folder",
    "random_crop_flip",
    "read_cifar_binary",
    "resolve_cifar10",
    "write_cifar_binary",
]

log = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_BYTES = 170_052_171
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
ARCHIVE_DIR = "cifar-10-batches-bin"
_RECORD = 1 + 3 * 32 * 32


class CIFAR10NotFoundError(FileNotFoundError):
    """No source could provide the CIFAR-10 record files."""


@dataclass(frozen=True)
class CIFAR10Arrays:
    """uint8 images ``(N, 3, 32, 32)`` with int64 labels for both official splits."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str


def default_cifar_cache_dir() -> Path:
    """``$GEOZOO_CACHE/cifar10`` (default ``~/.cache/geozoo/cifar10``)."""
    return cache_dir("cifar10")


def read_cifar_binary(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CIFAR-10 binary record file into ``(images (N, 3, 32, 32) uint8, labels)``."""
    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0 or data.size % _RECORD:
        raise ValueError(
            f"{path} is not a CIFAR-10 record file: expected a non-zero multiple of {_RECORD} "
            f"bytes (1 label + 3x32x32 pixels per image), got {data.size}"
        )
    records = data.reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CIFAR10_CLASSES):
        raise ValueError(f"{path}: labels must be 0..9, found {int(labels.max())}")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def write_cifar_binary(path: str | Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write ``images`` (``(N, 3, 32, 32)`` uint8) and ``labels`` in the CIFAR-10 record format."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[1:] != (3, 32, 32) or len(labels) != len(images):
        raise ValueError(
            f"expected images (N, 3, 32, 32) and labels (N,), got {images.shape} and {labels.shape}"
        )
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], 1)
    Path(path).write_bytes(records.tobytes())


def _record_folder(folder: Path) -> Path | None:
    for candidate in (folder, folder / ARCHIVE_DIR):
        if all((candidate / name).is_file() for name in (*TRAIN_FILES, TEST_FILE)):
            return candidate
    return None


def load_cifar10_folder(folder: str | Path) -> CIFAR10Arrays:
    """Load the five training files and the test file from ``folder`` (or its
    ``cifar-10-batches-bin`` sub-folder)."""
    folder = Path(folder)
    found = _record_folder(folder)
    if found is None:
        raise CIFAR10NotFoundError(
            f"{folder} lacks the CIFAR-10 record files {', '.join((*TRAIN_FILES, TEST_FILE))} "
            f"(directly or under {ARCHIVE_DIR}/)"
        )
    train = [read_cifar_binary(found / name) for name in TRAIN_FILES]
    test_images, test_labels = read_cifar_binary(found / TEST_FILE)
    return CIFAR10Arrays(
        np.concatenate([images for images, _ in train]),
        np.concatenate([labels for _, labels in train]),
        test_images,
        test_labels,
        source=f"dir:{found}",
    )


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _extract_records(archive: Path, folder: Path) -> None:
    """Extract only the six record files, by name, whatever else the archive holds."""
    wanted = {f"{ARCHIVE_DIR}/{name}" for name in (*TRAIN_FILES, TEST_FILE)}
    target = folder / ARCHIVE_DIR
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.name in wanted and m.isfile()}
        missing = sorted(wanted - set(members))
        if missing:
            raise CIFAR10NotFoundError(f"{archive} does not contain {', '.join(missing)}")
        for name, member in members.items():
            source = tar.extractfile(member)
            assert source is not None  # regular files always have a payload
            (target / Path(name).name).write_bytes(source.read())


def download_cifar10(
    folder: str | Path,
    url: str = CIFAR10_URL,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download the binary archive into ``folder``, check its md5, extract the record files.

    ``md5`` defaults to :data:`CIFAR10_MD5`. Returns the folder holding the records. An
    archive already present with the right md5 is not downloaded again; a download with the
    wrong md5 is deleted and reported.
    """
    md5 = md5 or CIFAR10_MD5
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / Path(url).name
    if not (archive.is_file() and _md5(archive) == md5):
        partial = archive.with_name(archive.name + ".partial")
        log.info("downloading CIFAR-10 (%d MB) from %s", CIFAR10_BYTES // 2**20, url)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as f:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise CIFAR10NotFoundError(
                f"could not download CIFAR-10 from {url}: {error}"
            ) from error
        actual = _md5(partial)
        if actual != md5:
            partial.unlink()
            raise CIFAR10NotFoundError(
                f"downloaded {url} has md5 {actual}, expected {md5}: the file is corrupt or "
                "was changed; try again or fetch it by hand into data_dir"
            )
        partial.replace(archive)
    _extract_records(archive, folder)
    return folder / ARCHIVE_DIR


def resolve_cifar10(
    data_dir: str | Path | None = None,
    source: Literal["auto", "dir", "cache", "download"] = "auto",
    download: bool = True,
) -> CIFAR10Arrays:
    """Find CIFAR-10: ``data_dir``, then the cache, then (if allowed) a download into the cache.

    Args:
        data_dir: a folder with the six record files; used first when given.
        source: ``"auto"`` (every source in order), ``"dir"`` (``data_dir`` only), ``"cache"``
            or ``"download"``.
        download: allow the download step in ``"auto"`` mode.
    """
    valid = ("auto", "dir", "cache", "download")
    if source not in valid:
        raise ValueError(f"source must be one of {valid}, got {source!r}")
    tried: list[str] = []
    if source in ("auto", "dir"):
        if data_dir is not None:
            if _record_folder(Path(data_dir)) is not None:
                return load_cifar10_folder(data_dir)
            tried.append(f"data_dir {data_dir}: record files not found")
        elif source == "dir":
            raise ValueError("source='dir' needs data_dir")
    cache = default_cifar_cache_dir()
    if source in ("auto", "cache"):
        if _record_folder(cache) is not None:
            return replace(load_cifar10_folder(cache), source=f"cache:{cache}")
        tried.append(f"cache {cache}: record files not found")
    if source == "download" or (source == "auto" and download):
        try:
            folder = download_cifar10(cache)
        except CIFAR10NotFoundError as error:
            raise CIFAR10NotFoundError(f"{error}. {_local_copy_hint(cache)}") from error
        return replace(load_cifar10_folder(folder), source=f"download:{CIFAR10_URL}")
    raise CIFAR10NotFoundError(
        "CIFAR-10 not found (tried: " + "; ".join(tried) + "). " + _local_copy_hint(cache)
    )


def _local_copy_hint(cache: Path) -> str:
    """How to use CIFAR-10 without a network connection."""
    return (
        f"Put the six files of {CIFAR10_URL} (extracted on a machine with a connection: the "
        f"{ARCHIVE_DIR} folder) into data_dir, e.g. --data.init_args.data_dir=/path/to/"
        f"{ARCHIVE_DIR} on the command line or data_dir: in the recipe's data init_args; or copy "
        f"them into the cache {cache}"
    )


def random_crop_flip(images: Tensor, seed: int, padding: int = 4) -> Tensor:
    """The standard CIFAR augmentation: zero-pad by ``padding``, random crop back to the
    original size, random horizontal flip; one draw per image from ``seed``."""
    n, _, h, w = images.shape
    generator = torch.Generator().manual_seed(seed)
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None]).to(images.device)  # (n, h)
    cols = dx[:, None] + torch.arange(w)[None]  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols).to(images.device)
    batch = torch.arange(n, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def _to_float(images: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)


class CIFAR10DataModule(InMemoryDataModule):
    """CIFAR-10 images as float tensors in [0, 1], shape ``(N, 3, 32, 32)``.

    The official 50,000 training images are split (stratified, seeded) into training and
    ``val_size`` validation images; the official 10,000 test images are the test set.
    Normalisation is the model's job (geozoo's models normalise inside ``forward``).

    Args:
        data_dir: folder with the record files (see :func:`resolve_cifar10`).
        source: ``"auto"``, ``"dir"``, ``"cache"`` or ``"download"``.
        download: allow downloading in ``"auto"`` mode.
        val_size: validation images taken from the training split (0 for none).
        train_augment: ``None`` or ``"crop_flip"`` (4-pixel padded random crop and horizontal
            flip, drawn afresh for every batch from a seeded stream).
        seed: seed of the split and of the augmentation stream.
        limit_train: keep only the first N training images (quick experiments).
        batch_size, num_workers: DataLoader settings.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        source: Literal["auto", "dir", "cache", "download"] = "auto",
        download: bool = True,
        val_size: int = 5000,
        train_augment: Literal["crop_flip"] | None = "crop_flip",
        seed: int = 0,
        limit_train: int | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if train_augment not in (None, "crop_flip"):
            raise ValueError(f"train_augment must be None or 'crop_flip', got {train_augment!r}")
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size}")
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.source, self.download = source, download
        self.val_size, self.train_augment = val_size, train_augment
        self.limit_train = limit_train
        self.source_used: str | None = None
        self._augment_step = 0

    @property
    def image_size(self) -> tuple[int, int, int]:
        return (3, 32, 32)

    def build_datasets(self) -> dict[str, TensorDataset]:
        arrays = resolve_cifar10(self.data_dir, self.source, self.download)
        self.source_used = arrays.source
        labels = arrays.train_labels
        if self.val_size > len(labels):
            raise ValueError(
                f"val_size={self.val_size} exceeds the {len(labels)} training images found"
            )
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(labels))
        # stratified: take validation images class by class in the shuffled order
        val_idx = np.sort(
            np.concatenate(
                [
                    order[labels[order] == c][:k]
                    for c, k in zip(range(10), _per_class(self.val_size, 10))
                ]
            )
        ).astype(np.int64)
        train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
        if self.limit_train is not None:
            train_idx = train_idx[: self.limit_train]
        splits = {
            "train": (arrays.train_images[train_idx], labels[train_idx]),
            "val": (arrays.train_images[val_idx], labels[val_idx]),
            "test_clean": (arrays.test_images, arrays.test_labels),
        }
        return {
            name: TensorDataset(_to_float(images), torch.from_numpy(split_labels))
            for name, (images, split_labels) in splits.items()
        }

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if self.train_augment is None or trainer is None or not trainer.training:
            return batch
        images, labels = batch
        self._augment_step += 1
        return random_crop_flip(images, seed=self.seed * 1_000_003 + self._augment_step), labels


def _per_class(total: int, classes: int) -> list[int]:
    counts = [total // classes] * classes
    for i in range(total % classes):
        counts[i] += 1
    return counts
