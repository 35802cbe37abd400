"""Best-of-N: the exact distribution and KL against enumeration of all N-tuples, the sampler."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from geozoo.objectives.best_of_n import (
    best_of_n,
    best_of_n_kl,
    best_of_n_kl_bound,
    best_of_n_probs,
    select_best,
)


def _enumerate(probs: list[float], rewards: list[float], n: int) -> list[float]:
    """P(best-of-n = y) by summing over every n-tuple of labels, ties split uniformly."""
    out = [0.0] * len(probs)
    for labels in itertools.product(range(len(probs)), repeat=n):
        weight = math.prod(probs[y] for y in labels)
        best = max(rewards[y] for y in labels)
        winners = [y for y in labels if rewards[y] == best]
        for y in winners:
            out[y] += weight / len(winners)
    return out


@pytest.mark.parametrize(
    "rewards",
    [[0.1, 0.5, 0.3, 0.9], [1.0, 0.0, 1.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 1.0, 3.0]],
)
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_distribution_and_kl_match_enumeration(rewards, n):
    probs = [0.1, 0.2, 0.3, 0.4]
    expected = _enumerate(probs, rewards, n)
    p = torch.tensor(probs, dtype=torch.float64)
    got = best_of_n_probs(p, torch.tensor(rewards, dtype=torch.float64), n)
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), atol=1e-12)
    kl = sum(e * math.log(e / q) for e, q in zip(expected, probs, strict=True) if e > 0)
    got_kl = best_of_n_kl(p, torch.tensor(rewards, dtype=torch.float64), n)
    assert abs(got_kl.item() - kl) < 1e-12
    assert got_kl.item() <= best_of_n_kl_bound(n) + 1e-12


def test_bound_is_exact_without_ties_for_uniform_base():
    # uniform base over many distinct rewards approximates a continuous reward distribution
    c, n = 2000, 4
    p = torch.full((c,), 1.0 / c, dtype=torch.float64)
    kl = best_of_n_kl(p, torch.arange(c, dtype=torch.float64), n).item()
    assert kl == pytest.approx(best_of_n_kl_bound(n), abs=2e-3)
    assert best_of_n_kl_bound(1) == 0.0
    # ties lower the KL: two reward levels
    tied = best_of_n_kl(p, (torch.arange(c) >= c // 2).double(), n).item()
    assert tied < kl


def test_batched_rows_and_broadcast_rewards():
    p = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    r = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    out = best_of_n_probs(p, r, 3)
    for row in range(2):
        expected = _enumerate(p[row].tolist(), r.tolist(), 3)
        assert torch.allclose(out[row], torch.tensor(expected, dtype=torch.float64))
    assert torch.isfinite(best_of_n_kl(p, r, 3)).all()


def test_sampler_matches_the_exact_distribution():
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])  # ties between labels 0 and 2
    batch = 20000

    def sample() -> torch.Tensor:
        return torch.multinomial(probs, batch, replacement=True, generator=gen)

    best, best_reward = best_of_n(sample, lambda labels: rewards[labels], 3, generator=gen)
    assert best.shape == (batch,) and torch.equal(best_reward, rewards[best])
    freq = torch.bincount(best, minlength=4).double() / batch
    exact = best_of_n_probs(probs.double(), rewards.double(), 3)
    assert torch.allclose(freq, exact, atol=0.015)


def test_select_best_breaks_ties_uniformly():
    gen = torch.Generator().manual_seed(1)
    rewards = torch.tensor([[0.0, 1.0, 1.0, 1.0]]).expand(3000, 4)
    picks = select_best(rewards, gen)
    counts = torch.bincount(picks, minlength=4)
    assert counts[0] == 0 and (counts[1:] - 1000).abs().max() < 100
    assert torch.equal(select_best(torch.tensor([[-1e4, 3.0, float("inf")]])), torch.tensor([2]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="positive integer"):
        best_of_n_kl_bound(0)
    with pytest.raises(ValueError, match="NaN"):
        select_best(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="sum to 1"):
        best_of_n_probs(torch.tensor([0.5, 0.6]), torch.zeros(2), 2)
    with pytest.raises(ValueError, match="one value per batch element"):
        best_of_n(lambda: torch.zeros(3), lambda x: torch.zeros(()), 2)


def test_accurate_for_rare_top_labels_in_float32():
    # the best label has base mass 1e-7: its best-of-4 mass is about 4e-7, which the difference
    # of two powers near 1 would lose in float32
    p = torch.tensor([1.0 - 1e-7, 1e-7])
    got = best_of_n_probs(p, torch.tensor([0.0, 1.0]), 4)
    expected = 1.0 - (1.0 - 1e-7) ** 4
    assert got[1].item() == pytest.approx(expected, rel=1e-4)
    assert torch.isfinite(best_of_n_kl(p, torch.tensor([0.0, 1.0]), 4))


def test_low_precision_inputs():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4]).to(torch.bfloat16)
    rewards = torch.tensor([1.0, -1e4, 1.0, 3.0], dtype=torch.bfloat16)
    kl = best_of_n_kl(p, rewards, 8)
    exact = best_of_n_kl(p.double() / p.double().sum(), rewards.double(), 8)
    assert torch.isfinite(kl) and kl.item() == pytest.approx(exact.item(), rel=1e-3)
