"""The one publishing path: `geozoo zoo train` (seeds, median), `geozoo zoo export` (from `geozoo
fit` checkpoints), refusals (existing folder, incomplete runs), and the shipped escnn form."""

import json
import statistics

import pytest
import torch
from safetensors.torch import load_file

from geozoo.cli import main
from geozoo.zoo import create_model
from geozoo.zoo.publish import median_index

TINY_NET_DATA = [
    "--model.init_args.network.init_args.widths=[4, 8]",
    "--data.init_args.limit_train=128",
    "--data.init_args.offline_test_size=200",
    "--trainer.max_epochs=1",
]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_median_index_is_the_lower_middle():
    assert median_index([3.0, 1.0, 2.0]) == 2
    assert median_index([0.5, 0.9, 0.1, 0.7]) == 0  # sorted 0.1 0.5 0.7 0.9 -> 0.5
    assert median_index([5.0]) == 0
    assert median_index([1.0, 1.0, 1.0]) == 1  # ties keep the given order


def _train(tmp_path, *extra, seeds=(), force=False, output="cnn"):
    args = ["zoo", "train", "cnn_mnist", "--output-dir", str(tmp_path / output)]
    if seeds:
        args += ["--seeds", *map(str, seeds)]
    if force:
        args.append("--force")
    return main(
        [*args, "--", *TINY_NET_DATA, *QUIET, f"--trainer.default_root_dir={tmp_path}", *extra]
    )


def test_train_seeds_reports_spread_and_publishes_the_median(tmp_path, capsys):
    assert _train(tmp_path, "--model.init_args.optimizer.init_args.lr=0.01", seeds=(0, 1, 2)) == 0
    folder = (tmp_path / "cnn").resolve()
    assert f"wrote {folder}" in capsys.readouterr().out
    config = json.loads((folder / "config.json").read_text())
    summary = config["seeds"]
    assert summary["seeds"] == [0, 1, 2] and summary["primary_metric"] == "clean/acc"
    per_seed = [summary["per_seed"][str(s)] for s in (0, 1, 2)]
    primary = [m["clean/acc"] for m in per_seed]
    published = summary["published_seed"]
    assert primary[published] == sorted(primary)[1]
    assert config["seed"] == published and config["metrics"] == per_seed[published]
    for key in config["metrics"]:
        values = [m[key] for m in per_seed]
        assert summary["mean"][key] == pytest.approx(statistics.fmean(values), abs=0.006)
        assert summary["std"][key] == pytest.approx(statistics.stdev(values), abs=0.006)
    assert config["train_command"].startswith("geozoo zoo train cnn_mnist --seeds 0 1 2 -- ")
    card = (folder / "README.md").read_text()
    assert config["description"] == " ".join(config["description"].split())  # one line
    assert "## Seeds (3 runs)" in card and f"Published: seed {published}" in card
    assert "images/s" not in card and "seconds" not in json.dumps(config)
    # the published seed's weights reproduce its metrics
    assert main(["zoo", "eval", "cnn_mnist", "--weights", str(folder)]) == 0


def test_publishing_refuses_existing_folders_and_incomplete_runs(tmp_path, capsys):
    folder = tmp_path / "cnn"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert _train(tmp_path) == 2
    assert f"{folder.resolve()} already holds a checkpoint: pass --force" in capsys.readouterr().err
    assert (folder / "config.json").read_text() == "{}"
    # a folder of other things (e.g. the whole zoo, models/) is never replaced, even with --force
    other = tmp_path / "other"
    (other / "cnn_mnist").mkdir(parents=True)
    (other / "cnn_mnist" / "config.json").write_text("{}")
    assert _train(tmp_path, force=True, output="other") == 2
    assert "is not empty and holds no zoo entry" in capsys.readouterr().err
    assert (other / "cnn_mnist" / "config.json").read_text() == "{}"
    for extra, reason in [
        ("--trainer.fast_dev_run=true", "fast_dev_run"),
        ("--trainer.limit_train_batches=0.5", "limit_train_batches=0.5 runs 1 of 2"),
        ("--trainer.max_steps=1", "made 1 of the 2 optimizer steps"),
    ]:
        assert _train(tmp_path, extra, force=True) == 2
        assert reason in capsys.readouterr().err
        assert (folder / "config.json").read_text() == "{}"


def _fit(tmp_path, seed, *extra):
    root = tmp_path / f"fit{seed}"
    args = ["fit", "--config", "cnn_mnist", *TINY_NET_DATA, *QUIET, *extra]
    assert main([*args, f"--trainer.default_root_dir={root}", f"--seed_everything={seed}"]) == 0
    return next(root.glob("lightning_logs/version_*/checkpoints/*.ckpt"))


def test_export_fit_checkpoints(tmp_path, capsys):
    checkpoints = [_fit(tmp_path, seed) for seed in (5, 6)]
    out = tmp_path / "exported"
    args = ["zoo", "export", *map(str, checkpoints), "--name", "cnn_mnist"]
    # the shipped recipe alone is not what these runs were trained with
    assert main([*args, "--config", "cnn_mnist", "--output-dir", str(out)]) == 2
    assert "differs from" in capsys.readouterr().err and not out.exists()
    # the runs' own saved configurations
    assert main([*args, "--output-dir", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["seeds"]["seeds"] == [5, 6] and config["seed"] in (5, 6)
    # the published weights are the median checkpoint's network
    chosen = checkpoints[config["seeds"]["seeds"].index(config["seed"])]
    state = torch.load(chosen, map_location="cpu", weights_only=True)["state_dict"]
    model = create_model("cnn_mnist", weights=out)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[f"network.{key}"]), key
    # the shipped recipe plus the same overrides is accepted, and the card names it
    capsys.readouterr()
    command = [*args, "--config", "cnn_mnist", "--output-dir", str(out), "--force"]
    assert main([*command, "--comparison", str(tmp_path / "absent.md")]) == 2
    assert "--comparison expects a markdown file" in capsys.readouterr().err
    comparison = tmp_path / "comparison.md"
    comparison.write_text("| method | acc |\n|---|---|\n| baseline | 1.0 |\n")
    assert main([*command, "--comparison", str(comparison), "--", *TINY_NET_DATA]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"] == "configs/cnn_mnist.yaml"
    assert config["train_command"].startswith("geozoo fit --config configs/cnn_mnist.yaml ")
    card = (out / "README.md").read_text()
    assert "## Comparison\n\n| method | acc |\n|---|---|\n| baseline | 1.0 |" in card


def test_export_refuses_a_cut_run(tmp_path, capsys):
    checkpoint = _fit(tmp_path, 0, "--trainer.max_steps=1")
    args = ["zoo", "export", str(checkpoint), "--name", "cnn_mnist"]
    assert main([*args, "--output-dir", str(tmp_path / "out")]) == 2
    assert "made 1 of the 2 optimizer steps" in capsys.readouterr().err


def test_steerable_entry_ships_its_escnn_form_with_the_bases_it_was_trained_with(
    tmp_path, monkeypatch
):
    """A basis that differs from what escnn computes here (its elements reordered, as another
    BLAS kernel may order a degenerate solution) travels with the escnn form: the reloaded
    form is the published network, not the one the local basis would give."""
    pytest.importorskip("escnn")
    monkeypatch.setenv("GEOZOO_ESCNN_CACHE", str(tmp_path / "escnn"))
    from geozoo.data import MNISTDataModule
    from geozoo.nets.steerable import SteerableCNN
    from geozoo.zoo.publish import publish
    from geozoo.zoo.recipes import TrainedRun, recipe_path

    arguments = {"group": "c8", "widths": [2, 3, 4], "kernel_sizes": [5, 3, 3]}
    arguments |= {"pools": [True, True, False], "padding": 0}
    torch.manual_seed(0)
    network = SteerableCNN(**arguments)
    with torch.no_grad():
        network(torch.rand(8, 1, 28, 28))  # batch-norm statistics
        first = next(b for k, b in network.named_buffers() if k.endswith("sampled_basis"))
        first.copy_(first.roll(1, dims=0))  # still a basis, but not the one escnn computes
    network.eval()
    data = {"source": "offline", "pad_to": None, "offline_test_size": 100}
    data |= {"test_sets": ["clean", "rotated"], "limit_train": 64}
    run = TrainedRun(
        network=network,
        datamodule=MNISTDataModule(**data),
        arguments=arguments,
        network_class="geozoo.nets.SteerableCNN",
        data={"class_path": "geozoo.data.MNISTDataModule", "init_args": data},
        num_classes=10,
        seed=0,
        recipe=recipe_path("steerable_c8_rotmnist"),
        overrides=[],
    )
    folder, config = publish("steerable_c8_rotmnist", [run], tmp_path / "st")
    form = config["forms"]["escnn"]
    assert form["arguments"] == {"exported": False} and config["arguments"]["exported"] is True
    shipped = load_file(folder / form["file"])
    assert any(k.endswith("sampled_basis") for k in shipped)
    escnn_form = create_model("steerable_c8_rotmnist", weights=folder, exported=False)
    exported = create_model("steerable_c8_rotmnist", weights=folder)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1234))
    local = SteerableCNN(**arguments)  # the basis escnn computes here
    derived = ("sampled_basis", "filter", "expanded_bias")  # what escnn computes locally
    coefficients = {k: v for k, v in shipped.items() if not k.endswith(derived)}
    local.load_state_dict(coefficients, strict=False)
    with torch.no_grad():
        golden = torch.tensor(config["golden"]["outputs"])
        assert torch.allclose(escnn_form(x), network(x), atol=1e-5)
        assert torch.allclose(escnn_form(x), golden, atol=1e-4)
        assert torch.allclose(exported(x), golden, atol=1e-4)
        assert (local.eval()(x) - golden).abs().max() > 1e-2
    assert config["export"]["export_max_abs_logit_gap"] <= 1e-4
    assert "logit_rel_error_exact_float32_max" in config["measurements"]
    assert "exported=False" in (folder / "README.md").read_text()
