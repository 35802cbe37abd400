"""Cost of a GRPO step against a supervised step of the same policy on the same tokens.

Prints, in one run (so machine load cancels in the ratios), for the digit-sum policy
(:class:`geozoo.rl.DigitSumPolicy`, frozen zoo encoder, decoder 2 x 64) on ``B`` prompts with
``G`` responses each:

* supervised: teacher-forced negative log-likelihood of the ``B * G`` responses (one forward,
  one backward, one optimizer step);
* GRPO steps as :class:`geozoo.tasks.RLTask` runs them (sampling ``G`` responses per prompt
  with the key/value cache and the gradient on, verifier, log-probs of the frozen reference
  copy where needed, loss, backward, optimizer step), for the divergence choices none, reverse
  KL (k3) and JS (DPH-RL, which also samples the reference and scores its samples);

each as the median of ``--repeats`` timed steps after warm-up steps, and the ratio to the
supervised step (the issue's budget: GRPO <= 1.5x).  Then the sampler's cost per token for
responses of growing length (end-of-sequence disabled), which stays flat when keys and values
are cached (a sampler that re-ran the prefix would grow linearly per token).

Single-threaded.  Usage: ``/work/bin/bench python scripts/bench_rl.py [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from geozoo.objectives import GRPO, StepContext
from geozoo.rl import DigitSumDataModule, DigitSumEnvironment, DigitSumPolicy, masked_mean
from geozoo.tasks import RLTask


def _median_time(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _policy(**kwargs) -> DigitSumPolicy:
    torch.manual_seed(0)
    return DigitSumPolicy(pretrained_encoder=False, **kwargs)


def bench_steps(prompts: int, group: int, repeats: int) -> None:
    data = DigitSumDataModule(train_prompts=prompts, val_prompts=8, test_prompts=8)
    data.setup()
    images, sums, _ = data.datasets["train"][:]
    env = DigitSumEnvironment()
    policy = _policy()
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-4)
    with torch.no_grad():
        fixed = policy.sample(images, group)  # the tokens both kinds of step train on

    # every step gets a fresh prompts tensor, as in training: a frozen encoder reuses its
    # features only within a step, never across steps
    def supervised() -> None:
        logp = policy.log_probs(images.clone(), fixed.responses, fixed.group)
        loss = -masked_mean(logp, fixed.mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    t_sup = _median_time(supervised, repeats)
    tokens = int(fixed.mask.sum())
    print(
        f"digit-sum policy, {prompts} prompts x G={group} = {prompts * group} responses "
        f"({tokens} tokens), 1 thread"
    )
    print(f"{'step':<34} {'ms':>8} {'x supervised':>13}")
    print(f"{'supervised (teacher forced)':<34} {1000 * t_sup:8.1f} {1.0:13.2f}")
    for label, objective in (
        ("GRPO, no divergence", GRPO(divergence="none")),
        ("GRPO + reverse KL (k3)", GRPO(divergence="reverse_kl", estimator="k3", beta=0.1)),
        ("GRPO + JS (DPH-RL, reference samples)", GRPO(divergence="js", beta=0.1)),
    ):
        task = RLTask(policy, env, [objective], num_samples=group, reference="copy")

        def grpo_step(task=task, objective=objective) -> None:
            prompts = images.clone()
            rollouts, rehearsal = task.rollout(prompts, sums)
            extras = {"rollouts": rollouts}
            if rehearsal is not None:
                extras["rehearsal"] = rehearsal
            ctx = StepContext(prompts, sums, rollouts.logp, policy, extras=extras)
            loss = objective(ctx).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        t = _median_time(grpo_step, repeats)
        print(f"{label:<34} {1000 * t:8.1f} {t / t_sup:13.2f}")


def bench_sampling(lengths: list[int], repeats: int) -> None:
    images = torch.rand(32, 1, 28, 56, generator=torch.Generator().manual_seed(0))
    print("\nsampling 32 x 8 responses with end-of-sequence disabled (key/value cache)")
    print(f"{'length':>7} {'ms':>9} {'ms / token':>11}")
    for length in lengths:
        policy = _policy(max_length=length)
        with torch.no_grad():
            policy.head.bias[policy.EOS] = -1e4
            t = _median_time(lambda p=policy: p.sample(images, 8), repeats, warmup=1)
        print(f"{length:7d} {1000 * t:9.1f} {1000 * t / length:11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats = 5 if args.quick else 15
    bench_steps(prompts=48, group=8, repeats=repeats)
    bench_sampling([4, 16, 64], repeats=3 if args.quick else 5)


if __name__ == "__main__":
    main()
