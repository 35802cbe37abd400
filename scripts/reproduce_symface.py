"""Reproduce SymFace's comparison (Prakash et al., arXiv 2409.11816) on geozoo's synthetic faces:
the same backbone, head, data and schedule trained with ArcFace alone and with ArcFace plus the
split-face symmetry loss, several seeds, evaluated on pairs of held-out identities.

    python scripts/reproduce_symface.py --out runs/symface             # 3 seeds x 2 methods
    python scripts/reproduce_symface.py --seeds 0 --out runs/quick     # one seed each
    python scripts/reproduce_symface.py --methods symface --seeds 1     # one arm, one seed
    python scripts/reproduce_symface.py --methods --out runs/symface   # only the table

Recipes: ``configs/symface_baseline_arcface_synthfaces.yaml`` (ArcFace) and
``configs/symface_arcface_synthfaces.yaml`` (ArcFace + split-face loss); each run goes through
:func:`geozoo.zoo.recipes.train_recipe` (the Lightning CLI in-process) and keeps its Lightning
checkpoint under ``OUT/METHOD/seedN``, so the zoo entry can be published from the SymFace runs
with ``geozoo zoo export`` (printed at the end). Metrics (held-out test pairs, in percent):
10-fold verification accuracy, TAR at FAR = 1e-3, ROC AUC, and the mean cosine distance between
the embedding of a face and of its mirror image. Prints a markdown table, mean +- std (n - 1)
over seeds (also written to ``OUT/comparison.md`` for the card: ``geozoo zoo export
--comparison``), and writes every number to ``OUT/results.json``; runs already there (of other
methods or seeds, e.g. from parallel invocations on one ``OUT``) are kept and tabulated.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from geozoo.zoo.evaluate import held_out_loaders
from geozoo.zoo.pretrained import embedding_mirror_distance, verification_metrics
from geozoo.zoo.recipes import train_recipe

#: method -> (folder name, recipe); ``--methods`` takes the folder names
METHODS = {
    "ArcFace": ("arcface", "configs/symface_baseline_arcface_synthfaces.yaml"),
    "ArcFace + split-face (SymFace)": ("symface", "configs/symface_arcface_synthfaces.yaml"),
}
COLUMNS = {
    "synthfaces/acc": "verification acc (%)",
    "synthfaces/tar@far1e-3": "TAR@FAR=1e-3 (%)",
    "synthfaces/auc": "ROC AUC (%)",
    "synthfaces/mirror_distance": "face-mirror distance",
}


def run(name: str, recipe: str, seed: int, out: Path, overrides: list[str]) -> dict[str, float]:
    folder = out / name / f"seed{seed}"
    trained = train_recipe(
        recipe,
        seed,
        [f"--trainer.default_root_dir={folder}", "--trainer.enable_progress_bar=false", *overrides],
    )
    loaders = held_out_loaders(trained.datamodule)
    results = verification_metrics(trained.network, loaders)
    results.update(embedding_mirror_distance(trained.network, trained.arguments, loaders))
    checkpoints = sorted(folder.glob("lightning_logs/version_*/checkpoints/*.ckpt"))
    results["checkpoint"] = str(checkpoints[-1]) if checkpoints else ""
    return results


def summary(values: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    digits = 4 if abs(mean) < 1 else 2
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/symface"))
    folders = [name for name, _ in METHODS.values()]
    parser.add_argument(
        "--methods",
        nargs="*",
        choices=folders,
        default=folders,
        help="arms to train (none: only print the table of OUT's results)",
    )
    parser.add_argument(
        "overrides", nargs="*", help="recipe overrides after --, e.g. -- --trainer.max_epochs=2"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    for seed in args.seeds:  # seed-major: an interrupted run still compares the methods
        for method, (name, recipe) in METHODS.items():
            if name not in args.methods:
                continue
            trained = run(name, recipe, seed, args.out, args.overrides)
            results = json.loads(results_file.read_text()) if results_file.exists() else {}
            results.setdefault(method, {})[str(seed)] = trained
            results_file.write_text(json.dumps(results, indent=2))
            print(method, seed, trained, flush=True)
    results = json.loads(results_file.read_text())
    results = {
        method: {seed: r for seed, r in results.get(method, {}).items() if int(seed) in args.seeds}
        for method in METHODS
        if results.get(method)
    }
    lines = [
        f"Held-out synthetic identities, {len(args.seeds)} seeds, mean ± std, printed by "
        "`python scripts/reproduce_symface.py`:",
        "",
        "| method | " + " | ".join(COLUMNS.values()) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for method, per_seed in results.items():
        cells = [summary([r[key] for r in per_seed.values()]) for key in COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    comparison = args.out / "comparison.md"
    comparison.write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    symface = [r["checkpoint"] for r in results.get(list(METHODS)[1], {}).values()]
    print(
        "\npublish the SymFace runs: geozoo zoo export "
        + " ".join(symface)
        + f" --name symface_arcface_synthfaces --config {METHODS[list(METHODS)[1]][1]}"
        + f" --comparison {comparison} --force"
    )


if __name__ == "__main__":
    main()
