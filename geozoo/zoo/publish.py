"""Train a zoo entry from its recipe and publish it as a checkpoint folder.

``publish_entry("cnn_mnist")`` runs ``geozoo fit --config configs/cnn_mnist.yaml``, checks that
``create_model("cnn_mnist", **arguments)`` rebuilds the trained network exactly (same logits after
loading), evaluates it on the held-out test sets and writes ``models/cnn_mnist/``.
"""

from __future__ import annotations

import datetime
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from geozoo.zoo.cards import render_model_card
from geozoo.zoo.evaluate import evaluate_classifier, measure_throughput
from geozoo.zoo.hub import models_dir
from geozoo.zoo.registry import model_entrypoint
from geozoo.zoo.weights import load_verified_state_dict, save_checkpoint

__all__ = ["publish_entry", "recipe_path"]


def recipe_path(name: str) -> Path:
    return models_dir().parent / "configs" / f"{name}.yaml"


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


def _describe_data(datamodule: Any) -> str:
    sizes = {name: len(dataset) for name, dataset in datamodule.datasets.items()}
    test = sizes[f"test_{datamodule.test_set_names[0]}"]
    return (
        f"{type(datamodule).__name__}, source {datamodule.source_used}: {sizes['train']} train / "
        f"{sizes['val']} val / {test} held-out test digits; test sets {datamodule.test_set_names}"
    )


def publish_entry(
    name: str,
    output_dir: str | Path | None = None,
    cli_args: Sequence[str] = (),
    recipe: str | Path | None = None,
    description: str = "",
    notes: str = "",
    throughput: bool = True,
) -> dict[str, Any]:
    """Train ``name`` from its recipe, verify, evaluate and write its checkpoint folder.

    Args:
        name: registered model name; its recipe is ``configs/NAME.yaml`` unless ``recipe`` given.
        output_dir: where to write (default ``models/NAME``).
        cli_args: extra ``geozoo fit`` arguments, e.g. ``["--trainer.max_epochs=1"]``.
        description, notes: text for the model card.
        throughput: measure train/inference images/s (batch 32) for the card.

    Returns:
        The written config.
    """
    from geozoo.cli import build_cli

    builder = model_entrypoint(name)
    recipe = Path(recipe) if recipe else recipe_path(name)
    if not recipe.is_file():
        raise FileNotFoundError(f"no recipe for {name!r}: expected {recipe}")
    output_dir = Path(output_dir) if output_dir else models_dir() / name
    cli = build_cli(["fit", "--config", str(recipe), *cli_args])
    fit_config = cli.config["fit"]
    network_spec = _plain(fit_config["model"]["init_args"]["network"])
    data_spec = _plain(fit_config["data"])
    network = cli.model.network.cpu().eval()
    datamodule = cli.datamodule

    arguments = network_spec.get("init_args", {})
    rebuilt = builder(**arguments)
    if type(rebuilt) is not type(network):
        raise TypeError(
            f"configs/{name}.yaml trains a {type(network).__name__}, but the registered builder "
            f"{name!r} makes a {type(rebuilt).__name__}"
        )

    datamodule.setup("test")
    metrics = evaluate_classifier(network, datamodule.test_loaders_by_name())
    eval_data = {"class_path": data_spec["class_path"], "init_args": dict(data_spec["init_args"])}
    eval_data["init_args"].pop("train_augment", None)
    input_size = list(datamodule.image_size)
    config: dict[str, Any] = {
        "name": name,
        "architecture": name,
        "network_class": f"{type(network).__module__}.{type(network).__qualname__}",
        "arguments": arguments,
        "description": description or (builder.__doc__ or "").strip(),
        "input": {"input_size": input_size, "value_range": [0.0, 1.0], "dtype": "float32"},
        "num_classes": int(fit_config["model"]["init_args"].get("num_classes", 10)),
        "recipe": str(recipe.relative_to(recipe.parents[1]))
        if recipe.is_absolute()
        else str(recipe),
        "data": {
            "description": _describe_data(datamodule),
            "source": datamodule.source_used,
        },
        "metrics": metrics,
        "metrics_command": f"geozoo zoo eval {name}",
        "evaluation": {"data": eval_data},
        "train_command": f"python scripts/train_zoo.py {name}",
        "created": datetime.date.today().isoformat(),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    if throughput:
        shape = tuple(input_size)
        config["measurements"] = {
            "train_images_per_s": round(
                measure_throughput(builder(**arguments), shape, train=True), 1
            ),
            "infer_images_per_s": round(measure_throughput(network, shape, train=False), 1),
            "note": f"batch 32, one Adam step for training, {torch.get_num_threads()} CPU threads, "
            f"{platform.processor() or platform.machine()}; measured by "
            f"`python scripts/train_zoo.py {name}` while publishing",
        }
    if notes:
        config["notes"] = notes
    written = save_checkpoint(network, output_dir, config)
    (output_dir / "README.md").write_text(render_model_card(written))

    reloaded = builder(**arguments)
    reloaded.load_state_dict(
        load_verified_state_dict(
            output_dir / written["weights"]["file"], written["weights"]["sha256"]
        )
    )
    probe = next(iter(datamodule.test_dataloader()[0]))[0][:16]
    with torch.no_grad():
        if not torch.equal(reloaded.eval()(probe), network(probe)):
            raise RuntimeError(f"reloaded {name} gives different logits from the trained network")
    return written
