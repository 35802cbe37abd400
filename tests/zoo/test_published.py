"""Every published checkpoint in models/ tells the truth about itself."""

import json
import math

import pytest
import torch

import geozoo
from geozoo.zoo import sha256_file
from geozoo.zoo.evaluate import evaluate_entry
from geozoo.zoo.hub import models_dir

FOLDERS = sorted(p.parent for p in models_dir().glob("*/config.json"))
FAST_EVAL = {"cnn_mnist"}


def _config(folder):
    return json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_metadata_is_true(folder):
    config = _config(folder)
    assert config["name"] == folder.name
    assert config["weights"]["sha256"] == sha256_file(folder / config["weights"]["file"])
    model = geozoo.create_model(folder.name, pretrained=True)
    assert config["weights"]["num_params"] == sum(p.numel() for p in model.parameters())
    card = (folder / "README.md").read_text()
    assert config["weights"]["sha256"] in card
    assert config["metrics"], "a card must carry metrics"
    for key, value in config["metrics"].items():
        assert str(value) in card, f"metric {key}={value} is missing from the card"
    assert config.get("metrics_command") and config.get("train_command")


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_loads_and_runs_on_its_input_spec(folder):
    config = _config(folder)
    spec = config["input"]
    model = geozoo.create_model(folder.name, pretrained=True)
    low, high = (float(v) for v in spec["value_range"])
    shape = (2, *spec["input_size"])
    if math.isfinite(low) and math.isfinite(high):
        x = low + (high - low) * torch.rand(shape)
    else:  # unbounded inputs such as point coordinates
        x = torch.randn(shape)
    with torch.no_grad():
        out = model(x)
    assert torch.isfinite(out).all()


def _eval_params():
    for folder in FOLDERS:
        marks = () if folder.name in FAST_EVAL else (pytest.mark.slow,)
        if "evaluation" in _config(folder):
            yield pytest.param(folder, marks=marks, id=folder.name)


@pytest.mark.parametrize("folder", list(_eval_params()))
def test_card_metrics_are_reproduced(folder):
    """The same check as `geozoo zoo eval NAME`: within 0.2 accuracy points of the card."""
    config = _config(folder)
    measured = evaluate_entry(config, geozoo.create_model(folder.name, pretrained=True))
    for key, value in config["metrics"].items():
        if key.endswith("/acc") and key in measured:
            assert abs(measured[key] - value) <= 0.2, (key, measured[key], value)
