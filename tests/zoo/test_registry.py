import json

import pytest
import torch

import geozoo
from geozoo.zoo import UnknownModelError, WeightsIntegrityError, save_checkpoint, sha256_file
from geozoo.zoo.registry import _BUILDERS, register_model

TINY = {"widths": [4, 8], "dropout": 0.0}


def _tiny_checkpoint(folder):
    torch.manual_seed(0)
    model = geozoo.create_model("cnn_mnist", **TINY).eval()
    config = {
        "name": "cnn_mnist",
        "architecture": "cnn_mnist",
        "arguments": TINY,
        "input": {"input_size": [1, 40, 40], "value_range": [0.0, 1.0], "dtype": "float32"},
    }
    save_checkpoint(model, folder, config)
    return model


def test_list_models_with_wildcards():
    assert "cnn_mnist" in geozoo.list_models()
    assert geozoo.list_models("cnn_*") == [n for n in geozoo.list_models() if n.startswith("cnn_")]
    assert geozoo.list_models("no_such_*") == []


def test_unknown_model_error_lists_names_and_suggests():
    with pytest.raises(UnknownModelError) as info:
        geozoo.create_model("cnn_mnsit")
    assert "cnn_mnist" in str(info.value) and "Did you mean" in str(info.value)


def test_register_rejects_a_second_builder_with_the_same_name():
    def cnn_mnist(**kwargs):
        return torch.nn.Linear(1, 1)

    with pytest.raises(ValueError, match="already registered"):
        register_model(cnn_mnist)
    assert _BUILDERS["cnn_mnist"] is not cnn_mnist


def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
    model = _tiny_checkpoint(tmp_path)
    loaded = geozoo.create_model("cnn_mnist", weights=tmp_path)
    x = torch.rand(4, 1, 40, 40)
    assert not loaded.training
    assert torch.equal(loaded(x), model(x))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["weights"]["sha256"] == sha256_file(tmp_path / "model.safetensors")
    assert config["weights"]["num_params"] == sum(p.numel() for p in model.parameters())
    assert (tmp_path / "model.safetensors").read_bytes()[:8] != b"\x80\x02\x8a\n"  # not a pickle


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_tampered_weights_are_refused(tmp_path, damage):
    _tiny_checkpoint(tmp_path)
    path = tmp_path / "model.safetensors"
    expected = sha256_file(path)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) - 100]
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError) as info:
        geozoo.create_model("cnn_mnist", weights=tmp_path)
    message = str(info.value)
    assert str(path) in message and expected in message and sha256_file(path) in message


def test_weights_folder_must_hold_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        geozoo.create_model("cnn_mnist", weights=tmp_path)


def test_checkpoint_for_another_architecture_is_refused(tmp_path):
    _tiny_checkpoint(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architecture"] = "something_else"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="something_else"):
        geozoo.create_model("cnn_mnist", weights=tmp_path)


def test_hf_spec_must_pin_a_revision():
    from geozoo.zoo.hub import resolve_checkpoint

    with pytest.raises(ValueError, match="revision"):
        resolve_checkpoint("cnn_mnist", "hf://someone/repo")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (
            torch.rand(2, 3, 40, 40),
            r"expected images of shape \(N, 1, 40, 40\), got \(2, 3, 40, 40\)",
        ),
        (torch.rand(2, 1, 28, 28), r"got \(2, 1, 28, 28\)"),
        (torch.rand(1, 40, 40), r"got \(1, 40, 40\)"),
        (torch.full((1, 1, 40, 40), float("nan")), "finite"),
        (torch.zeros(1, 1, 40, 40, dtype=torch.uint8), "float images"),
    ],
)
def test_bad_input_gets_a_clear_error(bad, match):
    model = geozoo.create_model("cnn_mnist", **TINY)
    with pytest.raises((ValueError, TypeError), match=match):
        model(bad)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda text: text[: len(text) // 2], r"is not valid JSON \(line \d+, column \d+"),
        (
            lambda text: text.replace('"weights"', '"wieghts"'),
            r"key 'weights' must be a JSON object",
        ),
        (lambda text: text.replace('"sha256"', '"sha"'), r"weights lacks \['sha256'\]"),
        (lambda text: "[]", "must hold a JSON object, got list"),
    ],
    ids=["truncated", "renamed key", "missing sha256", "not an object"],
)
def test_broken_config_names_the_file_and_the_problem(tmp_path, edit, match):
    from geozoo.zoo import CheckpointConfigError

    _tiny_checkpoint(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(edit(path.read_text()))
    with pytest.raises(CheckpointConfigError, match=match) as info:
        geozoo.create_model("cnn_mnist", weights=tmp_path)
    assert str(path) in str(info.value)
