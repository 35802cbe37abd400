"""Accuracy against the magnitude of rotation, shear, scale and shift (each swept alone) for
the plain CNN, the plain CNN trained with affine augmentation, the plain CNN with its inputs
moved to their centroid at test time (the translation part of the affine entries'
canonicalisation, without retraining) and the affine group-convolution entries; plus the
accuracy on the affNIST-style and the wide affine test sets and the logits' invariance error
under affNIST-range and wide-range maps. Writes docs/robustness.png and prints every number.

    OMP_NUM_THREADS=1 python scripts/plot_robustness.py [--limit 500] [--update-cards]
        [--entries cnn_mnist cnn_affaug_mnist ...]

Held-out digits (the 1,000 offline test digits of MNISTDataModule, none used in training),
padded to 40x40 and warped about the image centre with geozoo.data.transforms.affine_warp:
rotation -90..90 degrees, x-shear -0.6..0.6, isotropic scale 0.5..2 -- well past the affNIST
ranges (20 degrees, 0.2, 0.8..1.2) -- and diagonal shifts of -8..8 pixels (the digit stays in
the frame). The affNIST-style and wide sets are MNISTDataModule's ``affnist`` and
``affnist_wide`` test sets (all held-out digits). ``--entries`` restricts the comparison to
some entries (default: all of them); ``--update-cards`` writes the numbers into the Notes of the
compared entries' cards after the Notes their builders declare (models/NAME/config.json and
README.md; the weights are untouched).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from geozoo.data import MNISTDataModule
from geozoo.data.transforms import affine_matrices, affine_warp
from geozoo.nn import MomentCanonicalization
from geozoo.testing import affine, equivariance_error
from geozoo.zoo import create_model
from geozoo.zoo.cards import render_model_card
from geozoo.zoo.hub import has_checkpoint, models_dir
from geozoo.zoo.registry import pretrained_cfg

MODELS = ["cnn_mnist", "cnn_affaug_mnist", "affconv_gl2_mnist", "affconv_sl2_mnist"]
CENTRED_CNN = "cnn_mnist+centring"
LABELS = {
    "cnn_mnist": "plain CNN",
    "cnn_affaug_mnist": "plain CNN + affine augmentation",
    CENTRED_CNN: "plain CNN, centroid-centred at test time",
    "affconv_gl2_mnist": "R2 x GL+(2) conv (no augmentation)",
    "affconv_sl2_mnist": "R2 x SL(2) conv (no augmentation)",
}
SWEEPS = {
    "rotation (degrees)": [-90, -75, -60, -45, -30, -20, -10, 0, 10, 20, 30, 45, 60, 75, 90],
    "shear": [-0.6, -0.45, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.45, 0.6],
    "scale": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0],
    "shift (pixels)": [-8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8],
}
#: Linear maps (rotation in degrees, shear, x scale, y scale) of the invariance probe: inside the
#: affNIST ranges, and at the edges of the wide ranges (geozoo.data.AFFINE_RANGES).
INVARIANCE_MAPS = {
    "affnist": [(20, 0.0, 1.0, 1.0), (0, 0.2, 1.0, 1.0), (0, 0.0, 1.2, 0.8), (-15, -0.1, 0.9, 1.1)],
    "wide": [(45, 0.0, 1.0, 1.0), (0, 0.4, 1.0, 1.0), (0, 0.0, 1.5, 0.6), (-40, -0.3, 0.7, 1.4)],
}
TEST_SETS = {"affnist": "affNIST-style", "affnist_wide": "wide affine"}


def warp(images: torch.Tensor, sweep: str, value: float) -> torch.Tensor:
    """``images`` transformed by one point of a sweep, about the image centre."""
    if sweep.startswith("shift"):
        shift = torch.full((len(images), 2), float(value), dtype=torch.float64)
        return affine_warp(images, torch.eye(2, dtype=torch.float64), shift).clamp(0, 1)
    return affine_warp(images, matrix_for(sweep, value)).clamp(0, 1)


def matrix_for(sweep: str, value: float) -> torch.Tensor:
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    if sweep.startswith("rotation"):
        return affine_matrices(
            torch.tensor([math.radians(value)], dtype=torch.float64), zero, one, one
        )[0]
    if sweep == "shear":
        return affine_matrices(zero, torch.tensor([value], dtype=torch.float64), one, one)[0]
    return affine_matrices(zero, zero, one * value, one * value)[0]


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    correct = 0
    for start in range(0, len(images), 250):
        logits = model(images[start : start + 250])
        correct += int((logits.argmax(-1) == labels[start : start + 250]).sum())
    return 100.0 * correct / len(images)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=1000, help="number of held-out digits")
    parser.add_argument("--output", default="docs/robustness.png")
    parser.add_argument("--update-cards", action="store_true")
    parser.add_argument(
        "--entries",
        nargs="+",
        default=MODELS,
        metavar="NAME",
        help=f"the zoo entries to compare (default: all of {MODELS})",
    )
    parser.add_argument(
        "--weights",
        nargs="*",
        default=[],
        metavar="NAME=DIR",
        help="load NAME from a checkpoint folder instead of models/NAME",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.entries if n not in MODELS]
    if unknown:
        parser.error(f"unknown entries {unknown}: expected names from {MODELS}")

    data = MNISTDataModule(source="offline", pad_to=40, test_sets=["clean", *TEST_SETS])
    data.setup("test")
    loaders = data.test_loaders_by_name()
    images, labels = map(torch.cat, zip(*loaders["clean"], strict=True))
    images, labels = images[: args.limit], labels[: args.limit]
    test_sets = {n: tuple(map(torch.cat, zip(*loaders[n], strict=True))) for n in TEST_SETS}
    print(f"{len(images)} held-out digits, 40x40")

    folders = dict(item.split("=", 1) for item in args.weights)
    entries = [n for n in MODELS if n in args.entries]
    names = [n for n in entries if n in folders or has_checkpoint(n)]
    missing = sorted(set(entries) - set(names))
    if missing:
        print(f"no checkpoint (skipped): {missing}")
    models = {n: create_model(n, pretrained=True, weights=folders.get(n)).eval() for n in names}
    for name in folders:
        print(f"{name}: weights from {folders[name]}")
    if "cnn_mnist" in models:
        models[CENTRED_CNN] = torch.nn.Sequential(
            MomentCanonicalization("none"), models["cnn_mnist"]
        )
        names.insert(names.index("cnn_mnist") + 1, CENTRED_CNN)
        models = {n: models[n] for n in names}

    test_accuracy: dict[str, dict[str, float]] = {n: {} for n in names}
    for test_set, (x, y) in test_sets.items():
        for name, model in models.items():
            test_accuracy[name][test_set] = round(accuracy(model, x, y), 1)
            print(
                f"{TEST_SETS[test_set]} accuracy ({len(x)} digits) {name:<20} "
                f"{test_accuracy[name][test_set]:.1f}"
            )

    results: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    for sweep, values in SWEEPS.items():
        warped = [warp(images, sweep, v) for v in values]
        for name, model in models.items():
            accs = [round(accuracy(model, w, labels), 2) for w in warped]
            results[name][sweep] = accs
            print(f"{sweep:<20} {name:<20} " + " ".join(f"{a:6.2f}" for a in accs))
        print(f"{sweep:<20} {'values':<20} " + " ".join(f"{v:6g}" for v in values))

    # invariance error of the logits: relative change under linear maps (no translation)
    probe = images[:100]
    invariance: dict[str, dict[str, tuple[float, float]]] = {n: {} for n in names}
    for ranges, params in INVARIANCE_MAPS.items():
        maps = [
            affine_matrices(
                *(torch.tensor([v], dtype=torch.float64) for v in (math.radians(r), *rest))
            )[0]
            for r, *rest in params
        ]
        for name, model in models.items():
            result = equivariance_error(
                model, probe, [affine(m) for m in maps], dtype=torch.float32
            )
            invariance[name][ranges] = (round(result.mean, 4), round(result.max, 4))
            print(
                f"invariance error ({ranges} maps) {name:<20} "
                f"mean {result.mean:.4f} max {result.max:.4f}"
            )

    fig, axes = plt.subplots(1, 5, figsize=(25, 4.2))
    for ax, (sweep, values) in zip(axes, SWEEPS.items(), strict=False):
        for name in names:
            ax.plot(values, results[name][sweep], marker="o", ms=3, label=LABELS[name])
        ax.set_xlabel(sweep)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        if sweep == "scale":
            ax.set_xscale("log")
            ax.set_xticks(values, [f"{v:g}" for v in values])
    axes[0].legend(fontsize=8, loc="lower center")
    plot_test_sets(axes[-1], names, test_accuracy)
    fig.suptitle(f"Held-out digits ({len(images)}), each transformation swept alone")
    fig.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")

    if args.update_cards:
        command = f"OMP_NUM_THREADS=1 python scripts/plot_robustness.py --limit {len(images)}"
        if entries != MODELS:
            command += " --entries " + " ".join(entries)
        for name in (n for n in names if n in MODELS):
            update_card(name, results, invariance, test_accuracy, len(images), command)


def plot_test_sets(ax, names: list[str], test_accuracy: dict[str, dict[str, float]]) -> None:
    """Grouped bars: each model's accuracy on the affNIST-style and the wide test set."""
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(TEST_SETS))]
        ax.bar(xs, [test_accuracy[name][t] for t in TEST_SETS], width, label=LABELS[name])
    ax.set_xticks(range(len(TEST_SETS)), [f"{label} test" for label in TEST_SETS.values()])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(50, 100)
    ax.grid(alpha=0.3, axis="y")


def _wins(name: str, results: dict, sweep: str, values: list[float]) -> str:
    others = [n for n in results if n != name]
    better = [
        f"{v:g}"
        for i, v in enumerate(values)
        if all(results[name][sweep][i] > results[o][sweep][i] for o in others)
    ]
    return ", ".join(better) if better else "none"


def update_card(
    name: str, results: dict, invariance: dict, test_accuracy: dict, count: int, command: str
) -> None:
    """Rewrite the Notes of ``name``'s card: the notes its builder declares, then the sweeps,
    the invariance errors and the test-set accuracies of every compared model."""
    folder = models_dir() / name
    config = json.loads((folder / "config.json").read_text())
    lines = [pretrained_cfg(name).notes, ""] if pretrained_cfg(name).notes else []
    lines += [
        f"Robustness sweeps on {count} held-out digits (`{command} --update-cards`, plot in "
        "docs/robustness.png). Accuracy in %:",
        "",
    ]
    for sweep, values in SWEEPS.items():
        lines.append(f"| {sweep} | " + " | ".join(f"{v:g}" for v in values) + " |")
        lines.append("|---" * (len(values) + 1) + "|")
        for other in results:
            lines.append(
                f"| {other} | " + " | ".join(f"{a:.1f}" for a in results[other][sweep]) + " |"
            )
        lines.append("")
        lines.append(
            f"{sweep}: {name} is strictly best of the compared models at: "
            f"{_wins(name, results, sweep, values)}."
        )
        lines.append("")
    lines.append(
        "Invariance error of the logits (relative L2 change, mean / max over 100 digits and four "
        "maps without translation, inside the affNIST ranges | at the edges of the wide ranges): "
        + "; ".join(
            f"{n} "
            + " | ".join(f"{m:.4f} / {x:.4f}" for m, x in (errors[r] for r in INVARIANCE_MAPS))
            for n, errors in invariance.items()
        )
        + "."
    )
    if name.startswith("affconv_"):
        lines.append(
            "The inputs are moved to their moment pose first, so integer shifts that keep the "
            "digit inside the frame leave the logits unchanged (tests/nets/test_affconv.py)."
        )
    lines.append("")
    lines.append(
        "Accuracy on the affNIST-style | wide affine test sets (all held-out digits) of the "
        "compared models: "
        + "; ".join(
            f"{n} " + " | ".join(f"{accs[t]:.1f}" for t in TEST_SETS)
            for n, accs in test_accuracy.items()
        )
        + "."
    )
    if CENTRED_CNN in test_accuracy:
        lines.append(
            f"`{CENTRED_CNN}` is `cnn_mnist` with its inputs moved to their intensity centroid "
            "at test time (no retraining)."
        )
    config["notes"] = "\n".join(lines)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "README.md").write_text(render_model_card(config))
    print(f"updated the notes of {folder}")


if __name__ == "__main__":
    main()
