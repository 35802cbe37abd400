"""The `geozoo` command, driven in-process."""

import json
from pathlib import Path

import pytest
import torch

from geozoo.cli import build_cli, main
from geozoo.zoo.recipes import recipe_path, resolve_config_args

RECIPE = "configs/cnn_mnist.yaml"
TINY = [
    "--model.init_args.network.init_args.widths=[4, 8]",
    "--data.init_args.limit_train=128",
    "--data.init_args.offline_test_size=200",
    "--trainer.max_epochs=1",
    "--trainer.enable_progress_bar=false",
]


def test_fit_logs_the_task_metrics(tmp_path):
    cli = build_cli(["fit", "--config", RECIPE, *TINY, f"--trainer.default_root_dir={tmp_path}"])
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.state.finished and cli.trainer.current_epoch == 1
    for key in ("train/acc", "val/acc", "val/ece", "val/loss"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert 0.0 <= float(metrics["val/acc"]) <= 1.0 and 0.0 <= float(metrics["val/ece"]) <= 1.0
    # the logged validation accuracy is the network's accuracy on the validation digits
    network, datamodule = cli.model.network.eval(), cli.datamodule
    with torch.no_grad():
        hits = [(network(x).argmax(-1) == y).float() for x, y in datamodule.val_dataloader()]
    assert float(metrics["val/acc"]) == pytest.approx(float(torch.cat(hits).mean()), abs=1e-6)


def test_fit_fast_dev_run(tmp_path):
    cli = build_cli(
        [
            "fit",
            "--config",
            RECIPE,
            "--trainer.fast_dev_run=1",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    assert cli.trainer.global_step == 1 and "train/acc" in cli.trainer.callback_metrics


def test_config_finds_a_shipped_recipe_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    args = resolve_config_args(["fit", "--config", "cnn_mnist", "--trainer.max_epochs=1"])
    assert Path(args[2]) == recipe_path("cnn_mnist") and Path(args[2]).is_file()
    assert resolve_config_args(["--config=cnn_mnist"]) == [f"--config={recipe_path('cnn_mnist')}"]
    assert resolve_config_args(["--config", "my.yaml"]) == ["--config", "my.yaml"]
    cli = build_cli(resolve_config_args(["--config", "cnn_mnist"]), run=False)
    assert type(cli.model.network).__name__ == "PlainCNN"


def test_unknown_config_key_is_reported_by_name(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", RECIPE, "--model.init_args.network.init_args.widthz=[4]"])
    assert info.value.code != 0
    assert "widthz" in capsys.readouterr().err


def test_unknown_objective_class_is_reported(capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                "--config",
                RECIPE,
                "--model.init_args.objectives=[{class_path: geozoo.objectives.NoSuchLoss}]",
            ]
        )
    assert "NoSuchLoss" in capsys.readouterr().err


def test_zoo_train_show_eval_round_trip(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # lightning_logs land outside the repo
    folder = tmp_path / "cnn_tiny"
    args = ["zoo", "train", "cnn_mnist", "--output-dir", str(folder), "--"]
    assert main([*args, *TINY, f"--trainer.default_root_dir={tmp_path}"]) == 0
    assert f"wrote {folder.resolve()}" in capsys.readouterr().out
    written = json.loads((folder / "config.json").read_text())
    assert set(written["metrics"]) == {
        f"{name}/{metric}"
        for name in ("clean", "affnist", "affnist_wide")
        for metric in ("acc", "ece")
    }
    assert (folder / "README.md").read_text().count(written["weights"]["sha256"]) == 1
    assert main(["zoo", "show", "cnn_mnist", "--weights", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out)["weights"]["sha256"] == written["weights"]["sha256"]
    assert main(["zoo", "eval", "cnn_mnist", "--weights", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "affnist/acc" in out and "+0.00" in out


def test_zoo_eval_names_a_broken_config(tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text('{"name": "cnn_mnist", "architecture": "cnn_')
    assert main(["zoo", "eval", "cnn_mnist", "--weights", str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(folder / "config.json") in err and "not valid JSON (line 1" in err


def test_zoo_list_pattern(capsys):
    assert main(["zoo", "list", "cnn_*"]) == 0
    assert "cnn_mnist" in capsys.readouterr().out.split()


def test_zoo_unknown_model_is_a_clean_error(capsys):
    assert main(["zoo", "show", "no_such_model"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err


def test_progress_bar_and_logger_are_on_by_default(tmp_path):
    from lightning.pytorch.callbacks import ProgressBar

    cli = build_cli(["--config", RECIPE, f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert cli.trainer.logger is not None
    assert any(isinstance(c, ProgressBar) for c in cli.trainer.callbacks)


def test_optimizer_and_scheduler_come_from_the_yaml(tmp_path):

    cli = build_cli(
        [
            "--config",
            RECIPE,
            "--model.init_args.optimizer.init_args.lr=0.0123",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        run=False,
    )
    config = cli.model.configure_optimizers()
    assert isinstance(config["optimizer"], __import__("torch").optim.AdamW)
    assert config["optimizer"].param_groups[0]["lr"] == 0.0123
    assert type(config["lr_scheduler"]["scheduler"]).__name__ == "CosineAnnealingLR"


def test_validate_and_test_subcommands_log_what_the_network_scores(tmp_path):
    from geozoo.zoo.pretrained import classification_metrics

    logged = {}
    for command in ("validate", "test"):
        cli = build_cli(
            [
                command,
                "--config",
                RECIPE,
                *TINY,
                f"--trainer.default_root_dir={tmp_path}",
                "--trainer.limit_test_batches=2",
                "--trainer.limit_val_batches=2",
            ]
        )
        logged.update({k: float(v) for k, v in cli.trainer.callback_metrics.items()})
    assert "val/acc" in logged and "val/loss" in logged
    # the test metrics are the zoo's metrics of the same network on the same two batches
    cli.datamodule.setup("test")
    two_batches = {
        name: [batch for _, batch in zip(range(2), loader)]
        for name, loader in cli.datamodule.test_loaders_by_name().items()
    }
    expected = classification_metrics(cli.model.network, two_batches, 10)
    for name in ("clean", "affnist"):
        assert 100 * logged[f"test/{name}/acc"] == pytest.approx(expected[f"{name}/acc"], abs=0.01)
        assert 100 * logged[f"test/{name}/ece"] == pytest.approx(expected[f"{name}/ece"], abs=0.01)
