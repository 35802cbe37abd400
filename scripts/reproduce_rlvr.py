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
3. pass@1 and pass@8 (unbiased, from 16 samples per prompt at temperature 1) and the mean
   response length (tokens, end-of-sequence included) on the held-out prompts, made of the
   1,000 held-out digits, before and after RL.

``--methods`` adds the objectives of docs/rl_objectives.md, from the same warm-up and at the
same ``beta``: ``apo`` (DADS + STCR, Hong et al. 2025), ``vogue`` (visual-uncertainty and
entropy bonuses with an annealed share of prompts sampled on noisy images, Liu et al. 2025)
and ``salsa`` (GRPO + reverse KL whose reference is the soup of the warm-up and a second
warm-up from the same initial weights on another data order, Chegini et al. 2024); ``dro``
(KL-DRO instance weights ``softmax(loss / r)`` over the prompts, Sow et al. 2024, around
GRPO + reverse KL split per prompt, whose per-prompt value is ``-mean reward + beta KL``);
``recap`` (GRPO + reverse KL and a replay of the warm-up's answer NLL on a batch of labelled
prompts per step, balanced online by RECAP's reweighting, Phan et al. 2025; ``replay`` is its
control, the same two objectives at fixed weights 1:1) and ``bon`` (best-of-N distillation: the
NLL of the best of each prompt's G = 8 samples, no reference).

Steps run through the objective protocol in a plain loop (the task's own ``rollout`` and
``warmup_loss``, so the ``StepContext`` is the one :class:`geozoo.tasks.RLTask` builds), to
spare Lightning's per-run start-up.  Everything is seeded; results are written as JSON.

Usage::

    python scripts/reproduce_rlvr.py                     # 3 seeds (about 7 min on 1 CPU)
    python scripts/reproduce_rlvr.py --quick             # 1 seed, short runs
    python scripts/reproduce_rlvr.py --digits 3 --rl-steps 200   # the harder task
    python scripts/reproduce_rlvr.py --divergences --methods apo vogue salsa   # issue 18's
    python scripts/reproduce_rlvr.py --divergences --methods dro recap bon replay
    python scripts/reproduce_rlvr.py --table results.json   # print the table of a finished run
    python scripts/reproduce_rlvr.py --table a.json b.json  # runs of the same seeds, merged
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from geozoo.objectives import (
    APO,
    GRPO,
    KLDRO,
    VOGUE,
    AnswerReplay,
    BestOfNDistillation,
    DynamicReweighting,
    Objective,
    PerPromptGRPO,
    StepContext,
)
from geozoo.objectives.vogue import GaussianNoise
from geozoo.rl import (
    DigitSumDataModule,
    DigitSumEnvironment,
    DigitSumPolicy,
    evaluate_pass_at_k,
    index_batches,
    supervised_warmup,
)
from geozoo.tasks import RLTask
from geozoo.zoo.soup import ModelSoup

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


METHOD_LABELS = {
    "apo": "APO (DADS + STCR, reverse KL)",
    "vogue": "VOGUE (reverse KL)",
    "salsa": "SALSA (GRPO + reverse KL to a soup)",
    "dro": "KL-DRO over prompts (GRPO + reverse KL)",
    "recap": "RECAP (GRPO + reverse KL, replayed warm-up NLL)",
    "bon": "best-of-8 distillation (no KL)",
    "replay": "GRPO + reverse KL + replayed warm-up NLL, fixed 1:1",
}
#: the methods that replay the labelled prompts' answer NLL during RL
REPLAYING = ("recap", "replay")


def _methods(args: argparse.Namespace) -> dict[str, list[Objective]]:
    """The objectives of ``--methods``, at the divergences' ``beta`` (reverse KL, k3)."""
    kl = {"divergence": "reverse_kl", "estimator": "k3", "beta": args.beta}
    return {
        # answers are at most 3 tokens: the paper's STCR base (tuned to 10^4 tokens) would
        # scale nothing, 1.5 gives 1.33 for one extra token
        "apo": [APO(stcr_base=1.5, **kl)],
        "vogue": [
            VOGUE(
                perturbation=GaussianNoise(0.2),
                share_start=0.5,
                share_end=0.0,
                anneal_steps=args.rl_steps,
                **kl,
            )
        ],
        "salsa": [GRPO(**kl)],
        "dro": [KLDRO(PerPromptGRPO(**kl), r=args.dro_r)],
        "recap": [
            DynamicReweighting(
                [GRPO(name="grpo", **kl), AnswerReplay(name="replay")],
                window=args.recap_window,
                signals={"grpo": "rollouts.rewards"},
                higher_is_better=["grpo"],
            )
        ],
        "bon": [BestOfNDistillation()],
        "replay": [GRPO(**kl), AnswerReplay()],  # RECAP's control: the same two, unweighted
    }


def _evaluate(policy, env, images, sums, seed: int) -> dict[str, float]:
    batches = [(images[i : i + 128], sums[i : i + 128]) for i in range(0, len(sums), 128)]
    results = evaluate_pass_at_k(policy, env, batches, seed=seed, **EVAL)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        lengths = [
            policy.sample(x, 4, EVAL["temperature"], generator=generator).mask.sum(-1).float()
            for x, _ in batches
        ]
    results["length"] = round(float(torch.cat(lengths).mean()), 3)
    return results


def warm_up(policy, env, images, sums, args, generator: torch.Generator) -> None:
    """Supervised warm-up: ``args.warmup_steps`` Adam steps of teacher-forced NLL."""
    supervised_warmup(
        policy, env, images, sums, args.warmup_steps, args.batch_size, args.warmup_lr, generator
    )


def rl_run(policy, env, objectives, reference, data, seed: int, args, replay=None) -> dict:
    """RL from the policy's current weights on the unlabelled prompts; held-out metrics.

    ``replay``: labelled ``(images, sums)``, of which a batch per step is handed to the
    objectives as ``extras["replay"]`` (as :class:`geozoo.tasks.RLTask` does)."""
    (x_u, y_u), (val_images, val_sums), (test_images, test_sums) = data
    start = time.perf_counter()
    torch.manual_seed(seed)
    params = [p for p in policy.parameters() if p.requires_grad]
    task = RLTask(policy, env, objectives, num_samples=args.group, reference=reference)
    optimizer = torch.optim.Adam(params, lr=args.rl_lr)
    rewards = []
    rl_generator = torch.Generator().manual_seed(seed + 1)
    batches = index_batches(len(y_u), args.batch_size, args.rl_steps, rl_generator)
    replays = None
    if replay is not None:
        replay_generator = torch.Generator().manual_seed(seed + 2)
        replays = index_batches(len(replay[1]), args.batch_size, args.rl_steps, replay_generator)
    for step, index in enumerate(batches):
        rollouts, rehearsal = task.rollout(x_u[index], y_u[index], step=step)
        extras = {"rollouts": rollouts}
        if rehearsal is not None:
            extras["rehearsal"] = rehearsal
        if replays is not None:
            chosen = next(replays)
            extras["replay"] = (replay[0][chosen], replay[1][chosen])
        ctx = StepContext(
            x_u[index],
            y_u[index],
            rollouts.logp,
            policy,
            global_step=step,
            task=task,
            extras=extras,
        )
        loss = sum(o.weight * o(ctx).loss for o in objectives)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rewards.append(float(rollouts.rewards.mean()))
    tail = rewards[-max(1, len(rewards) // 10) :]
    return {
        "test": _evaluate(policy, env, test_images, test_sums, seed),
        "val": _evaluate(policy, env, val_images, val_sums, seed),
        "train_reward_first": round(statistics.fmean(rewards[: len(tail)]), 4),
        "train_reward_last": round(statistics.fmean(tail), 4),
        "seconds": round(time.perf_counter() - start, 1),
    }


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(seed)
    data = DigitSumDataModule(**{**DATA, "num_digits": args.digits}, seed=seed)
    data.setup()
    images, sums, labelled = data.datasets["train"][:]
    test_images, test_sums = data.datasets["test_clean"][:]
    val_images, val_sums = data.datasets["val"][:]
    env = DigitSumEnvironment()
    policy = DigitSumPolicy(**{**POLICY, "num_digits": args.digits})
    initial = copy.deepcopy(policy.state_dict())
    generator = torch.Generator().manual_seed(seed)

    start = time.perf_counter()
    x_l, y_l = images[labelled], sums[labelled]
    warm_up(policy, env, x_l, y_l, args, generator)
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
    splits = (
        (images[~labelled], sums[~labelled]),
        (val_images, val_sums),
        (test_images, test_sums),
    )
    runs: list[tuple[str, list[Objective]]] = [
        (name, [GRPO(divergence=name, beta=args.beta, **kwargs)])
        for name, kwargs in CHOICES
        if args.divergences is None or name in args.divergences
    ]
    methods = _methods(args)
    runs += [(name, methods[name]) for name in args.methods]
    for name, objectives in runs:
        reference: str | ModelSoup = "copy"
        if name == "salsa":  # a second warm-up from the same start, another data order
            policy.load_state_dict(initial)
            warm_up(policy, env, x_l, y_l, args, torch.Generator().manual_seed(seed + 1000))
            second = copy.deepcopy(policy)
            policy.load_state_dict(state)
            reference = ModelSoup([copy.deepcopy(policy), second])
        policy.load_state_dict(state)
        replay = (x_l, y_l) if name in REPLAYING else None
        result["rl"][name] = rl_run(policy, env, objectives, reference, splits, seed, args, replay)
        print(f"seed {seed} {name}: {result['rl'][name]}", flush=True)
    return result


def _cell(values: list[float], digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(results: list[dict]) -> str:
    """Markdown table of held-out pass@1 / pass@8 (mean ± std over seeds)."""
    lines = [
        "| policy | pass@1 (%) | pass@8 (%) | Δ pass@1 | Δ pass@8 | length | seeds |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(label: str, pick) -> str:
        p1 = [pick(r)["test"]["pass@1"] for r in results]
        p8 = [pick(r)["test"]["pass@8"] for r in results]
        d1 = [a - r["warmup"]["test"]["pass@1"] for a, r in zip(p1, results)]
        d8 = [a - r["warmup"]["test"]["pass@8"] for a, r in zip(p8, results)]
        length = [pick(r)["test"].get("length") for r in results]  # absent in older runs
        delta = label != "warm-up (before RL)"
        mean_length = _cell(length, 2) if None not in length else "-"
        return (
            f"| {label} | {_cell(p1)} | {_cell(p8)} | {_cell(d1) if delta else ''} | "
            f"{_cell(d8) if delta else ''} | {mean_length} | {len(results)} |"
        )

    lines.append(row("warm-up (before RL)", lambda r: r["warmup"]))
    for name in results[0]["rl"]:
        label = METHOD_LABELS.get(name, f"GRPO + {name}")
        lines.append(row(label, lambda r, n=name: r["rl"][n]))
    return "\n".join(lines)


def _fill(into: dict, other: dict) -> None:
    """Add the entries of ``other`` that ``into`` lacks (e.g. the length, absent in older
    runs), recursively."""
    for key, value in other.items():
        if key not in into:
            into[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(into[key], dict):
            _fill(into[key], value)


def _same(a: dict, b: dict) -> bool:
    return all(a["test"][k] == b["test"][k] for k in ("pass@1", "pass@8"))


def merge(runs: list[list[dict]]) -> list[dict]:
    """Per seed, the rows of several runs with the same settings, in the order given; their
    warm-ups must agree (the warm-up is seeded, so a mismatch means different settings), and
    so must a row that two runs both have (it is seeded too); their entries are combined."""
    merged = {r["seed"]: copy.deepcopy(r) for r in runs[0]}
    for run in runs[1:]:
        for r in run:
            if r["seed"] not in merged:
                raise ValueError(f"seed {r['seed']} is missing from the first run")
            first = merged[r["seed"]]
            if not _same(first["warmup"], r["warmup"]):
                raise ValueError(f"seed {r['seed']}: the runs' warm-ups differ (other settings?)")
            _fill(first["warmup"], r["warmup"])
            for name, row in r["rl"].items():
                if name in first["rl"] and not _same(first["rl"][name], row):
                    raise ValueError(f"seed {r['seed']}: the runs disagree on {name}")
                _fill(first["rl"].setdefault(name, {}), row)
    return [merged[seed] for seed in sorted(merged)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--divergences", nargs="*", default=None, help="default all; none: []")
    parser.add_argument(
        "--methods", nargs="*", default=[], choices=sorted(METHOD_LABELS), help="more objectives"
    )
    parser.add_argument("--digits", type=int, default=2, help="digits per image (2 or 3)")
    parser.add_argument("--warmup-steps", type=int, default=250)
    parser.add_argument("--rl-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--warmup-lr", type=float, default=3e-3)
    parser.add_argument("--rl-lr", type=float, default=1e-3)
    parser.add_argument("--dro-r", type=float, default=0.5, help="KL-DRO temperature r")
    parser.add_argument("--recap-window", type=int, default=20, help="RECAP's window (steps)")
    parser.add_argument("--out", type=Path, default=Path("rlvr_results.json"))
    parser.add_argument("--quick", action="store_true", help="1 seed, 40 + 20 steps")
    parser.add_argument(
        "--table", type=Path, nargs="+", default=None, help="print the table of JSON results"
    )
    args = parser.parse_args()
    if args.table is not None:
        print(table(merge([json.loads(p.read_text())["results"] for p in args.table])))
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
