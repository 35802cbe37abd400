"""Ablations of the affine zoo networks, selected and reported on VALIDATION digits only.

Each variant is the recipe (``configs/affconv_gl2_mnist.yaml`` by default) with some network
arguments changed; every (variant, seed) trains through :func:`geozoo.zoo.recipes.train_recipe`
and is scored on the recipe's validation digits three ways: clean, affNIST-style and wide
(:func:`geozoo.data.affnist_style` with ``ranges="affnist"`` / ``"wide"``, ``--copies``
transformed copies of every validation digit). The held-out test digits are never touched, so
the numbers can choose between variants. One JSON line per run goes to ``--log`` as soon as it
finishes (a rerun skips the runs already there); the table of means +- std over seeds is
printed at the end.

    python scripts/ablate_affine.py --variants recipe no_canon mlp --seeds 0 1 2 \\
        --epochs 6 --limit-train 1800 --log /tmp/ablate.jsonl
    python scripts/ablate_affine.py --variant wide55=rotations=7,max_angle=55 --seeds 0
    python scripts/ablate_affine.py --log /tmp/ablate.jsonl --table-only
    python scripts/ablate_affine.py --variants recipe no_canon --log /tmp/ablate.jsonl \\
        --table-only --write-doc docs/affine.md   # between the <!-- ablate-affine --> markers
    python scripts/ablate_affine.py --checkpoints RUN/checkpoints/*.ckpt --log /tmp/fits.jsonl
    python scripts/ablate_affine.py --canvas-coverage 28 32   # mass a smaller canvas loses
    python scripts/ablate_affine.py --published affconv_gl2_mnist --log /tmp/fits.jsonl

Values in ``NAME=key=value,...`` are parsed as YAML (``canvas=[32,32]``, ``max_angle=null``).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch
import yaml

from geozoo.data import MNISTDataModule, affnist_style
from geozoo.nn import MomentCanonicalization
from geozoo.zoo import create_model
from geozoo.zoo.cards import mean_std, replace_marked_block
from geozoo.zoo.recipes import load_fit_checkpoint, train_recipe

# What each part of the decomposition buys, against the recipe (docs/affine.md, "Ablation").
ABLATIONS: dict[str, dict[str, object]] = {
    "recipe": {},
    "no_canon": {"canonicalize": None, "canvas": None},
    "centroid_only": {"canonicalize": "translation", "canvas": None},
    "mlp_kernel": {"group_kernel": "mlp"},
    "rot5_25": {"rotations": 5, "max_angle": 25.0},
    "rot5_60": {"rotations": 5, "max_angle": 60.0},
    "pos2": {"positives": 2},
    "pd0": {"pd_scale": 1e-6},
}

TEST_RANGES = ("affnist", "wide")
BEGIN, END = "<!-- ablate-affine:begin -->", "<!-- ablate-affine:end -->"
SHOWN = ("group", "rotations", "max_angle", "canvas", "group_kernel", "canonicalize")


def parse_variant(text: str) -> tuple[str, dict[str, object]]:
    """``NAME=key=value,key=value`` -> (NAME, {key: value}); values are YAML."""
    name, _, spec = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"expected NAME=key=value,..., got {text!r}")
    changes: dict[str, object] = {}
    for item in _split_top_level(spec):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value in {text!r}, got {item!r}")
        changes[key.strip()] = yaml.safe_load(value)
    return name, changes


def _split_top_level(spec: str) -> list[str]:
    """Split on commas outside brackets (``canvas=[32,32],rotations=7``)."""
    items, depth, current = [], 0, ""
    for char in spec:
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [item for item in [*items, current] if item]


def overrides_for(
    changes: dict[str, object], epochs: int | None, limit_train: int | None, batch_size: int
) -> list[str]:
    """``geozoo fit`` arguments for the network changes and the reduced budget."""
    root = Path(tempfile.mkdtemp(prefix="ablate_affine_"))
    # a second config file rather than --model.network.init_args.KEY=VALUE flags, which
    # jsonargparse cannot set to None for an optional list (canvas) and which keep the quotes
    # of a JSON string ('"mlp"')
    args = []
    if changes:
        network = {"model": {"init_args": {"network": {"init_args": dict(changes)}}}}
        (root / "changes.yaml").write_text(yaml.safe_dump(network))
        args += ["--config", str(root / "changes.yaml")]
    if epochs is not None:
        args += [
            f"--trainer.max_epochs={epochs}",
            f"--model.lr_scheduler.init_args.epochs={epochs}",
        ]
    if limit_train is not None:
        steps = math.ceil(limit_train / batch_size)
        args += [
            f"--data.init_args.limit_train={limit_train}",
            f"--model.lr_scheduler.init_args.steps_per_epoch={steps}",
        ]
    args += [
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={root}",
    ]
    return args


@torch.no_grad()
def accuracy(network: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    network.eval()
    hits = sum(
        int((network(x).argmax(-1) == y).sum())
        for x, y in zip(images.split(200), labels.split(200))
    )
    return 100.0 * hits / len(labels)


def validation_scores(network: torch.nn.Module, datamodule, copies: int) -> dict[str, float]:
    """Accuracy on the clean validation digits and on ``copies`` affNIST-style and wide copies
    of them (seeds 1000 + k, disjoint from the test sets' seed)."""
    images, labels = datamodule.datasets["val"].tensors
    scores = {"clean": accuracy(network, images, labels)}
    for ranges in TEST_RANGES:
        moved = torch.cat([affnist_style(images, 1000 + k, ranges=ranges) for k in range(copies)])
        scores[ranges] = accuracy(network, moved, labels.repeat(copies))
    return scores


def canvas_coverage(sizes: list[int]) -> str:
    """How much of a whitened validation digit's mass (GL+(2) moment pose, 40x40 frame) falls
    outside a centred ``size`` x ``size`` canvas: mean, 99th percentile and maximum, in %."""
    data = MNISTDataModule(source="offline", pad_to=40, test_sets=["clean"])
    data.setup()
    images = data.datasets["val"].tensors[0]
    lines = ["| digits | canvas | mean lost | 99th percentile | max |", "|---|---|---|---|---|"]
    for name, digits in [("clean", images), ("wide", affnist_style(images, 1000, ranges="wide"))]:
        pose = MomentCanonicalization("full")(digits)
        total = pose.sum((1, 2, 3))
        for size in sizes:
            start = (pose.shape[-1] - size) // 2
            inside = pose[..., start : start + size, start : start + size].sum((1, 2, 3))
            lost = 100 * (1 - inside / total)
            lines.append(
                f"| {name} | {size} | {lost.mean():.3f} | {lost.quantile(0.99):.3f} | "
                f"{lost.max():.3f} |"
            )
    return "\n".join(lines)


def _done(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def table(rows: list[dict]) -> str:
    """Markdown: variant, changes, seeds, mean +- std of every score (validation, %), and the
    change of the transformed scores against the recipe run of the same seed."""
    keys = ["clean", *TEST_RANGES]
    recipe = {r["seed"]: r["scores"] for r in rows if r["variant"] == "recipe"}
    lines = [
        "| variant | changes | seeds | "
        + " | ".join(f"val {k}" for k in keys)
        + " | "
        + " | ".join(f"{k} vs recipe" for k in TEST_RANGES)
        + " |",
        "|---|---|---|" + "---|" * (len(keys) + len(TEST_RANGES)),
    ]
    for name in dict.fromkeys(r["variant"] for r in rows):
        runs = sorted((r for r in rows if r["variant"] == name), key=lambda r: r["seed"])
        cells = [mean_std([r["scores"][key] for r in runs], digits=2) for key in keys]
        paired = [r for r in runs if r["seed"] in recipe]
        for key in TEST_RANGES:
            steps = [r["scores"][key] - recipe[r["seed"]][key] for r in paired]
            cells.append("" if name == "recipe" or not steps else mean_std(steps, digits=2))
        changes = ", ".join(f"{k}={v}" for k, v in runs[0]["changes"].items()) or "(recipe)"
        seeds = ", ".join(str(r["seed"]) for r in runs)
        lines.append(f"| {name} | {changes} | {seeds} | " + " | ".join(cells) + " |")
    budget = {(r["epochs"], r["limit_train"]) for r in rows}
    lines.append(
        f"\nBudget of these runs (epochs, training digits; None: the recipe's): "
        f"{sorted(budget, key=str)}"
    )
    return "\n".join(lines)


def _full_budget_run(name: str, changes: dict, seed: int | None, scores: dict) -> dict:
    """The log record of a run trained with its recipe's whole budget (a ``geozoo fit``
    checkpoint or a published entry), named by where it came from."""
    return {
        "recipe": name,
        "variant": name,
        "changes": changes,
        "seed": seed,
        "epochs": None,
        "limit_train": None,
        "scores": scores,
    }


def _record(record: dict, log: Path | None) -> None:
    """Print one scored run and, with ``--log``, append it to the log."""
    if log is not None:
        with log.open("a") as f:
            f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="affconv_gl2_mnist")
    p.add_argument("--variants", nargs="*", default=[], choices=sorted(ABLATIONS))
    p.add_argument("--variant", action="append", type=parse_variant, default=[])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    p.add_argument("--limit-train", type=int, default=None, help="default: all 3,600 digits")
    p.add_argument("--batch-size", type=int, default=32, help="the recipe's, for the schedule")
    p.add_argument("--copies", type=int, default=3, help="transformed copies per val digit")
    p.add_argument("--log", type=Path, default=None, help="JSON lines, one per run")
    p.add_argument("--table-only", action="store_true")
    p.add_argument(
        "--write-doc",
        type=Path,
        default=None,
        help=f"also write the table between the {BEGIN} / {END} markers of this file",
    )
    p.add_argument(
        "--checkpoints",
        nargs="+",
        type=Path,
        default=[],
        help="score `geozoo fit` checkpoints (configured by their saved config.yaml) instead",
    )
    p.add_argument("--canvas-coverage", type=int, nargs="+", default=None, metavar="SIZE")
    p.add_argument(
        "--published", nargs="+", default=[], help="score published zoo entries (MNIST recipes)"
    )
    ns = p.parse_args(argv)
    if ns.canvas_coverage:
        print(canvas_coverage(ns.canvas_coverage))
        return
    for checkpoint in ns.checkpoints:
        run = load_fit_checkpoint(checkpoint)
        run.datamodule.setup()
        changes = {k: run.arguments.get(k) for k in SHOWN if k in run.arguments}
        scores = validation_scores(run.network, run.datamodule, ns.copies)
        _record(_full_budget_run(str(checkpoint), changes, run.seed, scores), ns.log)
    for name in ns.published:
        network = create_model(name, pretrained=True)
        data = MNISTDataModule(source="offline", pad_to=40, test_sets=["clean"])
        data.setup()
        scores = validation_scores(network, data, ns.copies)
        _record(_full_budget_run(f"published {name}", {}, None, scores), ns.log)
    if ns.checkpoints or ns.published:
        return

    if ns.log is None:
        p.error("--log is required (except with --canvas-coverage, --checkpoints or --published)")
    variants = [(name, ABLATIONS[name]) for name in ns.variants] + ns.variant
    if not ns.table_only:
        for name, changes in variants:
            for seed in ns.seeds:
                key = (ns.recipe, name, seed, ns.epochs, ns.limit_train)
                seen = {
                    (r["recipe"], r["variant"], r["seed"], r["epochs"], r["limit_train"])
                    for r in _done(ns.log)
                }
                if key in seen:
                    continue
                start = time.perf_counter()
                overrides = overrides_for(changes, ns.epochs, ns.limit_train, ns.batch_size)
                run = train_recipe(ns.recipe, seed=seed, overrides=overrides)
                scores = validation_scores(run.network, run.datamodule, ns.copies)
                record = {
                    "recipe": ns.recipe,
                    "variant": name,
                    "changes": changes,
                    "seed": seed,
                    "epochs": ns.epochs,
                    "limit_train": ns.limit_train,
                    "scores": scores,
                    "seconds": round(time.perf_counter() - start),  # fit + scoring, wall
                }
                with ns.log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)
    rows = _done(ns.log)
    if variants:  # only this recipe and budget (others are not comparable), in the asked order
        order = {name: i for i, (name, _) in enumerate(variants)}
        budget = (ns.recipe, ns.epochs, ns.limit_train)
        rows = [
            r
            for r in rows
            if r["variant"] in order and (r["recipe"], r["epochs"], r["limit_train"]) == budget
        ]
        rows.sort(key=lambda r: order[r["variant"]])
    text = table(rows)
    print(text)
    if ns.write_doc is not None:
        replace_marked_block(ns.write_doc, BEGIN, END, text)


if __name__ == "__main__":
    main()
