"""Every published checkpoint in models/ tells the truth about itself."""

import json

import pytest
import torch

import geozoo
from geozoo.zoo import sha256_file
from geozoo.zoo.cards import render_model_card
from geozoo.zoo.evaluate import evaluate_entry
from geozoo.zoo.factory import checkpoint_forms
from geozoo.zoo.hub import models_dir
from geozoo.zoo.pretrained import InputSpec
from geozoo.zoo.registry import pretrained_cfg

FOLDERS = sorted(p.parent for p in models_dir().glob("*/config.json"))
FAST_EVAL = {"cnn_mnist"}
TIMINGS = ("images_per_s", "seconds", "train_seconds")


def _config(folder):
    return json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_metadata_is_true(folder):
    config = _config(folder)
    assert config["name"] == folder.name
    for _, info in checkpoint_forms(config).values():
        assert info["sha256"] == sha256_file(folder / info["file"])
    model = geozoo.create_model(folder.name, pretrained=True)
    assert config["weights"]["num_params"] == sum(p.numel() for p in model.parameters())
    card = (folder / "README.md").read_text()
    assert card == render_model_card(config), "the card is not what its config.json renders"
    assert config["weights"]["sha256"] in card
    assert config["metrics"], "a card must carry metrics"
    for key, value in config["metrics"].items():
        assert str(value) in card, f"metric {key}={value} is missing from the card"
    assert config["metrics_command"] == f"geozoo zoo eval {folder.name}"
    command = config["train_command"]  # one publishing path: zoo train, or zoo export of fits
    assert command.startswith(f"geozoo zoo train {folder.name}") or (
        command.startswith("geozoo fit --config ")
        and f"zoo export CKPT ... --name {folder.name}" in command
    )
    assert config["recipe"] == f"configs/{folder.name}.yaml"
    assert config["input"] == pretrained_cfg(folder.name).input.as_dict()
    assert not any(t in key for key in json.dumps(config).split('"') for t in TIMINGS)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_every_form_gives_the_golden_outputs(folder, tmp_path, monkeypatch):
    """Each shipped form (the published one; e.g. the escnn form of steerable entries) loads on
    its declared input spec and computes the outputs recorded when it was published."""
    monkeypatch.setenv("GEOZOO_ESCNN_CACHE", str(tmp_path / "escnn"))
    config = _config(folder)
    golden = config["golden"]
    x = InputSpec.from_dict(config["input"]).example(golden["batch"], seed=golden["seed"])
    published_arguments = config["arguments"]
    for form, (arguments, _) in checkpoint_forms(config).items():
        if form != "published":
            pytest.importorskip("escnn")  # the only other form shipped today
        overrides = {k: v for k, v in arguments.items() if published_arguments.get(k) != v}
        model = geozoo.create_model(folder.name, pretrained=True, **overrides)
        with torch.no_grad():
            out = model(x).reshape(golden["batch"], -1)
        assert torch.isfinite(out).all()
        assert (out - torch.tensor(golden["outputs"])).abs().max() <= 1e-4, form


def _eval_params():
    for folder in FOLDERS:
        marks = () if folder.name in FAST_EVAL else (pytest.mark.slow,)
        yield pytest.param(folder, marks=marks, id=folder.name)


@pytest.mark.parametrize("folder", list(_eval_params()))
def test_card_metrics_are_reproduced(folder):
    """The same check as `geozoo zoo eval NAME`: within 0.2 accuracy points of the card, and
    the calibration error (in percent) within 0.2 points too."""
    config = _config(folder)
    name = folder.name
    measured = evaluate_entry(name, config, geozoo.create_model(name, pretrained=True))
    assert set(measured) == set(config["metrics"])
    for key, value in config["metrics"].items():
        assert abs(measured[key] - value) <= 0.2, (key, measured[key], value)


# the published policy keeps the encoder it was trained with (its own weights, the cnn_mnist
# architecture of that time); a default build starts from today's cnn_mnist entry instead
OWN_ENCODER = {"digitsum_grpo_mnist"}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_builder_defaults_build_the_published_architecture(folder):
    """``create_model(NAME)`` without weights is the network the card describes (one of its
    forms), so a user who trains it from scratch trains the published architecture."""
    if folder.name in OWN_ENCODER:
        pytest.skip("the policy's encoder is part of its checkpoint")
    config = _config(folder)
    x = InputSpec.from_dict(config["input"]).example(2, seed=0)
    default = _architecture(folder.name, x)
    candidates = [args for args, _ in checkpoint_forms(config).values()]
    # an exported (plain torch) form is compiled from the trainable escnn form the builder makes
    candidates += [{**args, "exported": False} for args in candidates if args.get("exported")]
    built = [_architecture(folder.name, x, **args) for args in candidates]
    assert any(default[0] == b[0] and torch.equal(default[1], b[1]) for b in built), (
        f"{folder.name}: the builder's defaults match no published form"
    )


def _architecture(name, x, **arguments):
    """The modules (``repr``) of ``create_model(name, **arguments)`` and its outputs on ``x``
    from the same seeded initialisation, which also see what the ``repr`` does not show (e.g.
    the input normalization's ``mean`` and ``std``)."""
    torch.manual_seed(0)
    model = geozoo.create_model(name, **arguments).eval()
    with torch.no_grad():
        return repr(model), model(x)
