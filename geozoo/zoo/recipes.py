"""Recipes and training: the Lightning CLI behind ``geozoo fit`` and ``geozoo zoo train``.

A recipe is a LightningCLI YAML file (``configs/NAME.yaml`` in a checkout, shipped inside the
package when installed). :func:`lightning_cli` is the one place the CLI is configured; both the
``geozoo`` command and the zoo's publishing use it, so the library never calls its own command.
:func:`train_recipe` trains one seed in-process; :func:`load_fit_checkpoint` rebuilds a
``geozoo fit`` checkpoint the same way. Both refuse runs that did not complete.
"""

from __future__ import annotations

import inspect
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.cli import ArgsType, LightningCLI
from torch import nn

from geozoo.lightning_cli import DESCRIPTION, GeozooArgumentParser, GeozooCLI
from geozoo.zoo.hub import shipped_dir

__all__ = [
    "IncompleteRunError",
    "TrainedRun",
    "configs_dir",
    "lightning_cli",
    "load_fit_checkpoint",
    "recipe_path",
    "resolve_config_args",
    "train_recipe",
]


class IncompleteRunError(RuntimeError):
    """A training run that did not run its full schedule cannot be published."""


def configs_dir() -> Path:
    """The shipped recipes: ``configs/`` of a source checkout (or editable install), else the
    copy inside the installed package (``geozoo/_shipped/configs``)."""
    return shipped_dir("configs")


def recipe_path(name_or_path: str | Path) -> Path:
    """``NAME`` (a shipped recipe) or a path to a YAML file -> an existing file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = configs_dir() / f"{path.name}.yaml"
    if path.suffix == "" and len(path.parts) == 1 and shipped.is_file():
        return shipped
    known = sorted(p.stem for p in configs_dir().glob("*.yaml"))
    raise FileNotFoundError(
        f"no recipe {str(name_or_path)!r}: expected a YAML file or a shipped recipe name, one "
        f"of {known} (in {configs_dir()})"
    )


def resolve_config_args(argv: Sequence[str]) -> list[str]:
    """``--config NAME`` -> ``--config <shipped recipe NAME>`` where NAME is not a file."""
    out = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            index, value, prefix = i + 1, argv[i + 1], ""
        elif arg.startswith("--config="):
            index, value, prefix = i, arg.split("=", 1)[1], "--config="
        else:
            continue
        if Path(value).exists() or "/" in value or value.endswith((".yaml", ".yml")):
            continue
        shipped = configs_dir() / f"{value}.yaml"
        if shipped.is_file():
            out[index] = f"{prefix}{shipped}"
    return out


def lightning_cli(args: ArgsType = None, run: bool = True) -> LightningCLI:
    """LightningCLI in subclass mode (``class_path``/``init_args`` YAML for model and data);
    ``args`` as on the command line, ``run=False`` only parses and instantiates."""
    return GeozooCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_class=GeozooArgumentParser,
        parser_kwargs={"prog": "geozoo", "description": DESCRIPTION},
        args=args,
        run=run,
    )


def _plain(value: Any) -> Any:
    """jsonargparse namespaces / tuples -> JSON-ready dicts and lists."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class TrainedRun:
    """One trained network with what publishing needs to know about it.

    Attributes:
        network: the trained network (CPU, eval mode).
        datamodule: the recipe's data module (its test sets are the held-out evaluation).
        arguments: the network's ``init_args`` in the recipe (the builder's arguments).
        network_class: the recipe's ``class_path`` of the network.
        data: the data module as ``{"class_path", "init_args"}`` (rebuilt by ``zoo eval``).
        num_classes: the task's ``num_classes`` (0 when it has none).
        seed: ``seed_everything`` of the run.
        recipe: the YAML file the run was configured from.
        overrides: the command-line arguments given on top of the recipe.
    """

    network: nn.Module
    datamodule: L.LightningDataModule
    arguments: dict[str, Any]
    network_class: str
    data: dict[str, Any]
    num_classes: int
    seed: int
    recipe: Path
    overrides: list[str]


def _parse(recipe: Path, overrides: Sequence[str]) -> tuple[LightningCLI, dict[str, Any]]:
    cli = lightning_cli(["--config", str(recipe), *overrides], run=False)
    return cli, _plain(cli.config)


def _run(cli: LightningCLI, config: dict[str, Any], recipe: Path, overrides: list[str]):
    network_spec = config["model"]["init_args"]["network"]
    return TrainedRun(
        network=cli.model.network.cpu().eval(),
        datamodule=cli.datamodule,
        arguments=dict(network_spec.get("init_args", {})),
        network_class=network_spec["class_path"],
        data={"class_path": config["data"]["class_path"], "init_args": config["data"]["init_args"]},
        num_classes=int(config["model"]["init_args"].get("num_classes") or 0),
        seed=int(config["seed_everything"]),
        recipe=recipe,
        overrides=overrides,
    )


def _batches(limit: int | float, loader: Any) -> int | None:
    """How many batches ``limit`` cuts a loader to, or None when it runs in full."""
    total = len(loader)
    if isinstance(limit, float):
        return None if limit >= 1.0 else int(limit * total)
    return None if limit >= total else int(limit)


def _check_settings(trainer: L.Trainer, datamodule: L.LightningDataModule) -> None:
    if trainer.fast_dev_run:
        raise IncompleteRunError("fast_dev_run trains on a batch or two: not publishable")
    datamodule.setup("fit")
    for stage, limit, loader in (
        ("train", trainer.limit_train_batches, datamodule.train_dataloader()),
        ("val", trainer.limit_val_batches, datamodule.val_dataloader()),
    ):
        cut = _batches(limit, loader)
        if cut is not None:
            raise IncompleteRunError(
                f"limit_{stage}_batches={limit} runs {cut} of {len(loader)} {stage} batches: "
                "only full runs are published"
            )


def _full_steps(trainer: L.Trainer, datamodule: L.LightningDataModule) -> int:
    """Optimizer steps of the full schedule: ``max_epochs`` epochs of every training batch."""
    batches = len(datamodule.train_dataloader())
    return max(trainer.max_epochs or 0, 0) * math.ceil(batches / trainer.accumulate_grad_batches)


def _check_schedule(steps_done: int, full_steps: int, stopped_early: bool = False) -> None:
    if steps_done < full_steps and not stopped_early:
        raise IncompleteRunError(
            f"the run made {steps_done} of the {full_steps} optimizer steps of its max_epochs "
            "(max_steps, max_time or an interruption cut it; EarlyStopping is the one accepted "
            "early stop): only full runs are published"
        )


def train_recipe(
    recipe: str | Path, seed: int | None = None, overrides: Sequence[str] = ()
) -> TrainedRun:
    """Train ``recipe`` (a shipped name or a YAML path) in-process through Lightning.

    Args:
        recipe: the recipe.
        seed: ``seed_everything`` (default: the recipe's).
        overrides: further CLI arguments, e.g. ``["--trainer.max_epochs=3"]``.

    Raises:
        IncompleteRunError: for fast_dev_run, limited batches, or a schedule cut short.
    """
    path = recipe_path(recipe)
    overrides = [*overrides, *([f"--seed_everything={seed}"] if seed is not None else [])]
    cli, config = _parse(path, overrides)
    _check_settings(cli.trainer, cli.datamodule)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    trainer = cli.trainer
    if trainer.interrupted:
        raise IncompleteRunError("training was interrupted")
    stopped_early = any(
        isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks
    )
    _check_schedule(trainer.global_step, _full_steps(trainer, cli.datamodule), stopped_early)
    return _run(cli, config, path, overrides)


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} vs {b!r}"]


def _saved_config(checkpoint: Path) -> dict[str, Any] | None:
    """The ``config.yaml`` Lightning's SaveConfigCallback wrote into the checkpoint's run,
    without the arguments of ``Trainer.fit`` itself (``ckpt_path``...), which a recipe lacks."""
    saved = checkpoint.resolve().parent.parent / "config.yaml"
    if not saved.is_file():
        return None
    config = yaml.safe_load(saved.read_text())
    for key in inspect.signature(L.Trainer.fit).parameters:  # ckpt_path, weights_only, ...
        if key not in ("model", "datamodule"):
            config.pop(key, None)
    return config


def load_fit_checkpoint(
    checkpoint: str | Path, recipe: str | Path | None = None, overrides: Sequence[str] = ()
) -> TrainedRun:
    """Rebuild the network of a ``geozoo fit`` checkpoint (a Lightning ``.ckpt``).

    The run is configured from ``recipe`` (+ ``overrides``) if given, else from the
    ``config.yaml`` Lightning saved in the run folder (the checkpoint's ``../config.yaml``).
    When both exist they must agree on the model, the data and ``max_epochs``, and the seed is
    the run's. The checkpoint must have made every optimizer step of ``max_epochs`` epochs.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    saved = _saved_config(checkpoint)
    saved_path = checkpoint.resolve().parent.parent / "config.yaml"
    if recipe is None and saved is None:
        raise FileNotFoundError(
            f"no config.yaml in the run folder of {checkpoint}: pass the recipe it was trained "
            "with (--config)"
        )
    overrides = list(overrides)
    if recipe is not None:
        path = recipe_path(recipe)
        cli, config = _parse(path, overrides)
    else:
        path = saved_path
        with tempfile.TemporaryDirectory() as folder:
            cleaned = Path(folder) / "config.yaml"
            cleaned.write_text(yaml.safe_dump(saved))
            cli, config = _parse(cleaned, overrides)
    if recipe is not None and saved is not None:
        ran = _plain(cli.parser.parse_object(saved))
        saved = saved_path
        overrides.append(f"--seed_everything={ran['seed_everything']}")
        config["seed_everything"] = ran["seed_everything"]
        keys = ("model", "data")
        differences = _differences(
            {k: config[k] for k in keys} | {"max_epochs": config["trainer"]["max_epochs"]},
            {k: ran[k] for k in keys} | {"max_epochs": ran["trainer"]["max_epochs"]},
        )
        if differences:
            raise ValueError(
                f"{checkpoint} was trained with {saved}, which differs from {path}: "
                + "; ".join(differences[:8])
            )
    _check_settings(cli.trainer, cli.datamodule)
    try:
        content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{checkpoint} is not a readable Lightning checkpoint: {error}") from error
    if "state_dict" not in content:
        raise ValueError(f"{checkpoint} has no state_dict: is it a Lightning checkpoint?")
    _check_schedule(int(content.get("global_step", 0)), _full_steps(cli.trainer, cli.datamodule))
    prefix = "network."
    state = {k[len(prefix) :]: v for k, v in content["state_dict"].items() if k.startswith(prefix)}
    network = cli.model.network
    try:
        network.load_state_dict(state)
    except RuntimeError:
        # saved in training mode: escnn convolutions then hold no expanded-filter buffer
        network.train()
        network.load_state_dict(state)
    return _run(cli, config, path, overrides)
