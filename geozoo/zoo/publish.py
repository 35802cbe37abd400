"""The one publishing path of the zoo: trained runs -> an evaluated, carded checkpoint folder.

``publish(name, runs)`` takes one or more trained runs of the registered model ``name`` (from
:func:`geozoo.zoo.recipes.train_recipe`, i.e. ``geozoo zoo train``, or from ``geozoo fit``
checkpoints via :func:`geozoo.zoo.recipes.load_fit_checkpoint`, i.e. ``geozoo zoo export``) and,
for each, applies the export step, the temperature scaling (fitted on validation data) and the
metrics that the builder declares (:class:`geozoo.zoo.pretrained.PretrainedCfg`). Over several
seeds it reports the mean and standard deviation of every metric and publishes the median seed
by the primary metric (never the best one). It writes the folder beside the target, checks that
every shipped form reloads to the network it came from, and only then moves it into place.
"""

from __future__ import annotations

import datetime
import platform
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geozoo.zoo.calibrate import fold_temperature_fitted_on
from geozoo.zoo.cards import render_model_card
from geozoo.zoo.evaluate import held_out_loaders, validation_loader
from geozoo.zoo.factory import create_model
from geozoo.zoo.hub import models_dir
from geozoo.zoo.pretrained import PretrainedCfg, Published
from geozoo.zoo.recipes import (
    TrainedRun,
    configs_dir,
    load_fit_checkpoint,
    recipe_path,
    train_recipe,
)
from geozoo.zoo.registry import model_entrypoint, pretrained_cfg
from geozoo.zoo.weights import CONFIG_FILE, WEIGHTS_FILE, save_weights, write_config

__all__ = [
    "GOLDEN_SEED",
    "check_target",
    "export_checkpoints",
    "median_index",
    "publish",
    "target_folder",
    "train_entry",
]

#: The golden input is ``InputSpec.example(4, seed=GOLDEN_SEED)``.
GOLDEN_SEED = 1234
#: Largest logit change allowed between a shipped form and its reload (the published form
#: must reload exactly).
RELOAD_TOLERANCE = 1e-5


def target_folder(name: str, output_dir: str | Path | None) -> Path:
    """Where ``name`` is written: ``output_dir`` or the zoo's own folder for it."""
    return Path(output_dir) if output_dir is not None else models_dir() / name


def check_target(folder: Path, force: bool) -> None:
    """Refuse to overwrite a published checkpoint unless ``force``, and any other non-empty folder
    always (publishing replaces the whole folder; checked before training)."""
    if folder.is_dir() and not (folder / CONFIG_FILE).exists() and any(folder.iterdir()):
        raise FileExistsError(
            f"{folder.resolve()} is not empty and holds no zoo entry ({CONFIG_FILE}): publishing "
            "replaces the whole folder, so give an absent or empty folder, or an entry's own "
            "folder (e.g. models/NAME, not models)"
        )
    if (folder / CONFIG_FILE).exists() and not force:
        raise FileExistsError(
            f"{folder.resolve()} already holds a checkpoint: pass --force (force=True) to "
            "replace it"
        )


def median_index(values: Sequence[float]) -> int:
    """Index of the median of ``values`` (the lower middle one for an even count; ties keep
    the given order)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    return order[(len(values) - 1) // 2]


@dataclass
class _Candidate:
    run: TrainedRun
    published: Published
    arguments: dict[str, Any]
    loaders: dict[str, Any]
    metrics: dict[str, float]


def _candidate(name: str, cfg: PretrainedCfg, run: TrainedRun) -> _Candidate:
    rebuilt = model_entrypoint(name)(**run.arguments)
    if type(rebuilt) is not type(run.network):
        raise TypeError(
            f"the recipe trains a {type(run.network).__name__}, but the registered builder "
            f"{name!r} makes a {type(rebuilt).__name__}"
        )
    run.network.eval()
    published = cfg.export(run.network) if cfg.export else Published(run.network)
    published.network.eval()
    if cfg.temperature_layer is not None:
        if published.forms:
            raise ValueError(
                f"{name} declares temperature_layer={cfg.temperature_layer!r} and its export "
                f"ships other forms ({', '.join(f.name for f in published.forms)}); the "
                "temperature is folded into the published network only, so those forms would "
                "ship uncalibrated"
            )
        published.info["temperature_scaling"] = fold_temperature_fitted_on(
            published.network, cfg.temperature_layer, validation_loader(run.datamodule)
        )
    loaders = held_out_loaders(run.datamodule)
    metrics = cfg.metrics(published.network, loaders, run.num_classes)
    return _Candidate(run, published, {**run.arguments, **published.arguments}, loaders, metrics)


def _seed_summary(candidates: list[_Candidate], primary: str, chosen: int) -> dict[str, Any]:
    keys = list(candidates[0].metrics)
    per_seed = {str(c.run.seed): c.metrics for c in candidates}
    return {
        "seeds": [c.run.seed for c in candidates],
        "primary_metric": primary,
        "published_seed": candidates[chosen].run.seed,
        "rule": "median seed by the primary metric (lower middle for an even count)",
        "mean": {k: round(statistics.fmean(c.metrics[k] for c in candidates), 2) for k in keys},
        "std": {k: round(statistics.stdev(c.metrics[k] for c in candidates), 2) for k in keys},
        "per_seed": per_seed,
    }


def _describe_data(datamodule: Any, text: str) -> str:
    sizes = ", ".join(f"{len(d):,} {k}" for k, d in getattr(datamodule, "datasets", {}).items())
    source = getattr(datamodule, "source_used", None)
    facts = f"{type(datamodule).__name__}{f' (source {source})' if source else ''}: {sizes}"
    return f"{text} {facts}".strip()


def _recipe_name(path: Path) -> str:
    shipped = configs_dir().resolve()
    return f"configs/{path.name}" if path.resolve().parent == shipped else str(path)


def _golden(cfg: PretrainedCfg, network: torch.nn.Module) -> dict[str, Any]:
    """Outputs of the published network on the seeded example batch of its input spec."""
    x = cfg.input.example(4, seed=GOLDEN_SEED)
    with torch.no_grad():
        outputs = network(x)
    return {
        "input": f"InputSpec.example(4, seed={GOLDEN_SEED}) of the card's input spec",
        "batch": 4,
        "seed": GOLDEN_SEED,
        "outputs": [[round(float(v), 5) for v in row] for row in outputs.reshape(4, -1)],
    }


def _verify(name: str, folder: Path, cfg: PretrainedCfg, candidate: _Candidate) -> None:
    """Every shipped form, rebuilt from the folder, computes what was trained."""
    x = cfg.input.example(4, seed=GOLDEN_SEED)
    modules = [({}, candidate.published.network, 0.0)] + [
        (form.arguments, form.module, RELOAD_TOLERANCE) for form in candidate.published.forms
    ]
    for overrides, module, tolerance in modules:
        reloaded = create_model(name, weights=folder, **overrides)
        with torch.no_grad():
            gap = float((reloaded(x) - module.eval()(x)).abs().max())
        if gap > tolerance:
            raise RuntimeError(
                f"{name} {overrides or 'published form'} reloaded from {folder} differs from the "
                f"trained network by {gap:.2e} (allowed {tolerance:g})"
            )


def publish(
    name: str,
    runs: Sequence[TrainedRun],
    output_dir: str | Path | None = None,
    force: bool = False,
    train_command: str = "",
    comparison: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Evaluate ``runs`` of ``name``, publish the median one, write and verify its folder.

    Args:
        name: the registered model.
        runs: trained runs (one per seed).
        output_dir: target folder (default: the zoo's folder for ``name``).
        comparison: markdown comparing the entry with its baselines, as printed by a script of
            the repo (which it names); the card shows it under "Comparison".
        force: replace an existing checkpoint there.
        train_command: the command that reproduces the runs, for the card.

    Returns:
        The folder written (absolute) and its config.
    """
    if not runs:
        raise ValueError("publish needs at least one trained run")
    cfg = pretrained_cfg(name)
    folder = target_folder(name, output_dir).resolve()
    check_target(folder, force)
    candidates = [_candidate(name, cfg, run) for run in runs]
    primary = cfg.pick_primary(candidates[0].metrics)
    chosen_index = median_index([c.metrics[primary] for c in candidates])
    chosen = candidates[chosen_index]
    run, published = chosen.run, chosen.published
    network = published.network
    config: dict[str, Any] = {
        "name": name,
        "architecture": name,
        "network_class": f"{type(network).__module__}.{type(network).__qualname__}",
        "arguments": chosen.arguments,
        "description": " ".join(
            (
                cfg.description or (model_entrypoint(name).__doc__ or "").strip().split("\n\n")[0]
            ).split()
        ),
        "input": cfg.input.as_dict(),
        "num_classes": run.num_classes,
        "recipe": _recipe_name(run.recipe),
        "seed": run.seed,
        "data": {"description": _describe_data(run.datamodule, cfg.data_description)},
        "metrics": chosen.metrics,
        "metrics_command": f"geozoo zoo eval {name}",
        "evaluation": {"data": run.data},
        "train_command": train_command or f"geozoo zoo train {name}",
        "created": datetime.date.today().isoformat(),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    if len(candidates) > 1:
        config["seeds"] = _seed_summary(candidates, primary, chosen_index)
    if published.info:
        config["export"] = published.info
    if cfg.measure is not None:
        config["measurements"] = cfg.measure(network, chosen.arguments, chosen.loaders)
    config["golden"] = _golden(cfg, network)
    if cfg.notes:
        config["notes"] = cfg.notes
    if comparison:
        config["comparison"] = comparison.strip()

    staging = folder.with_name(f"{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    config["weights"] = save_weights(network, staging / WEIGHTS_FILE)
    if published.forms:
        config["forms"] = {
            form.name: {
                "arguments": form.arguments,
                "description": form.description,
                **save_weights(form.module, staging / f"{form.name}_weights.safetensors"),
            }
            for form in published.forms
        }
    write_config(staging, config)
    (staging / "README.md").write_text(render_model_card(config))
    _verify(name, staging, cfg, chosen)
    if folder.exists():
        shutil.rmtree(folder)
    staging.replace(folder)
    return folder, config


def _quoted(args: Sequence[str]) -> str:
    return " ".join(args)


def train_entry(
    name: str,
    seeds: Sequence[int] | None = None,
    overrides: Sequence[str] = (),
    output_dir: str | Path | None = None,
    force: bool = False,
    recipe: str | Path | None = None,
    comparison: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """``geozoo zoo train``: train ``name`` from its recipe once per seed and publish it.

    Args:
        seeds: ``seed_everything`` of each run (default: one run with the recipe's seed).
        overrides: CLI arguments on top of the recipe, e.g. ``["--trainer.max_epochs=3"]``.
        recipe: another recipe (default: the shipped one named ``name``).
        comparison: see :func:`publish`.
    """
    pretrained_cfg(name)  # fail before training for a builder that declares no entry
    check_target(target_folder(name, output_dir).resolve(), force)
    path = recipe_path(recipe or name)
    runs = [train_recipe(path, seed, overrides) for seed in (seeds or [None])]
    command = f"geozoo zoo train {name}"
    if recipe is not None:
        command += f" --recipe {_recipe_name(path)}"
    if seeds:
        command += f" --seeds {_quoted(map(str, seeds))}"
    if overrides:
        command += f" -- {_quoted(overrides)}"
    return publish(name, runs, output_dir, force, command, comparison)


def export_checkpoints(
    name: str,
    checkpoints: Sequence[str | Path],
    recipe: str | Path | None = None,
    overrides: Sequence[str] = (),
    output_dir: str | Path | None = None,
    force: bool = False,
    comparison: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """``geozoo zoo export``: publish ``geozoo fit`` checkpoints (one per seed) of ``name``.

    Each checkpoint is rebuilt from ``recipe`` if given, else from the ``config.yaml`` that
    Lightning saved in its run folder; the median seed is published as by ``zoo train``;
    ``comparison`` as in :func:`publish`.
    """
    pretrained_cfg(name)
    check_target(target_folder(name, output_dir).resolve(), force)
    runs = [load_fit_checkpoint(ckpt, recipe, overrides) for ckpt in checkpoints]
    fits = sorted(
        {
            " ".join(
                ["--config", _recipe_name(r.recipe)]
                + [o for o in r.overrides if not o.startswith("--seed_everything")]
            )
            for r in runs
        }
    )
    command = (
        f"geozoo fit {' / '.join(fits)} (seed_everything {', '.join(str(r.seed) for r in runs)}),"
        f" then geozoo zoo export CKPT ... --name {name}"
    )
    if recipe is not None:
        command += f" --config {_recipe_name(runs[0].recipe)}"
        if overrides:
            command += f" -- {_quoted(overrides)}"
    return publish(name, runs, output_dir, force, command, comparison)
