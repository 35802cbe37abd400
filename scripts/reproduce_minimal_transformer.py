"""Reproduce the parameter / accuracy trade-off of "Reducing the Transformer Architecture to a
Minimum" (Bermeitinger et al., 2024, arXiv 2410.13732) on geozoo's offline MNIST digits.

Every registered MNIST variant, from the full ViT (``vit_tiny_mnist``) down to the minimal
symmetric-attention model (``symformer_min_mnist``), is trained with the same budget, optimiser
and seeds on the same 3,600 training digits (28x28, no augmentation) and evaluated on the same
1,000 held-out digits. The script prints a table of parameter count, final training accuracy and
held-out test accuracy (mean +- std over seeds) and, with ``--write-docs``, replaces the table
in docs/minimal_transformer.md.

    python scripts/reproduce_minimal_transformer.py              # full run, ~12 min of CPU time
    python scripts/reproduce_minimal_transformer.py --quick      # smoke test, well under a minute
    python scripts/reproduce_minimal_transformer.py --variants symformer_min_mnist \\
        --override heads=4 --epochs 30                          # what closes the gap?
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from geozoo.data import MNISTDataModule
from geozoo.zoo import create_model
from geozoo.zoo.pretrained import classification_metrics

VARIANTS = (
    "vit_tiny_mnist",
    "symformer_nomlp_mnist",
    "symformer_wqk_mnist",
    "symformer_sym_mnist",
    "symformer_wqk_novo_mnist",
    "symformer_min1h_mnist",
    "symformer_min_mnist",
)
DOC = Path(__file__).resolve().parents[1] / "docs" / "minimal_transformer.md"
BEGIN, END = "<!-- reproduce_minimal_transformer: begin -->", "<!-- end -->"


def describe(model: nn.Module) -> str:
    """The reductions of a :class:`~geozoo.nets.PatchTransformer`, read off the built model."""
    block = model.blocks[0]
    attn = block.attn
    parts = ["MLP" if block.mlp is not None else "no MLP"]
    if attn.qk == "separate":
        parts.append("W_Q = W_K" if attn.similarity == "symmetric" else "W_Q, W_K")
    else:
        parts.append("W_QK = T T^T" if attn.similarity == "symmetric" else "W_QK")
    parts.append({"separate": "W_V, W_O", "collapsed": "W_VO", "none": "no W_V/W_O"}[attn.vo])
    parts.append(f"{attn.heads} head{'s' if attn.heads > 1 else ''}")
    if (model.dim, model.depth, model.patch_size) != (64, 6, 7):
        parts.append(f"width {model.dim}, depth {model.depth}, patch {model.patch_size}")
    return ", ".join(parts)


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--override expects KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def load_digits(limit_train: int | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Train / held-out test tensors of the offline MNIST split used by the zoo recipes."""
    dm = MNISTDataModule(source="offline", pad_to=None, test_sets=["clean"], seed=0)
    dm.setup("fit")
    train, test = dm.datasets["train"].tensors, dm.datasets["test_clean"].tensors
    if limit_train is not None:  # a seeded random subset: the digits are stored class by class
        keep = torch.randperm(len(train[1]), generator=torch.Generator().manual_seed(0))
        train = tuple(t[keep[:limit_train]] for t in train)
    return {"train": train, "test": test}


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy as a fraction, by the zoo's metrics (torchmetrics)."""
    loader = DataLoader(TensorDataset(images, labels), batch_size=500)
    return classification_metrics(model, {"set": loader}, 10)["set/acc"] / 100


def train_one(
    name: str, seed: int, data: dict, args: argparse.Namespace, overrides: dict[str, Any]
) -> dict[str, Any]:
    """Train ``name`` from scratch with ``seed``: AdamW with a per-epoch cosine schedule, as in
    the zoo recipes configs/vit_tiny_mnist.yaml and configs/symformer_min_mnist.yaml."""
    torch.manual_seed(seed)
    model = create_model(name, **overrides)
    images, labels = data["train"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    generator = torch.Generator().manual_seed(seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        for i in range(0, len(labels), args.batch_size):
            batch = order[i : i + args.batch_size]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
    return {
        "variant": name,
        "seed": seed,
        "params": sum(p.numel() for p in model.parameters()),
        "description": describe(model),
        "train_acc": accuracy(model, *data["train"]),
        "test_acc": accuracy(model, *data["test"]),
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
    }


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} +- {100 * std:.2f}"


def table(results: list[dict[str, Any]], full_params: int | None) -> str:
    rows = [
        "| variant | reductions | params | % of full | train acc (%) | test acc (%) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["variant"] for r in results):
        runs = [r for r in results if r["variant"] == name]
        params = runs[0]["params"]
        share = f"{100 * params / full_params:.1f}" if full_params else "-"
        rows.append(
            f"| `{name}` | {runs[0]['description']} | {params:,} | {share} | "
            f"{_mean_std([r['train_acc'] for r in runs])} | "
            f"{_mean_std([r['test_acc'] for r in runs])} |"
        )
    return "\n".join(rows)


def write_docs(text: str, path: Path = DOC) -> None:
    doc = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(doc):
        raise ValueError(f"{path} has no {BEGIN} ... {END} block to replace")
    path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", doc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument(
        "--override",
        type=_parse_override,
        action="append",
        default=[],
        help="builder argument for every variant, e.g. heads=4 or depth=8 (repeatable)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="2 variants, 1 seed, 2 epochs")
    parser.add_argument(
        "--json", type=Path, default=None, help="write the raw results (after every run)"
    )
    parser.add_argument(
        "--table-only", action="store_true", help="print the table of an earlier --json run"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="replace the table in docs/minimal_transformer.md"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.variants = ["vit_tiny_mnist", "symformer_min_mnist"]
        args.seeds, args.epochs, args.limit_train = [0], 2, 600
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if args.table_only and args.json is None:
        parser.error("--table-only reads the results of an earlier run: give --json FILE")
    torch.set_num_threads(args.threads)
    overrides = dict(args.override)
    setup = (
        f"{args.epochs} epochs, batch {args.batch_size}, AdamW (lr {args.lr}, weight decay "
        f"{args.weight_decay}, cosine schedule)" + (f", overrides {overrides}" if overrides else "")
    )
    command = "python scripts/reproduce_minimal_transformer.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    if args.table_only:
        saved = json.loads(args.json.read_text())
        results, command, setup = saved["results"], saved["command"], saved["setup"]
        print(f"results of `{command}`")
    else:
        data = load_digits(args.limit_train)
        setup = (
            f"{len(data['train'][1])} training / {len(data['test'][1])} held-out digits, {setup}"
        )
        print(setup, flush=True)
        results = []
        for seed in args.seeds:
            for name in args.variants:
                result = train_one(name, seed, data, args, overrides)
                results.append(result)
                print(
                    f"  {name:<26} seed {seed}  params {result['params']:>7,}  "
                    f"train {100 * result['train_acc']:.2f}  test {100 * result['test_acc']:.2f}  "
                    f"({result['cpu_seconds']:.0f} s CPU, {result['seconds']:.0f} s wall)",
                    flush=True,
                )
                if args.json:  # after every run, so that an interrupted run keeps its results
                    record = {"command": command, "setup": setup, "results": results}
                    args.json.write_text(json.dumps(record, indent=2))
    full = next((r["params"] for r in results if r["variant"] == "vit_tiny_mnist"), None)
    text = table(results, full)
    seeds = sorted({r["seed"] for r in results})
    setup = f"{setup}, seeds {', '.join(map(str, seeds))} (the same for every variant)"
    present = {r["variant"] for r in results}
    if any(sum(r["variant"] == v for r in results) != len(seeds) for v in present):
        setup += "; some variants did not finish every seed"
    cpu = sum(r["cpu_seconds"] for r in results) / 60
    print(f"\n{text}\n\ntraining + evaluation: {cpu:.1f} min CPU time in total")
    if args.write_docs:
        write_docs(f"{text}\n\n{setup}; {cpu:.0f} min CPU time. Printed by `{command.strip()}`.")
        print(f"\nwrote the table into {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
