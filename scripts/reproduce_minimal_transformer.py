"""Reproduce the parameter / accuracy trade-off of "Reducing the Transformer Architecture to a
Minimum" (Bermeitinger et al., 2024, arXiv 2410.13732) on geozoo's offline MNIST digits.

Every run is a shipped recipe trained by :func:`geozoo.zoo.recipes.train_recipe`, i.e. a
:class:`geozoo.tasks.ClassificationTask` through Lightning, exactly as ``geozoo fit --config``
and ``geozoo zoo train`` train the zoo entries: ``vit_tiny_mnist`` and ``symformer_min_mnist``
with their own recipes (``configs/NAME.yaml``), every other registered MNIST variant with the
minimal model's recipe and its network's attention options (read off the variant's builder) on
the command line, so that all variants share data, augmentation, optimiser, schedule and seeds.
The script prints parameter counts and the accuracy on the clean training digits, on the 400
validation digits and on the 1,000 held-out test digits (mean +- std over seeds) and, with
``--write-docs``, replaces the table in docs/minimal_transformer.md (and its copy in README.md).

    python scripts/reproduce_minimal_transformer.py          # the two zoo entries, 3 seeds
    python scripts/reproduce_minimal_transformer.py --variants symformer_nomlp_mnist ...
    python scripts/reproduce_minimal_transformer.py --quick  # smoke test: 1 seed, 2 epochs
    python scripts/reproduce_minimal_transformer.py --cards  # the published entries' seeds
    python scripts/reproduce_minimal_transformer.py --ablation RUN.json ...
                                     # the entries' cards and earlier --json runs, step by step
    python scripts/reproduce_minimal_transformer.py --tune --seeds 0 \\
        --set=--trainer.max_epochs=20 --set=--data.init_args.train_augment=null
                                     # a recipe change, judged on validation digits only

``--tune`` leaves the held-out test digits out of the output (tune on validation only).
``--cards`` trains nothing: it prints the table of the two zoo entries from the per-seed
held-out accuracies that ``geozoo zoo train NAME --seeds 0 1 2`` recorded on their cards (the
same recipes and seeds as the default run). ``--ablation`` trains nothing either: it puts the
variants of earlier ``--json`` runs between the two entries' card rows, in the order of
:data:`VARIANTS` (full to minimal), and states for each row what changed from the row above and
how far its held-out mean moved; with ``--write-docs`` the table replaces the ablation block of
docs/minimal_transformer.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import instantiate_class
from torch.utils.data import DataLoader

from geozoo.nets.transformer import PatchTransformer
from geozoo.zoo import card, create_model
from geozoo.zoo.cards import mean_std, replace_marked_block
from geozoo.zoo.pretrained import classification_metrics
from geozoo.zoo.recipes import configs_dir, train_recipe

VARIANTS = (  # full to minimal: the row order of the ablation table
    "vit_tiny_mnist",
    "symformer_nomlp_mnist",
    "symformer_symvo_mnist",
    "symformer_wqk_mnist",
    "symformer_sym_mnist",
    "symformer_wqk_novo_mnist",
    "symformer_min1h_mnist",
    "symformer_min_mnist",
)
ENTRIES = ("vit_tiny_mnist", "symformer_min_mnist")
SHARED_RECIPE = "symformer_min_mnist"  # the recipe of variants without one of their own
DOC = Path(__file__).resolve().parents[1] / "docs" / "minimal_transformer.md"
README = DOC.parents[1] / "README.md"  # carries a copy of the entries' table (BEGIN block)
BEGIN, END = "<!-- reproduce_minimal_transformer: begin -->", "<!-- end -->"
ABLATION_BEGIN = "<!-- reproduce_minimal_transformer --ablation: begin -->"


def attention_options(model: PatchTransformer) -> dict[str, Any]:
    """The per-block options of a built :class:`PatchTransformer` (its builder's choices)."""
    block = model.blocks[0]
    attn = block.attn
    options: dict[str, Any] = {
        "heads": attn.heads,
        "qk": attn.qk,
        "similarity": attn.similarity,
        "vo": attn.vo,
        "mlp": block.mlp is not None,
    }
    if block.mlp is not None:
        options["mlp_ratio"] = block.mlp[0].out_features / model.dim
    return options


def describe(model: PatchTransformer) -> str:
    """The reductions of a :class:`PatchTransformer`, read off the built model."""
    o = attention_options(model)
    parts = ["MLP" if o["mlp"] else "no MLP"]
    if o["qk"] == "separate":
        parts.append("W_Q = W_K" if o["similarity"] == "symmetric" else "W_Q, W_K")
    else:
        parts.append("W_QK = T T^T" if o["similarity"] == "symmetric" else "W_QK")
    parts.append({"separate": "W_V, W_O", "collapsed": "W_VO", "none": "no W_V/W_O"}[o["vo"]])
    parts.append(f"{o['heads']} head{'s' if o['heads'] > 1 else ''}")
    return ", ".join(parts)


def recipe_of(name: str) -> tuple[str, list[str]]:
    """``(recipe, overrides)`` that train variant ``name``."""
    if (configs_dir() / f"{name}.yaml").is_file():
        return name, []
    options = attention_options(create_model(name))
    prefix = "--model.init_args.network.init_args"
    # strings bare (quoted JSON is not a Literal choice), numbers and booleans as JSON
    values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in options.items()}
    return SHARED_RECIPE, [f"{prefix}.{key}={value}" for key, value in values.items()]


def fit_loaders(data: Any) -> dict[str, DataLoader]:
    """The clean (not augmented) training digits and the validation digits of a set-up
    :class:`~geozoo.data.MNISTDataModule`."""
    return {
        "train": DataLoader(data.datasets["train"], batch_size=500),
        "val": data.val_dataloader(),
    }


def train_one(name: str, seed: int, extra: list[str], tune: bool, root: str) -> dict[str, Any]:
    """Train ``name`` with ``seed`` from its recipe and evaluate it (accuracy in %)."""
    recipe, overrides = recipe_of(name)
    quiet = [
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
    ]
    start, cpu_start = time.perf_counter(), time.process_time()
    run = train_recipe(recipe, seed, [*quiet, *overrides, *extra])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    data = run.datamodule
    loaders = fit_loaders(data)
    if not tune:
        loaders["test"] = data.test_loaders_by_name()["clean"]
    metrics = classification_metrics(run.network, loaders, 10)
    epochs = data.trainer.max_epochs
    return {
        "variant": name,
        "seed": seed,
        "recipe": recipe,
        "params": sum(p.numel() for p in run.network.parameters()),
        "description": describe(run.network),
        **{f"{split}_acc": metrics[f"{split}/acc"] for split in loaders},
        "epochs": epochs,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
    }


def from_cards(name: str) -> list[dict[str, Any]]:
    """The per-seed held-out accuracies that the zoo pipeline recorded on ``name``'s card (the
    published seed only, for a card trained with one seed)."""
    info = card(name)
    one_seed = {info.get("seed", 0): info["metrics"]}
    per_seed = info["seeds"]["per_seed"] if "seeds" in info else one_seed
    model = create_model(name)
    return [
        {
            "variant": name,
            "seed": int(seed),
            "recipe": Path(info["recipe"]).stem,
            "params": sum(p.numel() for p in model.parameters()),
            "description": describe(model),
            "test_acc": metrics["clean/acc"],
            "cpu_seconds": 0.0,
            "source": "card",
        }
        for seed, metrics in per_seed.items()
    ]


def published_fit(name: str) -> tuple[int, dict[str, float]]:
    """``(seed, {"train_acc", "val_acc"})`` of ``name``'s published checkpoint (its card's median
    seed) on the data module its card records: what the card itself does not record."""
    info = card(name)
    data = instantiate_class((), dict(info["evaluation"]["data"]))
    data.setup("fit")
    metrics = classification_metrics(create_model(name, pretrained=True), fit_loaders(data), 10)
    return int(info.get("seed", 0)), {f"{s}_acc": metrics[f"{s}/acc"] for s in ("train", "val")}


def gap(results: list[dict[str, Any]]) -> str:
    """How far the minimal entry is from the full one: held-out points and parameter saving."""
    runs = {n: [r for r in results if r["variant"] == n] for n in ENTRIES}
    if not all(runs.values()) or "test_acc" not in results[0]:
        return ""
    full, minimal = (statistics.mean(r["test_acc"] for r in runs[n]) for n in ENTRIES)
    saving = 1 - runs[ENTRIES[1]][0]["params"] / runs[ENTRIES[0]][0]["params"]
    side = "below" if full >= minimal else "above"
    return (
        f"`{ENTRIES[1]}` is {abs(full - minimal):.2f} points {side} `{ENTRIES[0]}` on held-out "
        f"digits (mean over seeds) with {100 * saving:.1f}% fewer parameters."
    )


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return mean_std(values, 2)


def change(above: str, below: str) -> str:
    """What differs between two :func:`describe` strings, e.g. ``"W_V, W_O -> no W_V/W_O"``."""
    old, new = above.split(", "), below.split(", ")
    removed = ", ".join(p for p in old if p not in new)
    added = ", ".join(p for p in new if p not in old)
    return f"{removed} → {added}" if removed or added else "none"


def step(above: list[float], below: list[float]) -> str:
    """The move of the mean from ``above`` to ``below`` with the standard error of a difference
    of two means, ``sqrt(s_a^2 / n_a + s_b^2 / n_b)`` (sample standard deviations)."""
    if len(above) < 2 or len(below) < 2:
        raise ValueError(
            f"a step between rows needs at least 2 seeds per row, got {len(above)} and {len(below)}"
        )
    se = (statistics.variance(above) / len(above) + statistics.variance(below) / len(below)) ** 0.5
    return f"{statistics.mean(below) - statistics.mean(above):+.2f} ± {se:.2f}"


def table(results: list[dict[str, Any]], steps: bool = False) -> str:
    """Markdown table, one row per variant (mean ± std over seeds); a split that a row has no
    runs of (the cards record held-out accuracy only) is a dash. ``steps`` adds what changed from
    the row above and how far the held-out mean moved (:func:`change`, :func:`step`)."""
    full = next((r["params"] for r in results if r["variant"] == "vit_tiny_mnist"), None)
    splits = [s for s in ("train", "val", "test") if any(f"{s}_acc" in r for r in results)]
    header = {"train": "train acc (%)", "val": "val acc (%)", "test": "held-out acc (%)"}
    head = ["variant", "reductions", *(["change from the row above"] * steps), "params"]
    head += ["% of full", *(header[s] for s in splits)]
    head += ["held-out step (points)"] * (steps and "test" in splits)
    rows = [
        "| " + " | ".join(head) + " |",
        "|---|---|" + "---|" * steps + "---:|" * (len(head) - 2 - steps),
    ]
    above: list[dict[str, Any]] = []
    for name in dict.fromkeys(r["variant"] for r in results):
        runs = [r for r in results if r["variant"] == name]
        params = runs[0]["params"]
        cells = [f"`{name}`", runs[0]["description"]]
        if steps:
            cells.append(change(above[0]["description"], runs[0]["description"]) if above else "")
        cells += [f"{params:,}", f"{100 * params / full:.1f}" if full else "-"]
        cells += [_mean_std([r[f"{s}_acc"] for r in runs if f"{s}_acc" in r]) for s in splits]
        if steps and "test" in splits:
            test = [[r["test_acc"] for r in rs] for rs in (above, runs)]
            cells.append(step(*test) if above else "")
        rows.append("| " + " | ".join(cells) + " |")
        above = runs
    return "\n".join(rows)


def ablation(paths: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of the ablation table and the commands that trained them: the two entries from
    their cards (unless a run in ``paths`` trained them here; train and validation accuracy of
    the published seed only, :func:`published_fit`), the variants of the ``--json`` files
    ``paths`` in between, all in the order of :data:`VARIANTS`."""
    runs, commands = [], []
    for path in paths:
        saved = json.loads(Path(path).read_text())
        if any("test_acc" not in r for r in saved["results"]):
            raise ValueError(
                f"--ablation steps by held-out accuracy, which {path} (`{saved['command']}`, a "
                "--tune run?) does not have: give the --json of a run without --tune"
            )
        built = {  # each variant built once, not once per seed
            name: sum(p.numel() for p in create_model(name).parameters())
            for name in {run["variant"] for run in saved["results"]}
        }
        for run in saved["results"]:
            if run["params"] != built[run["variant"]]:
                raise ValueError(
                    f"{path} trained {run['variant']} with {run['params']:,} parameters, but its "
                    f"builder now makes {built[run['variant']]:,}: the run is of an older "
                    "architecture (e.g. the patch stem), so its accuracy says nothing about "
                    "today's; rerun the variant"
                )
        runs += saved["results"]
        commands.append(saved["command"].strip())
    trained = {r["variant"] for r in runs}
    for name in ENTRIES:
        if name not in trained:
            seed, fit = published_fit(name)
            runs += [{**r, **fit} if r["seed"] == seed else r for r in from_cards(name)]
    return sorted(runs, key=lambda r: (VARIANTS.index(r["variant"]), r["seed"])), commands


def write_docs(text: str, path: Path = DOC, begin: str = BEGIN) -> None:
    """Replace the block between ``begin`` and the next :data:`END` marker of ``path``."""
    replace_marked_block(path, begin, END, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=list(ENTRIES), choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ARG",
        help="a recipe override for every run, e.g. --set=--trainer.max_epochs=20 (repeatable)",
    )
    parser.add_argument("--tune", action="store_true", help="report no held-out test accuracy")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs (smoke test)")
    parser.add_argument(
        "--cards", action="store_true", help="print the zoo entries' seeds from their cards"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results after each run")
    parser.add_argument(
        "--table-only", action="store_true", help="print the table of an earlier --json run"
    )
    parser.add_argument(
        "--ablation",
        nargs="+",
        type=Path,
        default=None,
        metavar="JSON",
        help="print the ablation table: the entries' cards and the variants of earlier --json runs",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="replace the table in docs/minimal_transformer.md (the entries' also in README.md)",
    )
    args = parser.parse_args(argv)
    if sum(map(bool, (args.cards, args.table_only, args.ablation))) > 1:
        parser.error("--cards, --table-only and --ablation are alternatives: give one of them")
    if args.quick:
        args.seeds, args.set = [0], [*args.set, "--trainer.max_epochs=2"]
    if args.table_only and args.json is None:
        parser.error("--table-only reads the results of an earlier run: give --json FILE")
    if args.write_docs and args.tune:
        parser.error("--write-docs publishes held-out accuracy, which --tune leaves out")
    torch.set_num_threads(1)
    for logger in ("lightning.pytorch", "lightning.fabric"):  # one line per run instead
        logging.getLogger(logger).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    command = "python scripts/reproduce_minimal_transformer.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    if args.cards:
        results = [r for name in ENTRIES for r in from_cards(name)]
    elif args.ablation:
        results, trained_by = ablation(args.ablation)
    elif args.table_only:
        saved = json.loads(args.json.read_text())
        results, command = saved["results"], saved["command"]
        print(f"results of `{command}`")
    else:
        results = []
        with tempfile.TemporaryDirectory() as root:
            for seed in args.seeds:
                for name in args.variants:
                    r = train_one(name, seed, args.set, args.tune, root)
                    results.append(r)
                    accs = "  ".join(
                        f"{s} {r[f'{s}_acc']:.2f}"
                        for s in ("train", "val", "test")
                        if f"{s}_acc" in r
                    )
                    print(
                        f"  {name:<26} seed {seed}  params {r['params']:>7,}  {accs}  "
                        f"({r['epochs']} epochs, {r['cpu_seconds'] / r['epochs']:.1f} s CPU "
                        "per epoch)",
                        flush=True,
                    )
                    if args.json:  # after every run: an interrupted run keeps its results
                        args.json.write_text(
                            json.dumps({"command": command, "results": results}, indent=2)
                        )
    text = table(results, steps=bool(args.ablation))
    seeds = sorted({r["seed"] for r in results})
    recipes = sorted({r["recipe"] for r in results})
    cpu = sum(r["cpu_seconds"] for r in results) / 60
    setup = (
        f"Recipes {', '.join(f'configs/{r}.yaml' for r in recipes)}"
        + (f" with `{' '.join(args.set)}`" if args.set and not args.table_only else "")
        + f"; seeds {', '.join(map(str, seeds))}; 3,600 training / 400 validation / 1,000 "
        f"held-out digits; {cpu:.0f} min CPU time. Printed by `{command.strip()}`."
    )
    if args.cards:
        setup = (
            "Published entries, trained by `geozoo zoo train NAME` (seeds as on their cards); "
            "held-out accuracy on the 1,000 clean test digits, mean ± std over seeds. Printed "
            f"by `{command.strip()}`."
        )
    if args.ablation:
        carded = list(dict.fromkeys(r["variant"] for r in results if r.get("source") == "card"))
        setup = (
            (
                f"Rows {' and '.join(f'`{n}`' for n in carded)}: the published entries' "
                "seeds as recorded on their cards by `geozoo zoo train NAME --seeds 0 1 2` (their "
                "recipes differ only in the blocks); the cards record held-out accuracy only, "
                "train and validation accuracy are the published (median) seed's. "
                if carded
                else ""
            )
            + f"Other rows: configs/{SHARED_RECIPE}.yaml with the variant's attention options, "
            f"seeds {', '.join(map(str, seeds))}, trained by "
            + ", ".join(f"`{c}`" for c in trained_by)
            + f" ({cpu:.0f} min CPU time). Held-out accuracy on the 1,000 clean test digits, "
            "validation on the 400 validation digits, train on the 3,600 clean (unjittered) "
            "training digits, mean ± std over seeds; step: the held-out mean minus the row "
            "above's, ± the standard error of that difference. Printed by "
            f"`{command.strip()}`."
        )
    setup = f"{gap(results)} {setup}".strip()
    print(f"\n{text}\n\n{setup}")
    if args.write_docs:
        begin = ABLATION_BEGIN if args.ablation else BEGIN
        for path in (DOC,) if args.ablation else (DOC, README):
            write_docs(f"{text}\n\n{setup}", path, begin=begin)
            print(f"\nwrote the table into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
