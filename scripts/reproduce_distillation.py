"""Distil the zoo's ``cnn_mnist`` into ``cnn_mnist_tiny`` with every divergence and method.

For each method and seed a fresh student (``cnn_mnist_tiny``, ~4.8k parameters) is trained on the
3,600 offline MNIST training digits (40x40 frame, no augmentation) with the geozoo objectives,
through the objective protocol in a plain PyTorch loop (the same ``StepContext`` the Lightning
task builds).  The frozen teacher's logits on the fixed training set are computed once and passed
as ``ctx.extras["teacher_logits"]``.  Students are evaluated on the 1,000 held-out digits, clean
and affNIST-style, for accuracy and expected calibration error (15 bins), both in percent, by
the zoo's :func:`geozoo.zoo.pretrained.classification_metrics` (torchmetrics).

Methods: ``ce`` (no teacher), ``kd_<divergence>`` (CE + ``Distillation`` with each divergence,
T = 4), ``pld`` (Plackett-Luce, no separate CE), ``bdkd`` (online BD-KD: CE + the objective, its
teacher a fresh 8-16-32 ``cnn_mnist`` trained jointly), ``ofa`` (CE + OFA-KD on the student's two
pooled stages) and ``sinkd`` (CE + KD-KL + SinKD).

Usage::

    python scripts/reproduce_distillation.py            # 2 seeds, 3 epochs (about 30 min on 1 CPU)
    python scripts/reproduce_distillation.py --quick    # 1 seed, 1 epoch on 1,024 digits
    python scripts/reproduce_distillation.py --write-docs   # also update docs/objectives.md

The table is printed (mean +- std over seeds); ``--write-docs`` replaces the marked section of
``docs/objectives.md`` and writes ``docs/reliability_distillation.png``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import geozoo
from geozoo.data import MNISTDataModule
from geozoo.metrics.calibration import reliability_diagram
from geozoo.objectives import (
    BalancedDivergenceDistillation,
    CrossEntropy,
    Distillation,
    OFADistillation,
    PlackettLuceDistillation,
    SinkhornDistillation,
)
from geozoo.objectives.base import Objective, StepContext
from geozoo.zoo.pretrained import classification_metrics

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


def methods(teacher: nn.Module) -> dict[str, Callable[[], list[Objective]]]:
    table: dict[str, Callable[[], list[Objective]]] = {"ce": lambda: [CrossEntropy()]}
    for name, params in DIVERGENCES:
        label = f"kd_{name}" + (f"({params['alpha']})" if params else "")
        table[label] = lambda name=name, params=params: [
            CrossEntropy(),
            Distillation(teacher, name, temperature=4.0, divergence_params=params),
        ]
    table["pld"] = lambda: [PlackettLuceDistillation(teacher, teacher_temperature=1.0)]
    table["bdkd"] = lambda: [
        CrossEntropy(),
        BalancedDivergenceDistillation(
            geozoo.create_model("cnn_mnist", widths=(8, 16, 32)), temperature=1.0, online=True
        ),
    ]
    table["ofa"] = lambda: [
        CrossEntropy(),
        OFADistillation(
            teacher,
            stages={"features.6": 4, "features.13": 8},
            num_classes=10,
            hidden=32,
            epsilon=1.0,
        ),
    ]
    table["sinkd"] = lambda: [
        CrossEntropy(),
        Distillation(teacher, "kl", temperature=4.0),
        SinkhornDistillation(teacher, temperature=2.0, weight=1.0),
    ]
    return table


@torch.no_grad()
def predict(network: nn.Module, images: Tensor, batch: int = 500) -> Tensor:
    network.eval()
    return torch.cat([network(images[i : i + batch]) for i in range(0, len(images), batch)])


def evaluate(network: nn.Module, tests: dict[str, tuple[Tensor, Tensor]]) -> dict[str, float]:
    """Accuracy and ECE (15 bins) in percent: the zoo's own metrics (torchmetrics)."""
    loaders = {
        name: DataLoader(TensorDataset(*test), batch_size=500) for name, test in tests.items()
    }
    return classification_metrics(network, loaders, 10)


def train_one(
    build: Callable[[], list[Objective]],
    train: tuple[Tensor, Tensor, Tensor],
    seed: int,
    epochs: int,
    batch_size: int = 64,
) -> nn.Module:
    torch.manual_seed(seed)
    student = geozoo.create_model("cnn_mnist_tiny")
    objectives = nn.ModuleList(build())
    params = [p for p in [*student.parameters(), *objectives.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-4)
    images, labels, teacher_logits = train
    steps = epochs * ((len(images) + batch_size - 1) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    step = 0
    for epoch in range(epochs):
        student.train()
        objectives.train()
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            index = order[start : start + batch_size]
            x, y = images[index], labels[index]
            ctx = StepContext(
                inputs=x,
                targets=y,
                outputs=student(x),
                network=student,
                stage="train",
                global_step=step,
                epoch=epoch,
                extras={"teacher_logits": teacher_logits[index]},
            )
            loss = sum(o.weight * o(ctx).loss for o in objectives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
    return student


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 1,024 digits")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="run only these methods")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small networks: threads only add overhead on a shared machine
    seeds = 1 if args.quick else args.seeds
    epochs = 1 if args.quick else args.epochs

    data = MNISTDataModule(
        source="offline",
        pad_to=40,
        test_sets=("clean", "affnist"),
        limit_train=1024 if args.quick else None,
    )
    data.setup()
    images, labels = data.datasets["train"].tensors
    tests = {n: data.datasets[f"test_{n}"].tensors for n in ("clean", "affnist")}

    teacher = geozoo.create_model("cnn_mnist", pretrained=True)
    teacher_logits = predict(teacher, images)
    teacher_metrics = evaluate(teacher, tests)
    print(
        f"teacher cnn_mnist: clean {teacher_metrics['clean/acc']:.1f}% "
        f"(ECE {teacher_metrics['clean/ece']:.1f}), affNIST {teacher_metrics['affnist/acc']:.1f}% "
        f"(ECE {teacher_metrics['affnist/ece']:.1f}); train digits {len(images)}, "
        f"seeds {seeds}, epochs {epochs}",
        flush=True,
    )
    table = methods(teacher)
    chosen = args.only or list(table)
    results: dict[str, list[dict[str, float]]] = {}
    students: dict[str, nn.Module] = {}
    for name in chosen:
        if name not in table:
            raise SystemExit(f"unknown method {name!r}; choose from {list(table)}")
        start = time.perf_counter()
        results[name] = []
        for seed in range(seeds):
            student = train_one(table[name], (images, labels, teacher_logits), seed, epochs)
            results[name].append(evaluate(student, tests))
            if seed == 0:
                students[name] = student
        row = results[name]
        print(
            f"{name:<22} clean {fmt([r['clean/acc'] for r in row]):>11}  "
            f"ECE {fmt([r['clean/ece'] for r in row]):>9}  "
            f"affNIST {fmt([r['affnist/acc'] for r in row]):>11}  "
            f"ECE {fmt([r['affnist/ece'] for r in row]):>9}  "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    n_params = sum(p.numel() for p in geozoo.create_model("cnn_mnist_tiny").parameters())
    tm = teacher_metrics
    lines = [
        f"Student `cnn_mnist_tiny` ({n_params} parameters), teacher `cnn_mnist` (clean "
        f"{tm['clean/acc']:.1f}%, ECE {tm['clean/ece']:.1f}; affNIST-style "
        f"{tm['affnist/acc']:.1f}%, ECE {tm['affnist/ece']:.1f}); {len(images)} training digits, "
        f"{epochs} epochs, mean ± std over {seeds} seed(s); accuracy and ECE in %, on the 1,000 "
        "held-out digits.",
        "",
        "| method | clean acc | clean ECE | affNIST acc | affNIST ECE |",
        "|---|---|---|---|---|",
    ]
    for name, row in results.items():
        cells = [fmt([r[k] for r in row]) for k in ("clean/acc", "clean/ece", "affnist/acc")]
        cells.append(fmt([r["affnist/ece"] for r in row]))
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
        images_c, labels_c = tests["clean"]
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
