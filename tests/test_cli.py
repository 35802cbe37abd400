"""The `geozoo` command, driven in-process."""

import json

import pytest

from geozoo.cli import main

RECIPE = "configs/cnn_mnist.yaml"
TINY = [
    "--model.init_args.network.init_args.widths=[4, 8]",
    "--data.init_args.limit_train=128",
    "--data.init_args.offline_test_size=200",
    "--trainer.max_epochs=1",
    "--trainer.enable_progress_bar=false",
]


def test_fit_fast_dev_run(tmp_path):
    assert (
        main(
            [
                "fit",
                "--config",
                RECIPE,
                "--trainer.fast_dev_run=1",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
        == 0
    )


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
    monkeypatch.chdir(tmp_path.parent)  # lightning_logs land outside the repo
    folder = tmp_path / "cnn_tiny"
    from geozoo.zoo.publish import publish_entry, recipe_path

    written = publish_entry(
        "cnn_mnist",
        output_dir=folder,
        recipe=recipe_path("cnn_mnist"),
        cli_args=[*TINY, f"--trainer.default_root_dir={tmp_path}"],
        throughput=False,
    )
    assert set(written["metrics"]) == {"clean/acc", "clean/ece", "affnist/acc", "affnist/ece"}
    assert (folder / "README.md").read_text().count(written["weights"]["sha256"]) == 1
    capsys.readouterr()
    assert main(["zoo", "show", "cnn_mnist", "--weights", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out)["weights"]["sha256"] == written["weights"]["sha256"]
    assert main(["zoo", "eval", "cnn_mnist", "--weights", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "affnist/acc" in out and "+0.00" in out


def test_zoo_list_pattern(capsys):
    assert main(["zoo", "list", "cnn_*"]) == 0
    assert "cnn_mnist" in capsys.readouterr().out.split()


def test_zoo_unknown_model_is_a_clean_error(capsys):
    assert main(["zoo", "show", "no_such_model"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err


def test_progress_bar_and_logger_are_on_by_default(tmp_path):
    from lightning.pytorch.callbacks import ProgressBar

    from geozoo.cli import build_cli

    cli = build_cli(["--config", RECIPE, f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert cli.trainer.logger is not None
    assert any(isinstance(c, ProgressBar) for c in cli.trainer.callbacks)


def test_optimizer_and_scheduler_come_from_the_yaml(tmp_path):
    from geozoo.cli import build_cli

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


def test_validate_and_test_subcommands(tmp_path, capsys):
    for command in ("validate", "test"):
        assert (
            main(
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
            == 0
        )
    out = capsys.readouterr().out
    assert "test/clean/acc" in out and "test/affnist/acc" in out
