"""Temperature scaling folded into a published classifier's logit layer."""

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from geozoo.cli import main
from geozoo.metrics import fit_temperature
from geozoo.zoo import calibrate, create_model, registry
from geozoo.zoo.calibrate import fold_temperature, fold_temperature_fitted_on
from geozoo.zoo.evaluate import evaluate_entry
from geozoo.zoo.pretrained import ExtraForm, Published


def _net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4)).double()


def test_folding_divides_the_logits_and_keeps_every_prediction():
    net, x = _net(), torch.randn(50, 3, dtype=torch.float64)
    before = net(x).detach()
    fold_temperature(net, "2", 2.5)
    after = net(x).detach()
    torch.testing.assert_close(after, before / 2.5, rtol=1e-12, atol=1e-12)
    assert torch.equal(after.argmax(-1), before.argmax(-1))


def test_folding_refuses_what_is_not_a_logit_layer():
    net = _net()
    with pytest.raises(TypeError, match=r"Sequential.1 is a ReLU"):
        fold_temperature(net, "1", 2.0)
    with pytest.raises(ValueError, match=r"no submodule 'head.4'"):
        fold_temperature(net, "head.4", 2.0)
    with pytest.raises(ValueError, match="positive temperature, got 0"):
        fold_temperature(net, "2", 0)
    squashed = nn.Sequential(*_net(), nn.Tanh()).train()
    inputs = torch.randn(40, 3, dtype=torch.float64)
    with torch.no_grad():
        labels = squashed(inputs).argmax(-1)
    labels[::4] = (labels[::4] + 1) % 4  # a quarter wrong: an optimum inside the range
    batches = [(inputs, labels)]
    before = {k: v.clone() for k, v in squashed.state_dict().items()}
    with pytest.raises(RuntimeError, match="does not compute the logits directly"):
        fold_temperature_fitted_on(squashed, "2", batches)
    # the layer is restored exactly, and the module's mode
    assert all(torch.equal(v, before[k]) for k, v in squashed.state_dict().items())
    assert squashed.training


def test_a_temperature_at_the_edge_of_the_range_is_refused():
    net = _net(2)
    x = torch.randn(64, 3, dtype=torch.float64)
    with torch.no_grad():
        perfect = net(x).argmax(-1)  # no validation errors: the optimum is T -> 0
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"edge of the searched range .*0 of 64 validation"):
        fold_temperature_fitted_on(net, "2", [(x, perfect)])
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_the_fitted_temperature_is_the_likelihoods_and_is_reported():
    net = _net(1)
    x = torch.randn(4000, 3, dtype=torch.float64)
    with torch.no_grad():
        logits = net(x)
    generator = torch.Generator().manual_seed(0)
    labels = torch.multinomial(torch.softmax(logits / 0.5, -1), 1, generator=generator)[:, 0]
    batches = list(zip(x.split(500), labels.split(500), strict=True))
    info = fold_temperature_fitted_on(net, "2", batches)
    expected = fit_temperature(logits, labels)
    assert info["temperature"] == round(expected, 4) and info["layer"] == "2"
    assert info["fitted_on"] == "4,000 validation samples"
    assert info["validation_after"]["nll"] < info["validation_before"]["nll"]
    assert info["validation_after"]["ece"] < info["validation_before"]["ece"]
    with torch.no_grad():
        torch.testing.assert_close(net(x), logits / expected)


def test_publishing_folds_a_temperature_fitted_on_validation_data(tmp_path, monkeypatch):
    cfg = registry.pretrained_cfg("cnn_mnist")
    out = tmp_path / "cnn"
    args = ["zoo", "train", "cnn_mnist", "--output-dir", str(out), "--"]
    tiny = [
        "--model.init_args.network.init_args.widths=[8, 16]",
        "--data.init_args.limit_train=1024",
        "--data.init_args.offline_test_size=200",
        "--model.init_args.optimizer.init_args.lr=0.01",
        "--trainer.max_epochs=3",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]

    # an export that ships other forms would ship them uncalibrated: refused
    def with_a_form(network):
        return Published(network, forms=[ExtraForm("copy", {}, network)])

    forms = replace(cfg, temperature_layer="head.3", export=with_a_form)
    monkeypatch.setitem(registry._CFGS, "cnn_mnist", forms)
    assert main([*args, *tiny]) == 2 and not out.exists()

    monkeypatch.setitem(registry._CFGS, "cnn_mnist", replace(cfg, temperature_layer="head.3"))
    # a network this small and briefly trained is far from calibrated (T of about 30 here):
    # widen the range so that this test checks the wiring, not the refusal tested above
    monkeypatch.setattr(calibrate, "TEMPERATURE_BOUNDS", (1e-3, 1e4))
    assert main([*args, *tiny]) == 0
    config = json.loads((out / "config.json").read_text())
    scaling = config["export"]["temperature_scaling"]
    assert scaling["layer"] == "head.3" and scaling["temperature"] > 0
    # the validation split (10% of the 4,800 digits left after the 200 test digits), not a test set
    assert scaling["fitted_on"] == "480 validation samples"
    card = (out / "README.md").read_text()
    expected = (
        f"## Calibration\n\nThe logits are divided by the temperature T = {scaling['temperature']}"
    )
    assert expected in card
    # the card's metrics, calibration errors included, are those of the shipped (scaled) weights
    shipped = create_model("cnn_mnist", weights=out)
    assert evaluate_entry("cnn_mnist", config, shipped) == config["metrics"]
