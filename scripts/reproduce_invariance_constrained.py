"""Invariance-constrained augmentation (Hounie, Chamon & Ribeiro, ICML 2023, arXiv 2209.15031)
against no augmentation and uniform augmentation on the offline MNIST digits.

Three arms, each trained from its recipe through Lightning (the recipes differ only in their
objectives): ``configs/daug_none_mnist.yaml`` (cross-entropy), ``daug_uniform_mnist.yaml``
(+ cross-entropy of a uniformly drawn operation and level per digit, weight 1) and
``daug_mh_mnist.yaml`` (+ ``mu * CE`` of a Metropolis-Hastings sample, ``mu`` the dual variable of
the constraint). Same 15 operations, levels and ranges for both augmented arms. Each arm is
trained with every seed on the 3,600 training digits (40x40 frame); accuracy is measured on the
1,000 held-out digits: clean, affNIST-style and rotated (:class:`geozoo.data.MNISTDataModule`).
Training seconds per epoch exclude validation.

Prints a markdown table (mean +- std over seeds) and the ratio of MH to uniform on the
transformed test sets; ``--write-docs`` also replaces the marked section of ``docs/augment.md``
and writes ``docs/augment_visits.png``: which operations and levels the sampler trained on in each
epoch (the MH arm, summed over seeds), with the dual variable.

    python scripts/reproduce_invariance_constrained.py           # 3 seeds, the recipes' 6 epochs
    python scripts/reproduce_invariance_constrained.py --quick   # 1 seed, 1 epoch, 512 digits
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from geozoo.zoo.cards import mean_std
from geozoo.zoo.pretrained import classification_metrics
from geozoo.zoo.recipes import lightning_cli

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "augment.md"
FIGURE = ROOT / "docs" / "augment_visits.png"
START, END = "<!-- augment-results:start -->", "<!-- augment-results:end -->"
ARMS = {"none": "no augmentation", "uniform": "uniform augmentation", "mh": "constrained MH"}
TESTS = ("clean", "affnist", "rotated")


class EpochRecorder(L.Callback):
    """Training seconds per epoch (validation excluded), and after each epoch the augmentation
    objective's cumulative visit counts and dual variable, where it has them."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.visits: list[torch.Tensor] = []
        self.dual: list[float] = []
        self._start = self._validation = 0.0

    def on_train_epoch_start(self, trainer, module) -> None:
        self._start, self._validation = time.perf_counter(), 0.0

    def on_validation_epoch_start(self, trainer, module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, module) -> None:
        if trainer.training:
            self._validation += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds.append(time.perf_counter() - self._start - self._validation)
        for objective in module.objectives:
            if hasattr(objective, "visits"):
                self.visits.append(objective.visits.detach().clone())
            if hasattr(objective, "dual"):
                self.dual.append(float(objective.dual))


def train(arm: str, seed: int, overrides: list[str]) -> dict:
    recipe = ROOT / "configs" / f"daug_{arm}_mnist.yaml"
    with tempfile.TemporaryDirectory() as folder:  # Lightning's config.yaml goes there
        args = ["--config", str(recipe), f"--seed_everything={seed}", *overrides]
        cli = lightning_cli([*args, f"--trainer.default_root_dir={folder}"], run=False)
        recorder = EpochRecorder()
        cli.trainer.callbacks.append(recorder)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    data = cli.datamodule
    loaders = dict(zip(data.test_set_names, data.test_dataloader()))
    metrics = classification_metrics(cli.model.network.cpu(), loaders, 10)
    space = next((o.space for o in cli.model.objectives if hasattr(o, "space")), None)
    return {
        "arm": arm,
        "seed": seed,
        "acc": {name: metrics[f"{name}/acc"] for name in data.test_set_names},
        "seconds_per_epoch": statistics.mean(recorder.seconds[1:] or recorder.seconds),
        "visits": [v.tolist() for v in recorder.visits],
        "dual": recorder.dual,
        "operations": getattr(space, "names", None),
    }


def table(results: list[dict]) -> str:
    lines = [
        "| method | clean acc (%) | affNIST-style acc (%) | rotated acc (%) | train s / epoch |",
        "|---|---|---|---|---|",
    ]
    for arm, label in ARMS.items():
        runs = [r for r in results if r["arm"] == arm]
        if not runs:
            continue
        cells = [mean_std([r["acc"][t] for r in runs]) for t in TESTS]
        seconds = mean_std([r["seconds_per_epoch"] for r in runs])
        lines.append(f"| {label} (`daug_{arm}_mnist`) | " + " | ".join(cells) + f" | {seconds} |")
    return "\n".join(lines)


def verdict(results: list[dict]) -> str:
    def mean(arm: str, test: str) -> float:
        return statistics.mean(r["acc"][test] for r in results if r["arm"] == arm)

    lines = []
    for test in ("affnist", "rotated"):
        mh, uniform = mean("mh", test), mean("uniform", test)
        word = "beats" if mh > uniform else "does not beat"
        lines.append(f"- {test}: MH {mh:.2f} vs uniform {uniform:.2f}: MH {word} uniform")
    ratio = statistics.mean(r["seconds_per_epoch"] for r in results if r["arm"] == "mh") / (
        statistics.mean(r["seconds_per_epoch"] for r in results if r["arm"] == "uniform")
    )
    lines.append(f"- training time per epoch, MH / uniform: {ratio:.2f}x")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results if r["arm"] == "mh"]
    names = runs[0]["operations"]
    cumulative = torch.tensor([r["visits"] for r in runs], dtype=torch.float64).sum(0)
    per_epoch = torch.diff(cumulative, dim=0, prepend=torch.zeros_like(cumulative[:1]))
    shares = per_epoch.sum(-1) / per_epoch.sum((1, 2)).clamp_min(1)[:, None]  # (epochs, ops)
    levels = cumulative[-1] / cumulative[-1].sum(-1, keepdim=True).clamp_min(1)  # (ops, levels)
    uniform = 1.0 / len(names)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    image = axes[0].imshow(
        (shares.T / uniform).numpy(), aspect="auto", cmap="coolwarm", vmin=0.0, vmax=2.0
    )
    axes[0].set(
        yticks=range(len(names)),
        yticklabels=names,
        xlabel="epoch",
        title="operation share per epoch / uniform share",
    )
    axes[0].set_xticks(range(shares.shape[0]), [str(e + 1) for e in range(shares.shape[0])])
    fig.colorbar(image, ax=axes[0])
    num_levels = levels.shape[1]
    image = axes[1].imshow(levels.numpy(), aspect="auto", cmap="viridis")
    axes[1].set(
        yticks=range(len(names)),
        yticklabels=names,
        xlabel=f"level (magnitude = level / {num_levels})",
        title="level distribution per operation (all epochs)",
    )
    axes[1].set_xticks(range(num_levels), [str(k + 1) for k in range(num_levels)])
    fig.colorbar(image, ax=axes[1])
    for r in runs:
        axes[2].plot(range(1, len(r["dual"]) + 1), r["dual"], marker="o", label=f"seed {r['seed']}")
    axes[2].set(xlabel="epoch", ylabel="dual variable mu (end of epoch)", title="dual variable")
    axes[2].legend()
    fig.suptitle(
        "Metropolis-Hastings augmentation on MNIST (daug_mh_mnist): where the sampler goes, "
        f"{len(runs)} seed(s) summed"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipes' own")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 512 digits")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        default=None,
        help="report the results that runs with --output saved (e.g. one per seed), no training",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    overrides = [
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
    seeds = [0] if args.quick else args.seeds
    epochs = 1 if args.quick else args.epochs
    if epochs is not None:
        overrides += [
            f"--trainer.max_epochs={epochs}",
            f"--model.init_args.lr_scheduler.init_args.T_max={epochs}",
        ]
    if args.quick:
        overrides += ["--data.init_args.limit_train=512"]
    results = [r for path in args.from_json or [] for r in json.loads(path.read_text())]
    for seed in [] if args.from_json else seeds:
        for arm in ARMS:
            start = time.perf_counter()
            result = train(arm, seed, overrides)
            results.append(result)
            accs = ", ".join(f"{k} {v:.2f}" for k, v in result["acc"].items())
            print(
                f"[{arm} seed {seed}] {accs}; {result['seconds_per_epoch']:.1f} s/epoch; "
                f"total {time.perf_counter() - start:.0f} s",
                flush=True,
            )
    text = table(results)
    print(text)
    print(verdict(results))
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))
    if args.write_docs:
        plot(results, FIGURE)
        printed = "Printed by `python scripts/reproduce_invariance_constrained.py --write-docs`"
        if args.from_json:
            printed += " (run per seed with `--seeds S --output FILE`, then `--from-json FILES`)"
        section = f"{START}\n{text}\n\n{verdict(results)}\n\n{printed}.\n{END}"
        doc = DOC.read_text()
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        DOC.write_text(pattern.sub(lambda _: section, doc))
        print(f"wrote {FIGURE} and the results section of {DOC}")


if __name__ == "__main__":
    main()
