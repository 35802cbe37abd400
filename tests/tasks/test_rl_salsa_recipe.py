"""configs/rl_digitsum_salsa.yaml: the recipe fine-tunes its policy and the two ingredients of
its reference soup itself, and trains through the CLI."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import yaml

from geozoo.cli import build_cli
from geozoo.rl import DigitSumDataModule, DigitSumEnvironment, DigitSumPolicy, fine_tuned_policy
from geozoo.zoo.soup import ModelSoup, soup_state_dict

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "rl_digitsum_salsa.yaml"


def _shrunk(node):
    """The recipe with 2 fine-tuning steps of 8 prompts out of 64 (aliases share their
    dicts)."""
    if isinstance(node, dict):
        if node.get("class_path") == "geozoo.rl.fine_tuned_policy":
            node["init_args"].update(steps=2, batch_size=8)
        if node.get("class_path") == "geozoo.rl.DigitSumDataModule":
            node["init_args"].update(
                train_prompts=64, val_prompts=16, test_prompts=16, batch_size=16
            )
        for value in node.values():
            _shrunk(value)
    elif isinstance(node, list):
        for value in node:
            _shrunk(value)
    return node


def test_salsa_recipe_builds_its_soup_and_trains(tmp_path):
    config = _shrunk(yaml.safe_load(RECIPE.read_text()))
    path = tmp_path / "salsa.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = build_cli(
        [
            "--config",
            str(path),
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.max_steps=2",
            "--trainer.limit_val_batches=0",
        ],
        run=False,
    )
    task = cli.model
    assert isinstance(task.reference, ModelSoup) and task.warmup_steps == 0

    # the same fine-tunes, made here: the soup averages two data orders of one ancestor and the
    # RL policy starts from the first
    tune = config["model"]["init_args"]["network"]["init_args"]
    data = DigitSumDataModule(**tune["data"]["init_args"])
    build = functools.partial(DigitSumPolicy, **tune["policy"]["init_args"])
    first, second = (
        fine_tuned_policy(build, DigitSumEnvironment(), data, 2, 8, 3e-3, 0, order)
        for order in (0, 1)
    )
    for key, value in first.state_dict().items():
        assert torch.equal(task.network.state_dict()[key], value), key
    assert any(not torch.equal(v, second.state_dict()[k]) for k, v in first.state_dict().items())
    averaged = soup_state_dict([first.state_dict(), second.state_dict()])
    for key, value in task.reference.module.state_dict().items():
        assert torch.equal(averaged[key], value), key

    cli.trainer.fit(task, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 2
    assert torch.isfinite(cli.trainer.callback_metrics["train/kl_ref"])
