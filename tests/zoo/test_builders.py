"""Every registered builder (the way timm tests every model): it declares its zoo entry, builds
with its defaults, runs forward and backward on its declared input spec, and its checkpoint
round-trips through save_checkpoint / create_model with identical outputs."""

import pytest
import torch

import geozoo
from geozoo.zoo import save_checkpoint
from geozoo.zoo.pretrained import PretrainedCfg
from geozoo.zoo.registry import pretrained_cfg


@pytest.fixture(autouse=True)
def _empty_escnn_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOZOO_ESCNN_CACHE", str(tmp_path / "escnn"))


@pytest.mark.parametrize("name", geozoo.list_models())
def test_builder_declares_input_runs_forward_backward_and_round_trips(name, tmp_path):
    cfg = pretrained_cfg(name)
    assert isinstance(cfg, PretrainedCfg)
    torch.manual_seed(0)
    try:
        model = geozoo.create_model(name)
    except ImportError as error:  # an optional dependency (escnn, e3nn) is not installed
        pytest.skip(str(error))
    x = cfg.input.example(2)
    assert x.dtype == getattr(torch, cfg.input.dtype)
    out = model.train()(x)
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), f"{name}: parameters without gradient"
    assert any(bool(g.abs().sum() > 0) for g in grads)

    model.eval()
    save_checkpoint(
        model,
        tmp_path,
        {"name": name, "architecture": name, "arguments": {}, "input": cfg.input.as_dict()},
    )
    loaded = geozoo.create_model(name, weights=tmp_path)
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
