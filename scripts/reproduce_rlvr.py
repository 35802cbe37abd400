"""Does the divergence to the reference decide whether RL keeps the policy's diversity?

DPH-RL (Li et al. 2025) reports that RL with verifiable rewards under a reverse-KL penalty
narrows the policy (pass@1 up, pass@k down), while mass-covering divergences to the initial
policy (forward KL, JS) keep pass@k.  This script checks that claim on the digit-sum task
(:class:`geozoo.rl.DigitSumDataModule`: two MNIST digits side by side, answer their sum as
digit tokens then end-of-sequence) with :class:`geozoo.rl.DigitSumPolicy` (the zoo's
``cnn_mnist`` features, frozen, and a 2-block, 64-wide causal decoder):

1. supervised warm-up on the labelled quarter of the training prompts (teacher-forced NLL of
   the answers, :meth:`geozoo.tasks.RLTask.warmup_loss`);
2. from that same warm-up, GRPO on the other three quarters (reward 1 for an exact answer,
   G = 8 samples per prompt, one update per batch) with each divergence choice: none, reverse
   KL (k3, DeepSeekMath's), forward KL, JS and alpha = 0.5 (DPH-RL's generators on samples of
   the frozen warm-up policy), all at the same strength ``beta``;
3. pass@1 and pass@8 (unbiased, from 16 samples per prompt at temperature 1) on the held-out
   prompts, made of the 1,000 held-out digits, before and after RL.

Steps run through the objective protocol in a plain loop (the task's own ``rollout`` and
``warmup_loss``, so the ``StepContext`` is the one :class:`geozoo.tasks.RLTask` builds), to
spare Lightning's per-run start-up.  Everything is seeded; results are written as JSON.

Usage::

    python scripts/reproduce_rlvr.py                     # 3 seeds (about 20 min on 1 CPU)
    python scripts/reproduce_rlvr.py --quick             # 1 seed, short runs
    python scripts/reproduce_rlvr.py --table results.json   # print the table of a finished run
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from geozoo.objectives import GRPO, StepContext
from geozoo.rl import DigitSumDataModule, DigitSumEnvironment, DigitSumPolicy, evaluate_pass_at_k
from geozoo.tasks import RLTask

DATA = {
    "num_digits": 2,
    "train_prompts": 4000,
    "val_prompts": 128,
    "test_prompts": 256,
    "labelled_fraction": 0.25,
}
POLICY = {"num_digits": 2, "dim": 64, "heads": 4, "layers": 2, "max_length": 3}
CHOICES: list[tuple[str, dict]] = [
    ("none", {}),
    ("reverse_kl", {"estimator": "k3"}),
    ("forward_kl", {}),
    ("js", {}),
    ("alpha", {"alpha": 0.5}),
]
EVAL = {"num_samples": 16, "ks": (1, 8), "temperature": 1.0}


def _batches(count: int, size: int, steps: int, generator: torch.Generator):
    """``steps`` index batches of ``size``, epoch after epoch of seeded permutations."""
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < size:
            order = torch.cat([order, torch.randperm(count, generator=generator)])
        yield order[:size]
        order = order[size:]


def _evaluate(policy, env, images, sums, seed: int) -> dict[str, float]:
    batches = [(images[i : i + 128], sums[i : i + 128]) for i in range(0, len(sums), 128)]
    return evaluate_pass_at_k(policy, env, batches, seed=seed, **EVAL)


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(seed)
    data = DigitSumDataModule(**DATA, seed=seed)
    data.setup()
    images, sums, labelled = data.datasets["train"][:]
    test_images, test_sums = data.datasets["test_clean"][:]
    val_images, val_sums = data.datasets["val"][:]
    env = DigitSumEnvironment()
    policy = DigitSumPolicy(**POLICY)
    params = [p for p in policy.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)

    start = time.perf_counter()
    warm = RLTask(policy, env, [GRPO()], reference=None)
    optimizer = torch.optim.Adam(params, lr=args.warmup_lr)
    x_l, y_l = images[labelled], sums[labelled]
    for index in _batches(len(y_l), args.batch_size, args.warmup_steps, generator):
        loss = warm.warmup_loss(x_l[index], y_l[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result = {
        "seed": seed,
        "warmup": {
            "test": _evaluate(policy, env, test_images, test_sums, seed),
            "val": _evaluate(policy, env, val_images, val_sums, seed),
            "seconds": round(time.perf_counter() - start, 1),
        },
        "rl": {},
    }
    print(f"seed {seed} warm-up: {result['warmup']}", flush=True)
    state = copy.deepcopy(policy.state_dict())
    x_u, y_u = images[~labelled], sums[~labelled]
    for name, kwargs in CHOICES:
        if args.divergences and name not in args.divergences:
            continue
        start = time.perf_counter()
        policy.load_state_dict(state)
        torch.manual_seed(seed)
        objective = GRPO(divergence=name, beta=args.beta, **kwargs)
        task = RLTask(policy, env, [objective], num_samples=args.group, reference="copy")
        optimizer = torch.optim.Adam(params, lr=args.rl_lr)
        rewards = []
        rl_generator = torch.Generator().manual_seed(seed + 1)
        for index in _batches(len(y_u), args.batch_size, args.rl_steps, rl_generator):
            rollouts, rehearsal = task.rollout(x_u[index], y_u[index])
            extras = {"rollouts": rollouts}
            if rehearsal is not None:
                extras["rehearsal"] = rehearsal
            ctx = StepContext(x_u[index], y_u[index], rollouts.logp, policy, extras=extras)
            loss = objective(ctx).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            rewards.append(float(rollouts.rewards.mean()))
        tail = rewards[-max(1, len(rewards) // 10) :]
        result["rl"][name] = {
            "test": _evaluate(policy, env, test_images, test_sums, seed),
            "val": _evaluate(policy, env, val_images, val_sums, seed),
            "train_reward_first": round(statistics.fmean(rewards[: len(tail)]), 4),
            "train_reward_last": round(statistics.fmean(tail), 4),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(f"seed {seed} {name}: {result['rl'][name]}", flush=True)
    return result


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(results: list[dict]) -> str:
    """Markdown table of held-out pass@1 / pass@8 (mean ± std over seeds)."""
    lines = [
        "| policy | pass@1 (%) | pass@8 (%) | Δ pass@1 | Δ pass@8 | seeds |",
        "|---|---|---|---|---|---|",
    ]

    def row(label: str, pick) -> str:
        p1 = [pick(r)["test"]["pass@1"] for r in results]
        p8 = [pick(r)["test"]["pass@8"] for r in results]
        d1 = [a - r["warmup"]["test"]["pass@1"] for a, r in zip(p1, results)]
        d8 = [a - r["warmup"]["test"]["pass@8"] for a, r in zip(p8, results)]
        delta = label != "warm-up (before RL)"
        return (
            f"| {label} | {_cell(p1)} | {_cell(p8)} | {_cell(d1) if delta else ''} | "
            f"{_cell(d8) if delta else ''} | {len(results)} |"
        )

    lines.append(row("warm-up (before RL)", lambda r: r["warmup"]))
    for name in results[0]["rl"]:
        lines.append(row(f"GRPO + {name}", lambda r, n=name: r["rl"][n]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--divergences", nargs="+", default=None)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--rl-steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--warmup-lr", type=float, default=3e-3)
    parser.add_argument("--rl-lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path("rlvr_results.json"))
    parser.add_argument("--quick", action="store_true", help="1 seed, 40 + 20 steps")
    parser.add_argument("--table", type=Path, default=None, help="print the table of a JSON")
    args = parser.parse_args()
    if args.table is not None:
        print(table(json.loads(args.table.read_text())["results"]))
        return
    torch.set_num_threads(1)
    if args.quick:
        args.seeds, args.warmup_steps, args.rl_steps = args.seeds[:1], 40, 20
    results = []
    for seed in args.seeds:
        results.append(run_seed(seed, args))
        args.out.write_text(
            json.dumps(
                {"args": vars(args) | {"out": str(args.out), "table": None}, "results": results},
                indent=1,
            )
        )
    print(table(results))


if __name__ == "__main__":
    main()
