"""Distil the zoo's ``cnn_mnist`` into ``cnn_mnist_tiny`` with every divergence and method.

Every run is a shipped recipe (``configs/distill_*_mnist.yaml``) trained by
:func:`geozoo.zoo.recipes.train_recipe`, i.e. a :class:`geozoo.tasks.ClassificationTask` with the
geozoo objectives, through Lightning, as ``geozoo fit --config RECIPE`` would.  The protocol's
schedule is given on the command line: ``max_epochs`` and a one-cycle learning rate (up to 1e-2,
stepped per batch) in place of the recipes' per-epoch cosine.  Methods without a recipe of their
own differ from one only by their list of objectives, also on the command line.  The student is
``cnn_mnist_tiny``'s architecture (a 4-8-16 ``PlainCNN``, ~4.8k parameters) on the 3,600 offline
MNIST training digits (40x40 frame, no augmentation); the frozen teacher is run by the
distillation objectives themselves on each training batch.  Students are evaluated on the 1,000
held-out digits, clean and affNIST-style, for accuracy and expected calibration error (15 bins),
both in percent, by the zoo's :func:`geozoo.zoo.pretrained.classification_metrics`
(torchmetrics).

Methods: ``ce`` (no teacher), ``kd_<divergence>`` (CE + ``Distillation`` with each divergence,
T = 4), ``pld`` (Plackett-Luce, no separate CE), ``bdkd`` (online BD-KD: CE + the objective, its
teacher a fresh 8-16-32 ``PlainCNN`` trained jointly), ``ofa`` (CE + OFA-KD on the student's two
pooled stages) and ``sinkd`` (CE + KD-KL + SinKD).

Usage::

    python scripts/reproduce_distillation.py            # 2 seeds, 3 epochs (about 30 min on 1 CPU)
    python scripts/reproduce_distillation.py --quick    # 1 seed, 1 epoch
    python scripts/reproduce_distillation.py --write-docs   # also update docs/objectives.md

The table is printed (mean +- std over seeds); ``--write-docs`` replaces the marked section of
``docs/objectives.md`` and writes ``docs/reliability_distillation.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.cli import instantiate_class
from torch import nn

import geozoo
from geozoo.metrics.calibration import reliability_diagram
from geozoo.zoo.cards import mean_std
from geozoo.zoo.pretrained import classification_metrics
from geozoo.zoo.recipes import TrainedRun, recipe_path, train_recipe

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "objectives.md"
FIGURE = ROOT / "docs" / "reliability_distillation.png"
START, END = "<!-- distillation-results:start -->", "<!-- distillation-results:end -->"

DIVERGENCES: list[tuple[str, dict[str, float]]] = [
    ("kl", {}),
    ("reverse_kl", {}),
    ("symmetric_kl", {}),
    ("js", {}),
    ("hellinger2", {}),
    ("total_variation", {}),
    ("pearson_chi2", {}),
    ("neyman_chi2", {}),
    ("alpha", {"alpha": 0.5}),
    ("renyi", {"alpha": 0.5}),
]
# the run's options on top of every recipe: no logs, checkpoints or config files written, no
# progress output
QUIET = [
    f"--trainer.default_root_dir={tempfile.gettempdir()}",
    "--trainer.logger=false",
    "--trainer.enable_checkpointing=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def _objective(class_name: str, **init_args: Any) -> dict[str, Any]:
    return {"class_path": f"geozoo.objectives.{class_name}", "init_args": init_args}


def _objectives(*objectives: dict[str, Any]) -> str:
    """A ``--model.init_args.objectives`` override replacing the recipe's list."""
    return "--model.init_args.objectives=" + json.dumps(list(objectives))


def methods() -> dict[str, tuple[str, list[str]]]:
    """``{method: (recipe, overrides)}``: each method is a shipped recipe, some with their
    objectives replaced on the command line."""
    ce = _objective("CrossEntropy")
    table = {"ce": ("distill_kd_js_mnist", [_objectives(ce)])}
    for name, params in DIVERGENCES:
        label = f"kd_{name}" + (f"({params['alpha']})" if params else "")
        kd = _objective(
            "Distillation",
            teacher="cnn_mnist",
            divergence=name,
            temperature=4.0,
            divergence_params=params,
        )
        table[label] = ("distill_kd_js_mnist", [_objectives(ce, kd)])
    # online BD-KD's jointly trained teacher: a fresh 8-16-32 PlainCNN, not the 16-32-64 default
    online_teacher = {
        "class_path": "geozoo.nets.PlainCNN",
        "init_args": {"widths": [8, 16, 32], "input_size": [40, 40]},
    }
    table["pld"] = ("distill_pld_mnist", [])
    table["bdkd"] = (
        "distill_bdkd_mnist",
        [
            _objectives(
                ce,
                _objective(
                    "BalancedDivergenceDistillation",
                    teacher=online_teacher,
                    online=True,
                    temperature=1.0,
                    balance="soft",
                ),
            )
        ],
    )
    table["ofa"] = ("distill_ofa_mnist", [])
    table["sinkd"] = ("distill_sinkd_mnist", [])
    return table


def steps_per_epoch(recipe: str) -> int:
    """Training batches per epoch of ``recipe``'s data module."""
    data = instantiate_class((), yaml.safe_load(recipe_path(recipe).read_text())["data"])
    data.setup("fit")
    return len(data.train_dataloader())


def train_one(recipe: str, overrides: list[str], seed: int, epochs: int) -> TrainedRun:
    """One student, trained by the recipe through Lightning with the protocol's schedule."""
    schedule = {
        "class_path": "torch.optim.lr_scheduler.OneCycleLR",
        "init_args": {"max_lr": 0.01, "epochs": epochs, "steps_per_epoch": steps_per_epoch(recipe)},
    }
    protocol = [
        f"--trainer.max_epochs={epochs}",
        "--model.init_args.lr_scheduler=" + json.dumps(schedule),
    ]
    return train_recipe(recipe, seed, [*QUIET, *protocol, *overrides])


@torch.no_grad()
def predict(network: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return network.eval()(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="run only these methods")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small networks: threads only add overhead on a shared machine
    for logger in ("lightning.pytorch", "lightning.fabric"):  # one line per method instead
        logging.getLogger(logger).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    seeds = 1 if args.quick else args.seeds
    epochs = 1 if args.quick else args.epochs
    table = methods()
    chosen = args.only or list(table)
    unknown = [name for name in chosen if name not in table]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {list(table)}")

    teacher = geozoo.create_model("cnn_mnist", pretrained=True)
    results: dict[str, list[dict[str, float]]] = {}
    students: dict[str, nn.Module] = {}
    tests: dict[str, Any] = {}
    for name in chosen:
        start = time.perf_counter()
        results[name] = []
        for seed in range(seeds):
            run = train_one(*table[name], seed, epochs)
            tests = run.datamodule.test_loaders_by_name()
            results[name].append(classification_metrics(run.network, tests, 10))
            if seed == 0:
                students[name] = run.network
        row = results[name]
        print(
            f"{name:<22} clean {mean_std([r['clean/acc'] for r in row]):>11}  "
            f"ECE {mean_std([r['clean/ece'] for r in row]):>9}  "
            f"affNIST {mean_std([r['affnist/acc'] for r in row]):>11}  "
            f"ECE {mean_std([r['affnist/ece'] for r in row]):>9}  "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    n_params = sum(p.numel() for p in geozoo.create_model("cnn_mnist_tiny").parameters())
    n_train = len(run.datamodule.datasets["train"])
    tm = classification_metrics(teacher, tests, 10)
    lines = [
        f"Student `cnn_mnist_tiny` ({n_params} parameters), teacher `cnn_mnist` (clean "
        f"{tm['clean/acc']:.1f}%, ECE {tm['clean/ece']:.1f}; affNIST-style "
        f"{tm['affnist/acc']:.1f}%, ECE {tm['affnist/ece']:.1f}); {n_train} training digits, "
        f"{epochs} epochs, mean ± std over {seeds} seed(s); accuracy and ECE in %, on the 1,000 "
        "held-out digits.",
        "",
        "| method | clean acc | clean ECE | affNIST acc | affNIST ECE |",
        "|---|---|---|---|---|",
    ]
    for name, row in results.items():
        cells = [mean_std([r[k] for r in row]) for k in ("clean/acc", "clean/ece", "affnist/acc")]
        cells.append(mean_std([r["affnist/ece"] for r in row]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    command = "python scripts/reproduce_distillation.py" + (" --quick" if args.quick else "")
    lines += ["", f"Produced by `{command} --write-docs`."]
    text = "\n".join(lines)
    print("\n" + text)

    if args.write_docs:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        shown = [("teacher cnn_mnist", teacher)] + [
            (n, students[n]) for n in ("ce", "kd_kl", "bdkd") if n in students
        ]
        fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.4))
        axes = [axes] if len(shown) == 1 else list(axes)
        images_c, labels_c = run.datamodule.datasets["test_clean"].tensors
        for ax, (title, network) in zip(axes, shown, strict=True):
            reliability_diagram(predict(network, images_c), labels_c, 15, True, ax=ax, title=title)
        fig.tight_layout()
        fig.savefig(FIGURE, dpi=110)
        doc = DOC.read_text()
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        if not pattern.search(doc):
            raise SystemExit(f"{DOC} has no {START} ... {END} section to replace")
        DOC.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", doc))
        print(f"wrote {DOC.relative_to(ROOT)} and {FIGURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
