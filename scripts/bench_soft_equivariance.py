"""Training steps per second of the soft-equivariance methods through ``RegressionTask``, against
a bare PyTorch loop on the same plain MLP, in one run.

    python scripts/bench_soft_equivariance.py [--task inertia] [--protocol paper] [--steps 400]

Every method of ``scripts/reproduce_soft_equivariance.py`` (plain MLP, hard EMLP, RPP,
projection-form PER, sample-form PER on the MLP) trains through Lightning exactly as the
reproduction trains it (fast path: :class:`geozoo.data.tensor_batches.TensorBatches` batches and
epoch-level logging), without validation, on the task's data, protocol batch size and widths.
The bare loop trains the same plain MLP (same initialisation, cosine schedule, MSE, and the
optimizer every method trains with: ``make_optimizer``, fused Adam) on the same tensors with
``randperm`` batches.  The plain MLP and projection PER also run on the old path
(``DataLoader`` batches, per-step logging) for comparison.  Each timing skips ``--warmup`` steps
(projector construction, first-epoch setup) and counts whole epochs; the median of ``--rounds``
alternating rounds is reported.  Times are the process's CPU time (one torch thread), which other
jobs on a shared machine disturb far less than wall time.  Printed ratios: task / bare loop for
the plain MLP (steps per second) and method / plain MLP through the task (time per step).
``free_emlp`` is projection PER's network trained without the regularizer, which separates the
cost of the penalty from the cost of the EMLP-shaped network itself.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_soft_equivariance import (
    TASKS,
    make_data,
    make_optimizer,
    make_task,
    make_trainer,
    markers,
    protocol_for,
)

from geozoo.nets.equivariant_mlp import PlainMLP
from geozoo.zoo.cards import replace_marked_block

METHODS = ("mlp", "emlp_full", "rpp", "free_emlp", "per", "per_norm", "per_softemlp", "mlp_sample")


class StepTimer(L.Callback):
    """Wall time of the training steps after the first ``warmup`` ones."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.stop, self.first = warmup, None, None, None

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if self.start is None and trainer.global_step >= self.warmup:
            self.start, self.first = time.process_time(), trainer.global_step

    def on_train_end(self, trainer: L.Trainer, *args) -> None:
        self.stop, self.steps = time.process_time(), trainer.global_step - self.first


def task_seconds_per_step(
    method: str, task: str, protocol: str, epochs: int, warmup: int, fast: bool
) -> float:
    """``method`` through the task; ``free_emlp`` is PER's network without its regularizer."""
    spec, proto = TASKS[task], protocol_for(protocol, task)
    torch.manual_seed(0)
    data = make_data(spec, 0, proto, fast=fast)
    module = make_task("per" if method == "free_emlp" else method, spec, data, proto, fast=fast)
    if method == "free_emlp":
        del module.objectives[1:]
    timer = StepTimer(warmup)
    make_trainer(epochs, [timer], val_every=None).fit(module, data)
    return (timer.stop - timer.start) / timer.steps


def bare_seconds_per_step(task: str, protocol: str, epochs: int, warmup: int) -> float:
    """The plain MLP trained by hand: no Lightning, no objectives, no logging."""
    spec, proto = TASKS[task], protocol_for(protocol, task)
    torch.manual_seed(0)
    data = make_data(spec, 0, proto)
    data.setup()
    x, y = data.splits["train"].tensors
    net = PlainMLP(data.rep_in, data.rep_out, width=proto.mlp_width)
    opt = make_optimizer(proto)(net.parameters())
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=proto.epochs)
    step, start = 0, None
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), proto.batch_size):
            if step == warmup:
                start = time.process_time()
            index = order[i : i + proto.batch_size]
            loss = torch.nn.functional.mse_loss(net(x[index]), y[index])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        schedule.step()
    return (time.process_time() - start) / (step - warmup)


def optimizer_name(proto) -> str:
    """The optimizer settings every run uses, in words."""
    factory = make_optimizer(proto)
    settings = ", ".join(f"{k}={v}" for k, v in factory.keywords.items())
    return f"{factory.func.__name__}({settings})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="inertia", choices=list(TASKS))
    parser.add_argument("--protocol", default="paper", choices=["short", "quick", "paper"])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per round (about)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--write-doc",
        nargs="*",
        default=[],
        help="also write the table into these files' <!-- softeq-bench --> blocks",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    proto = protocol_for(args.protocol, args.task)
    per_epoch = -(-proto.num_train // proto.batch_size)
    epochs = -(-(args.steps + args.warmup) // per_epoch)
    header = (
        f"Task {args.task}, protocol {args.protocol}: batch {proto.batch_size}, "
        f"{per_epoch} steps/epoch, {epochs} epochs per round ({epochs * per_epoch} steps, "
        f"{args.warmup} untimed), {torch.get_num_threads()} thread(s), "
        f"median of {args.rounds} rounds; every run (bare loop too) {optimizer_name(proto)}."
    )
    print(header)
    runs = {
        "bare loop (mlp)": lambda: bare_seconds_per_step(
            args.task, args.protocol, epochs, args.warmup
        )
    }
    for method in args.methods:
        runs[method] = lambda m=method: task_seconds_per_step(
            m, args.task, args.protocol, epochs, args.warmup, fast=True
        )
    for method in ("mlp", "per"):
        runs[f"{method} (DataLoader, step logs)"] = lambda m=method: task_seconds_per_step(
            m, args.task, args.protocol, epochs, args.warmup, fast=False
        )
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            times[name].append(run())
    median = {name: statistics.median(values) for name, values in times.items()}
    bare, mlp = median["bare loop (mlp)"], median["mlp"]
    lines = [
        "| run | ms/step | steps/s | vs bare loop (steps/s) | vs task mlp (time/step) |",
        "|---|---|---|---|---|",
    ]
    for name, seconds in median.items():
        lines.append(
            f"| {name} | {1e3 * seconds:.3f} | {1 / seconds:.0f} | {bare / seconds:.2f}x | "
            f"{seconds / mlp:.2f}x |"
        )
    lines.append("")
    lines.append(
        f"Plain MLP through the task: {bare / mlp:.2f}x the bare loop's steps/s (target >= 0.5)."
    )
    if "per" in median:
        lines.append(
            f"Projection PER: {median['per'] / mlp:.2f}x the plain MLP's step time (target <= 1.5)"
            + (
                f", {median['per'] / median['free_emlp']:.2f}x that of the same network without "
                "the regularizer."
                if "free_emlp" in median
                else "."
            )
        )
    command = " ".join(["python scripts/bench_soft_equivariance.py", *(argv or sys.argv[1:])])
    text = f"{header}\n\n" + "\n".join(lines) + f"\n\nPrinted by `{command}`."
    print("\n" + text)
    for path in args.write_doc:
        replace_marked_block(path, *markers("bench"), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
