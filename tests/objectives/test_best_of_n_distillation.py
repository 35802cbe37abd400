"""Best-of-N distillation: the chosen responses, their law (the exact best-of-N distribution),
the loss, and learning on a toy bandit."""

from __future__ import annotations

import math

import pytest
import torch

from geozoo.objectives import BestOfNDistillation, StepContext
from geozoo.objectives.best_of_n import best_of_n_kl_bound, best_of_n_probs
from geozoo.objectives.best_of_n_distillation import best_in_groups
from geozoo.rl import group_ids


def _ctx(rollouts) -> StepContext:
    return StepContext(None, None, rollouts.logp, None, extras={"rollouts": rollouts})


def test_best_in_groups_picks_the_highest_reward_in_any_order(bandit_rollouts):
    reward_table = torch.tensor([[0.0, 0.3, 1.0], [0.5, 0.0, 0.2]])
    group = torch.tensor([1, 0, 0, 1, 1, 0])  # not group-major
    actions = torch.tensor([2, 0, 2, 0, 1, 1])[:, None]
    r = bandit_rollouts(torch.arange(2), group, actions, reward_table, torch.zeros(6, 1))
    # prompt 0 holds responses 1, 2, 5 (actions 0, 2, 1): the best is response 2;
    # prompt 1 holds 0, 3, 4 (actions 2, 0, 1): rewards 0.2, 0.5, 0.0, the best is response 3
    assert best_in_groups(r).tolist() == [2, 3]
    uneven = bandit_rollouts(
        torch.arange(2), torch.tensor([0, 0, 1]), actions[:3], reward_table, torch.zeros(3, 1)
    )
    with pytest.raises(ValueError, match="same number N >= 1"):
        best_in_groups(uneven)


def test_the_chosen_responses_follow_the_exact_best_of_n_law(bandit_rollouts):
    """Many prompts with one base policy: the histogram of the chosen labels is pi_BoN, ties
    (two labels share reward 1) split uniformly."""
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.5])
    n, prompts = 4, 20000
    gen = torch.Generator().manual_seed(0)
    actions = torch.multinomial(probs, prompts * n, replacement=True, generator=gen)[:, None]
    table = rewards.expand(prompts, 4)
    group = group_ids(prompts, n)
    r = bandit_rollouts(torch.arange(prompts), group, actions, table, torch.zeros(prompts * n, 1))
    chosen = actions[best_in_groups(r, torch.Generator().manual_seed(1)), 0]
    frequencies = torch.bincount(chosen, minlength=4).float() / prompts
    torch.testing.assert_close(frequencies, best_of_n_probs(probs, rewards, n), atol=0.01, rtol=0)


def test_loss_is_the_nll_of_the_best_and_min_reward_drops_prompts(bandit_rollouts):
    reward_table = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    logp = torch.log(torch.tensor([0.6, 0.4, 0.3, 0.7]))[:, None].requires_grad_()
    actions = torch.tensor([0, 1, 0, 1])[:, None]
    r = bandit_rollouts(torch.arange(2), group_ids(2, 2), actions, reward_table, logp)
    out = BestOfNDistillation(min_reward=1.0)(_ctx(r))
    torch.testing.assert_close(out.loss, -torch.log(torch.tensor(0.4)))  # prompt 1 dropped
    assert out.logs["kept"].item() == 0.5 and out.logs["best_reward"].item() == 0.5
    assert out.logs["kl_bound"].item() == pytest.approx(best_of_n_kl_bound(2))
    every = BestOfNDistillation()(_ctx(r)).loss  # prompt 1's best is a tie, chosen at random
    options = [-(math.log(0.4) + math.log(p)) / 2 for p in (0.3, 0.7)]
    assert any(every.item() == pytest.approx(v) for v in options)
    none_kept = BestOfNDistillation(min_reward=2.0)(_ctx(r)).loss
    none_kept.backward()
    assert none_kept.item() == 0.0 and torch.equal(logp.grad, torch.zeros_like(logp))
    with pytest.raises(ValueError, match="aggregation"):
        BestOfNDistillation(aggregation="batch")
    with pytest.raises(ValueError, match="min_reward"):
        BestOfNDistillation(min_reward=float("nan"))


def test_distillation_raises_expected_reward_on_a_toy_bandit(train_bandit):
    reward_table = torch.zeros(4, 6)
    reward_table[torch.arange(4), torch.tensor([1, 3, 5, 0])] = 1.0
    torch.manual_seed(0)  # the tie-breaking
    start, end = train_bandit(BestOfNDistillation(), reward_table, steps=40)
    assert start == pytest.approx(1 / 6)
    assert end > 0.9
