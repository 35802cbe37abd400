"""pass@k evaluation of policies and the zoo metrics of the digit-sum entry."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from geozoo.metrics import pass_at_k
from geozoo.rl import (
    ClassificationBandit,
    ClassifierPolicy,
    DigitSumPolicy,
    correct_matrix,
    digit_sum_metrics,
    evaluate_pass_at_k,
)


def test_pass_at_k_of_a_policy_matches_its_correct_matrix():
    torch.manual_seed(0)
    policy = ClassifierPolicy(torch.nn.Linear(3, 4))
    x, y = torch.randn(10, 3), torch.randint(0, 4, (10,))
    results = evaluate_pass_at_k(policy, ClassificationBandit(), [(x, y)], 8, (1, 4), seed=3)
    correct, _ = correct_matrix(
        policy, ClassificationBandit(), x, y, 8, generator=torch.Generator().manual_seed(3)
    )
    c = correct.sum(-1)
    for k in (1, 4):
        assert results[f"pass@{k}"] == pytest.approx(
            round(100 * float(pass_at_k(torch.full_like(c, 8), c, k).mean()), 2)
        )
    assert results["reward"] == pytest.approx(float(correct.float().mean()), abs=1e-4)


def test_digit_sum_metrics_keys_and_ranges():
    torch.manual_seed(0)
    policy = DigitSumPolicy(dim=16, heads=2, layers=1, encoder_widths=(4, 8), encoder=None)
    images = torch.rand(6, 1, 28, 56)
    loader = DataLoader(TensorDataset(images, torch.randint(0, 19, (6,))), batch_size=3)
    metrics = digit_sum_metrics(policy, {"clean": loader})
    assert set(metrics) == {"clean/pass@1", "clean/pass@8", "clean/acc"}
    assert 0 <= metrics["clean/pass@1"] <= metrics["clean/pass@8"] <= 100
