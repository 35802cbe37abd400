"""pass@k of a policy on held-out prompts: the numbers the RL task logs, the reproduction
prints and the zoo card of a reasoning policy reports."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from geozoo.metrics.pass_at_k import PassAtK
from geozoo.rl.environments import DigitSumEnvironment, Environment

__all__ = ["correct_matrix", "digit_sum_metrics", "evaluate_pass_at_k"]


@torch.no_grad()
def correct_matrix(
    policy: nn.Module,
    environment: Environment,
    prompts: Tensor,
    targets: Tensor,
    num_samples: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """``(B, num_samples)`` bool success of samples of ``policy`` and their ``(B, n)``
    rewards."""
    sample = policy.sample(prompts, num_samples, temperature, top_k, generator)
    answers = targets[sample.group]
    correct = environment.correct(answers, sample.responses).reshape(len(prompts), num_samples)
    rewards = environment.reward(answers, sample.responses).float()
    return correct, rewards.reshape(len(prompts), num_samples)


def evaluate_pass_at_k(
    policy: nn.Module,
    environment: Environment,
    batches: Iterable,
    num_samples: int = 8,
    ks: Sequence[int] = (1, 8),
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Unbiased pass@k (in percent, rounded to 0.01) over ``(prompts, targets, ...)`` batches,
    from ``num_samples`` seeded samples per prompt, and the mean reward."""
    was_training = policy.training
    policy.eval()
    generator = torch.Generator().manual_seed(seed)
    metrics = {k: PassAtK(k) for k in ks}
    total, count = 0.0, 0
    for batch in batches:
        prompts, targets = batch[0], batch[1]
        correct, rewards = correct_matrix(
            policy, environment, prompts, targets, num_samples, temperature, top_k, generator
        )
        for metric in metrics.values():
            metric.update(correct)
        total += float(rewards.sum())
        count += rewards.numel()
    policy.train(was_training)
    results = {f"pass@{k}": round(100.0 * float(m.compute()), 2) for k, m in metrics.items()}
    results["reward"] = round(total / max(count, 1), 4)
    return results


def digit_sum_metrics(
    model: nn.Module, loaders: Mapping[str, DataLoader], num_classes: int = 0
) -> dict[str, float]:
    """The zoo metrics of a digit-sum policy: pass@1 and pass@8 (percent) from 8 samples per
    held-out prompt at temperature 1 (seed 0), and ``acc``, the greedy decode's exact-answer
    accuracy (percent); ``num_classes`` is ignored."""
    environment = DigitSumEnvironment()
    results: dict[str, float] = {}
    for name, loader in loaders.items():
        for key, value in evaluate_pass_at_k(model, environment, loader).items():
            if key != "reward":
                results[f"{name}/{key}"] = value
        hits, count = 0, 0
        model.eval()
        with torch.no_grad():
            for prompts, targets in loader:
                greedy = model(prompts).argmax(-1)
                hits += int(environment.correct(targets, greedy).sum())
                count += len(targets)
        results[f"{name}/acc"] = round(100.0 * hits / max(count, 1), 2)
    return results
