"""Tests for the CIFAR-10 data module, on generated record files only (never the network)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from geozoo.data import cifar
from geozoo.data.cifar import (
    CIFAR10DataModule,
    CIFAR10NotFoundError,
    download_cifar10,
    random_crop_flip,
    read_cifar_binary,
    resolve_cifar10,
    write_cifar_binary,
)

PER_FILE = 20


def _fake_split(seed: int, n: int = PER_FILE) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), np.arange(n) % 10


def _write_records(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, name in enumerate((*cifar.TRAIN_FILES, cifar.TEST_FILE)):
        images, labels = _fake_split(i)
        write_cifar_binary(folder / name, images, labels)
        written[name] = (images, labels)
    return written


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOZOO_CACHE", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(cifar.urllib.request, "urlopen", no_network)


def test_record_format_by_hand(tmp_path):
    # one image written byte by byte as the format describes: label, 1024 R, 1024 G, 1024 B
    image = np.zeros((3, 32, 32), dtype=np.uint8)
    image[0, 0, 1] = 200  # red, row 0, column 1
    image[2, 31, 31] = 7  # blue, last pixel
    raw = bytearray([3]) + bytearray(3072)
    raw[1 + 1] = 200
    raw[1 + 2048 + 1023] = 7
    (tmp_path / "one.bin").write_bytes(bytes(raw))
    images, labels = read_cifar_binary(tmp_path / "one.bin")
    assert labels.tolist() == [3]
    np.testing.assert_array_equal(images[0], image)
    write_cifar_binary(tmp_path / "two.bin", image[None], np.array([3]))
    assert (tmp_path / "two.bin").read_bytes() == bytes(raw)


def test_corrupt_files_are_rejected(tmp_path):
    (tmp_path / "short.bin").write_bytes(bytes(3072))
    with pytest.raises(ValueError, match="multiple of 3073"):
        read_cifar_binary(tmp_path / "short.bin")
    (tmp_path / "label.bin").write_bytes(bytes([12]) + bytes(3072))
    with pytest.raises(ValueError, match=r"labels must be 0\.\.9"):
        read_cifar_binary(tmp_path / "label.bin")


def test_resolve_from_data_dir_and_subfolder(tmp_path):
    written = _write_records(tmp_path / "data" / cifar.ARCHIVE_DIR)
    arrays = resolve_cifar10(tmp_path / "data", source="dir")
    assert arrays.train_images.shape == (5 * PER_FILE, 3, 32, 32)
    np.testing.assert_array_equal(arrays.train_images[:PER_FILE], written["data_batch_1.bin"][0])
    np.testing.assert_array_equal(arrays.test_labels, written["test_batch.bin"][1])


def test_missing_data_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(CIFAR10NotFoundError, match="Put the six files"):
        resolve_cifar10(tmp_path / "empty", download=False)


def _archive_bytes(tmp_path: Path) -> bytes:
    records = tmp_path / "src"
    _write_records(records)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(records.iterdir()):
            tar.add(path, arcname=f"{cifar.ARCHIVE_DIR}/{path.name}")
        evil = tarfile.TarInfo("../escaped.txt")
        evil.size = 3
        tar.addfile(evil, io.BytesIO(b"bad"))
    return buffer.getvalue()


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_checks_md5_and_extracts_only_records(tmp_path, monkeypatch):
    payload = _archive_bytes(tmp_path)
    calls = []

    def fake_urlopen(url, timeout):
        calls.append(url)
        return _Response(payload)

    monkeypatch.setattr(cifar.urllib.request, "urlopen", fake_urlopen)
    good = hashlib.md5(payload).hexdigest()
    with pytest.raises(CIFAR10NotFoundError, match=r"expected 0{32}"):
        download_cifar10(tmp_path / "dl", md5="0" * 32)
    assert not list((tmp_path / "dl").glob("*.partial"))
    monkeypatch.setattr(cifar, "CIFAR10_MD5", good)
    arrays = resolve_cifar10(source="auto")
    assert arrays.source.startswith("download:")
    assert arrays.test_images.shape == (PER_FILE, 3, 32, 32)
    assert not (tmp_path / "cache" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    # a second resolve finds the cache and does not download again
    assert resolve_cifar10().source.startswith("cache:")
    assert len(calls) == 2


def test_datamodule_splits_and_loaders(tmp_path):
    _write_records(tmp_path / "data")
    dm = CIFAR10DataModule(str(tmp_path / "data"), source="dir", val_size=20, batch_size=16)
    dm.setup()
    assert len(dm.datasets["train"]) == 80 and len(dm.datasets["val"]) == 20
    assert len(dm.datasets["test_clean"]) == PER_FILE
    assert torch.bincount(dm.datasets["val"].tensors[1], minlength=10).tolist() == [2] * 10
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and y.dtype == torch.int64
    with pytest.raises(ValueError, match="val_size=1000 exceeds"):
        CIFAR10DataModule(str(tmp_path / "data"), source="dir", val_size=1000).setup()


def test_random_crop_flip_against_loop():
    images = torch.rand(6, 3, 32, 32)
    out = random_crop_flip(images, seed=5)
    # reproduce the draws and crop each image by hand
    g = torch.Generator().manual_seed(5)
    dy = torch.randint(0, 9, (6,), generator=g)
    dx = torch.randint(0, 9, (6,), generator=g)
    flip = torch.rand(6, generator=g) < 0.5
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(6):
        crop = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        expected = crop.flip(-1) if flip[i] else crop
        torch.testing.assert_close(out[i], expected)
    torch.testing.assert_close(random_crop_flip(images, seed=5), out)


@pytest.mark.parametrize("recipe", ["vit_tiny_cifar10", "symformer_min_cifar10"])
def test_cifar_recipes_run_on_generated_data(tmp_path, recipe):
    from geozoo.cli import build_cli

    _write_records(tmp_path / "data")
    root = Path(__file__).resolve().parents[2]
    build_cli(
        [
            "fit",
            "--config",
            str(root / "configs" / f"{recipe}.yaml"),
            "--trainer.fast_dev_run=2",
            "--trainer.accelerator=cpu",
            f"--trainer.default_root_dir={tmp_path}",
            "--model.init_args.network.init_args.dim=16",
            "--model.init_args.network.init_args.depth=1",
            f"--data.init_args.data_dir={tmp_path / 'data'}",
            "--data.init_args.source=dir",
            "--data.init_args.val_size=10",
            "--data.init_args.batch_size=4",
        ]
    )
