"""Cost of invariance-constrained augmentation (Hounie, Chamon & Ribeiro, ICML 2023) per epoch.

Builds the three arms from their recipes (``configs/daug_{none,uniform,mh}_mnist.yaml``, which
differ only in their objectives) and times training epochs on the 3,600 offline MNIST training
digits through the objective protocol (the ``StepContext`` and weighted sum the Lightning task
uses; no logging or validation), arms interleaved so machine load affects them alike. Prints the
median seconds per epoch of each arm and, in the same run, the ratio of the Metropolis-Hastings
arm to uniform augmentation (target: <= 1.6x).

Usage: ``python scripts/bench_augment.py [--repeats 3] [--quick] [--write-docs]`` (run it alone:
``/work/bin/bench python scripts/bench_augment.py`` on the shared machine); ``--write-docs``
replaces the marked section of ``docs/augment.md`` with the printed lines.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

import torch

from geozoo.objectives.base import StepContext
from geozoo.zoo.recipes import lightning_cli

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "augment.md"
START, END = "<!-- augment-bench:start -->", "<!-- augment-bench:end -->"
ARMS = ("none", "uniform", "mh")


def build(arm: str, limit: int | None):
    """The task (network + objectives), optimizer and training loader of an arm's recipe."""
    overrides = ["--trainer.logger=false", "--trainer.enable_checkpointing=false"]
    if limit is not None:
        overrides.append(f"--data.init_args.limit_train={limit}")
    cli = lightning_cli(
        ["--config", str(ROOT / "configs" / f"daug_{arm}_mnist.yaml"), *overrides], run=False
    )
    task, data = cli.model, cli.datamodule
    data.setup("fit")
    optimizer = task.optimizer_factory([p for p in task.parameters() if p.requires_grad])
    return task, optimizer, data.train_dataloader()


def epoch(task, optimizer, loader) -> float:
    """Seconds for one training epoch: forward, every objective, backward, step."""
    task.train()
    start = time.perf_counter()
    for inputs, targets in loader:
        outputs = task.network(inputs)
        ctx = StepContext(inputs, targets, outputs, task.network, "train", task=None)
        loss = sum(o.weight * o(ctx).loss for o in task.objectives)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per arm")
    parser.add_argument("--quick", action="store_true", help="512 digits, 1 repeat")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    limit, repeats = (512, 1) if args.quick else (None, args.repeats)
    runs = {arm: build(arm, limit) for arm in ARMS}
    for arm in ARMS:  # warm-up epoch (allocations, the MH dual variable leaves 0)
        epoch(*runs[arm])
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for _ in range(repeats):
        for arm in ARMS:
            times[arm].append(epoch(*runs[arm]))
    digits = len(runs["none"][2].dataset)
    lines = [f"seconds per training epoch ({digits} digits, batch 64, 1 thread, {repeats} repeats)"]
    median = {arm: statistics.median(t) for arm, t in times.items()}
    for arm in ARMS:
        spread = ", ".join(f"{t:.2f}" for t in times[arm])
        lines.append(f"  {arm:8s} median {median[arm]:6.2f}  ({spread})")
    mu = float(runs["mh"][0].objectives[1].dual)
    lines.append(
        f"MH / uniform = {median['mh'] / median['uniform']:.2f}x (target <= 1.6x); MH / none = "
        f"{median['mh'] / median['none']:.2f}x; dual variable at the end: {mu:.2f}"
    )
    print("\n".join(lines))
    if args.write_docs:
        block = "\n".join(lines)
        section = f"{START}\n```\n{block}\n```\n{END}"
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        DOC.write_text(pattern.sub(lambda _: section, DOC.read_text()))
        print(f"wrote the benchmark section of {DOC}")


if __name__ == "__main__":
    main()
