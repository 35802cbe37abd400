"""Reproduce the mixed-symmetry comparison of Kim, Lee, Yang & Lee (ICML 2023, arXiv 2306.00356)
on geozoo's generated tasks: every method on every task with several seeds, one protocol.

    python scripts/reproduce_soft_equivariance.py            # 3 seeds, 6 methods, 30 epochs
    python scripts/reproduce_soft_equivariance.py --quick    # 1 seed, all 7 methods, 16 epochs

Methods (identical data, optimiser, epochs, batch size and model selection for all):

* ``mlp``: plain MLP.
* ``emlp_full``: EMLP-like network, hard-equivariant to the full candidate group.
* ``emlp_sub``: the same, hard-equivariant to the true subgroup (an oracle baseline).
* ``rpp``: Residual Pathway Priors over the full group (W = P V + U, L2 priors 1e-5 / 1).
* ``per``: the soft model (unconstrained EMLP-shaped network) with
  :class:`geozoo.objectives.MixedSymmetryRegularizer` (projection form, one-shot tuning).
* ``per_cont``: the same with the continuous strength schedule.
* ``mlp_sample``: the plain MLP with the sample-form mixed regularizer (one-shot tuning).

Prints a markdown table of test MSE (ADE for motion) as mean +- std over seeds, and the
strengths each regularized method ended with (mean over seeds).  Model selection: the weights
with the best validation error, checked every ``val_every`` epochs over the whole run.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass

import lightning as L
import torch

from geozoo.data.symmetry_tasks import (
    CosineSimilarityDataModule,
    ModifiedInertiaDataModule,
    MotionForecastingDataModule,
    SymmetryTaskDataModule,
)
from geozoo.metrics.regression import average_displacement_error
from geozoo.nets.equivariant_mlp import EquivariantMLP, PlainMLP
from geozoo.objectives.regression import MeanSquaredError
from geozoo.objectives.soft_equivariance import MixedSymmetryRegularizer, ResidualPathwayPrior
from geozoo.tasks import RegressionTask


@dataclass(frozen=True)
class TaskSpec:
    name: str
    make_data: object
    candidates: tuple[str, ...]
    init_strength: tuple[float, ...]
    full_group: str
    true_group: str
    metric: str  # "mse" or "ade"


TASKS = {
    "inertia": TaskSpec(
        "inertia",
        lambda seed: ModifiedInertiaDataModule(eps=0.3, axis="z", seed=seed),
        ("o3", "o2_x", "o2_y", "o2_z"),
        (0.0, 1.0, 1.0, 1.0),
        "o3",
        "o2_z",
        "mse",
    ),
    "cossim_rot": TaskSpec(
        "cossim_rot",
        lambda seed: CosineSimilarityDataModule(variant="rotation_only", seed=seed),
        ("so3_scaling", "so3", "scaling"),
        (1.0, 1.0, 1.0),
        "so3_scaling",
        "so3",
        "mse",
    ),
    "cossim_scale": TaskSpec(
        "cossim_scale",
        lambda seed: CosineSimilarityDataModule(variant="scale_only", seed=seed),
        ("so3_scaling", "so3", "scaling"),
        (1.0, 1.0, 1.0),
        "so3_scaling",
        "scaling",
        "mse",
    ),
    "motion": TaskSpec(
        "motion",
        lambda seed: MotionForecastingDataModule(num_train=1000, seed=seed),
        ("o3", "o2_x", "o2_y", "o2_z"),
        (0.0, 1.0, 1.0, 1.0),
        "o3",
        "o2_z",
        "ade",
    ),
}

METHODS = ("mlp", "emlp_full", "emlp_sub", "rpp", "per", "per_cont", "mlp_sample")
# the full run (3 seeds) leaves out per_cont to fit a 2-core CPU budget; --quick runs all seven
FULL_METHODS = ("mlp", "emlp_full", "emlp_sub", "rpp", "per", "mlp_sample")


@dataclass
class Protocol:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    hidden: tuple[int, ...]
    mlp_width: int
    adjust_frac: float
    window: int
    exponent: float
    val_every: int


FULL = Protocol(
    epochs=30,
    batch_size=100,
    lr=3e-3,
    weight_decay=2e-5,
    hidden=(16, 8, 2),
    mlp_width=128,
    adjust_frac=0.3,
    window=5,
    exponent=2.0,
    val_every=2,
)
QUICK = Protocol(
    epochs=16,
    batch_size=100,
    lr=3e-3,
    weight_decay=2e-5,
    hidden=(16, 8, 2),
    mlp_width=128,
    adjust_frac=0.3,
    window=3,
    exponent=2.0,
    val_every=2,
)


def build(method: str, spec: TaskSpec, data: SymmetryTaskDataModule, proto: Protocol):
    """Network and objectives of one method (the same protocol for all)."""
    reps = {"rep_in": data.rep_in, "rep_out": data.rep_out}
    adjust_at = max(1, round(proto.adjust_frac * proto.epochs))
    mixed = {
        "groups": list(spec.candidates),
        "init_strength": list(spec.init_strength),
        "adjust_at": adjust_at,
        "window": proto.window,
        "exponent": proto.exponent,
    }
    if method == "mlp":
        return PlainMLP(width=proto.mlp_width, **reps), []
    if method == "mlp_sample":
        return PlainMLP(width=proto.mlp_width, **reps), [
            MixedSymmetryRegularizer(form="sample", **mixed)
        ]
    emlp = {"hidden": proto.hidden, **reps}
    if method == "emlp_full":
        return EquivariantMLP(mode="equivariant", group=spec.full_group, **emlp), []
    if method == "emlp_sub":
        return EquivariantMLP(mode="equivariant", group=spec.true_group, **emlp), []
    if method == "rpp":
        return EquivariantMLP(mode="rpp", group=spec.full_group, **emlp), [ResidualPathwayPrior()]
    if method == "per":
        return EquivariantMLP(mode="free", **emlp), [MixedSymmetryRegularizer(**mixed)]
    if method == "per_cont":
        return EquivariantMLP(mode="free", **emlp), [
            MixedSymmetryRegularizer(schedule="continuous", rate=0.3, **mixed)
        ]
    raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")


class BestValidation(L.Callback):
    """Keep the network weights with the lowest validation metric (in memory)."""

    def __init__(self, metric: str) -> None:
        self.metric, self.best, self.state = metric, math.inf, None

    def on_validation_epoch_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(f"val/{self.metric}")
        if trainer.sanity_checking or value is None:
            return
        if float(value) < self.best:
            self.best = float(value)
            self.state = copy.deepcopy(task.network.state_dict())


def run_one(method: str, spec: TaskSpec, seed: int, proto: Protocol) -> dict:
    L.seed_everything(seed, verbose=False)
    data = spec.make_data(seed)
    data.batch_size = proto.batch_size
    network, objectives = build(method, spec, data, proto)
    task = RegressionTask(
        network,
        [MeanSquaredError(), *objectives],
        optimizer=functools.partial(torch.optim.Adam, lr=proto.lr, weight_decay=proto.weight_decay),
        lr_scheduler=functools.partial(
            torch.optim.lr_scheduler.CosineAnnealingLR, T_max=max(proto.epochs, 1)
        ),
        ade_dims=data.ade_dims,
    )
    best = BestValidation(spec.metric)
    trainer = L.Trainer(
        max_epochs=proto.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[best],
        check_val_every_n_epoch=proto.val_every,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    start = time.time()
    trainer.fit(task, data)
    if best.state is not None:
        task.network.load_state_dict(best.state)
    data.setup()
    x, y = data.splits["test"].tensors
    with torch.no_grad():
        out = task.network(x)
    if spec.metric == "ade":
        test = float(average_displacement_error(out, y, data.ade_dims))
    else:
        test = float(torch.nn.functional.mse_loss(out, y))
    strengths = {}
    for objective in objectives:
        if isinstance(objective, MixedSymmetryRegularizer):
            strengths = objective.strength_dict()
    return {
        "task": spec.name,
        "method": method,
        "seed": seed,
        "test": test,
        "params": sum(p.numel() for p in network.parameters()),
        "strengths": strengths,
        "seconds": time.time() - start,
    }


def summarize(results: list[dict], tasks: list[str], methods: list[str]) -> str:
    lines = ["| method | " + " | ".join(f"{t} ({TASKS[t].metric.upper()})" for t in tasks) + " |"]
    lines.append("|---" * (len(tasks) + 1) + "|")
    for m in methods:
        cells = []
        for t in tasks:
            vals = torch.tensor([r["test"] for r in results if r["task"] == t and r["method"] == m])
            if not len(vals):
                cells.append("-")
                continue
            std = float(vals.std()) if len(vals) > 1 else 0.0
            cells.append(f"{float(vals.mean()):.4f} ± {std:.4f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Discovered strengths (mean over seeds):")
    lines.append("")
    for t in tasks:
        for m in methods:
            rs = [r for r in results if r["task"] == t and r["method"] == m and r["strengths"]]
            if not rs:
                continue
            names = list(rs[0]["strengths"])
            mean = {n: sum(r["strengths"][n] for r in rs) / len(rs) for n in names}
            text = ", ".join(f"{n}={v:.3g}" for n, v in mean.items())
            true = TASKS[t].true_group
            first = sum(max(r["strengths"], key=r["strengths"].get) == true for r in rs)
            lines.append(f"- {t} / {m}: {text} (true {true} strongest in {first}/{len(rs)} seeds)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed and short training")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    parser.add_argument("--epochs", type=int, default=None, help="override the epoch count")
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="*", default=None, choices=list(METHODS))
    parser.add_argument("--json", default=None, help="also write every run to this JSON file")
    parser.add_argument(
        "--summarize", default=None, help="only print the tables of a JSON file written by --json"
    )
    args = parser.parse_args(argv)
    if args.summarize:
        with open(args.summarize) as f:
            results = json.load(f)
        tasks = [t for t in TASKS if any(r["task"] == t for r in results)]
        methods = [m for m in METHODS if any(r["method"] == m for r in results)]
        print(summarize(results, tasks, methods))
        return
    proto = copy.copy(QUICK if args.quick else FULL)
    if args.epochs is not None:
        proto.epochs = args.epochs
    seeds = args.seeds or (1 if args.quick else 3)
    if args.methods is None:
        args.methods = list(METHODS if args.quick else FULL_METHODS)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    print(f"protocol: {proto}, seeds: {seeds}", flush=True)
    results = []
    for task_name in args.tasks:
        for method in args.methods:
            for seed in range(seeds):
                r = run_one(method, TASKS[task_name], seed, proto)
                results.append(r)
                print(json.dumps(r), flush=True)
                if args.json:
                    with open(args.json, "w") as f:
                        json.dump(results, f, indent=1)
    print()
    print(summarize(results, args.tasks, args.methods))


if __name__ == "__main__":
    main()
