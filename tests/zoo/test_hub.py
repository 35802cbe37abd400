"""Weights from a URL: served from a loopback HTTP server, never the internet."""

import functools
import http.server
import threading

import pytest
import torch

import geozoo
from geozoo.zoo import WeightsIntegrityError, save_checkpoint

TINY = {"widths": [4, 8], "dropout": 0.0}


@pytest.fixture
def served_checkpoint(tmp_path):
    folder = tmp_path / "served"
    torch.manual_seed(1)
    model = geozoo.create_model("cnn_mnist", **TINY).eval()
    save_checkpoint(
        model,
        folder,
        {
            "name": "cnn_mnist",
            "architecture": "cnn_mnist",
            "arguments": TINY,
            "input": {"input_size": [1, 40, 40], "value_range": [0.0, 1.0], "dtype": "float32"},
        },
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield model, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_url_weights_are_downloaded_cached_and_checked(served_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOZOO_CACHE", str(tmp_path / "cache"))
    model, url = served_checkpoint
    loaded = geozoo.create_model("cnn_mnist", weights=url)
    x = torch.rand(3, 1, 40, 40)
    assert torch.equal(loaded(x), model(x))
    cached = next((tmp_path / "cache" / "url").glob("*/model.safetensors"))
    data = bytearray(cached.read_bytes())
    data[-1] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="sha256 mismatch"):
        geozoo.create_model("cnn_mnist", weights=url)
