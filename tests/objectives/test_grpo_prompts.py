"""GRPO split per prompt, and KL-DRO over prompts around it."""

from __future__ import annotations

import math

import pytest
import torch

from geozoo.objectives import GRPO, KLDRO, PerPromptGRPO, StepContext
from geozoo.objectives.divergences import kl_estimate
from geozoo.objectives.grpo_prompts import group_mean
from geozoo.rl import group_ids


def _rollouts(bandit_rollouts, seed: int = 0, reference: bool = True):
    """3 prompts x 4 one-token responses of a tabular policy; prompt 2 is never solved."""
    gen = torch.Generator().manual_seed(seed)
    reward_table = torch.tensor(
        [[1.0, 0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
    )
    logits = torch.nn.Parameter(torch.randn(3, 5, generator=gen))
    actions = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])[:, None]
    group = group_ids(3, 4)
    logp = logits.log_softmax(-1)[group, actions[:, 0]][:, None]
    ref = torch.full_like(logp, -math.log(5)).detach() if reference else None
    r = bandit_rollouts(torch.arange(3), group, actions, reward_table, logp, ref_logp=ref)
    return r, logits


def _ctx(rollouts) -> StepContext:
    return StepContext(None, None, rollouts.logp, None, extras={"rollouts": rollouts})


def test_group_mean_by_hand():
    values = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0], [5.0, 7.0, 9.0]])
    mask = torch.tensor([[True, True, False], [True, False, False], [True, True, True]])
    group = torch.tensor([0, 0, 1])
    torch.testing.assert_close(group_mean(values, mask, group, 3), torch.tensor([2.0, 7.0, 0.0]))
    per_sequence = group_mean(values, mask, group, 2, per="sequence")
    torch.testing.assert_close(per_sequence, torch.tensor([(1.5 + 3.0) / 2, 7.0]))
    with pytest.raises(ValueError, match="per must be"):
        group_mean(values, mask, group, 2, per="batch")


def test_surrogate_split_averages_to_grpo(bandit_rollouts):
    kwargs = {"divergence": "reverse_kl", "estimator": "k3", "beta": 0.3}
    r, logits = _rollouts(bandit_rollouts)
    per_prompt = PerPromptGRPO(value="surrogate", **kwargs)(_ctx(r)).loss
    assert per_prompt.shape == (3,)
    per_prompt.mean().backward()
    grad = logits.grad.clone()
    r, logits = _rollouts(bandit_rollouts)
    whole = GRPO(**kwargs)(_ctx(r)).loss
    whole.backward()  # equal token counts per prompt: the mean of the split is GRPO's loss
    torch.testing.assert_close(per_prompt.mean(), whole)
    torch.testing.assert_close(grad, logits.grad)


def test_reward_value_keeps_the_surrogate_gradient(bandit_rollouts):
    r, logits = _rollouts(bandit_rollouts)
    loss = PerPromptGRPO(divergence="reverse_kl", beta=0.3)(_ctx(r)).loss
    kl = kl_estimate(r.logp.detach(), r.ref_logp, "k3").view(3, 4).mean(1)
    mean_reward = r.rewards.view(3, 4).mean(1)
    torch.testing.assert_close(loss.detach(), -mean_reward + 0.3 * kl)
    loss.sum().backward()
    grad = logits.grad.clone()
    r, logits = _rollouts(bandit_rollouts)
    PerPromptGRPO(divergence="reverse_kl", beta=0.3, value="surrogate")(
        _ctx(r)
    ).loss.sum().backward()
    torch.testing.assert_close(grad, logits.grad)


def test_kl_dro_over_prompts(bandit_rollouts):
    r, logits = _rollouts(bandit_rollouts)
    dro = KLDRO(PerPromptGRPO(divergence="reverse_kl", beta=0.1), r=0.5)
    assert dro.needs_reference and not dro.needs_rehearsal  # passed through to the task
    out = dro(_ctx(r))
    values = PerPromptGRPO(divergence="reverse_kl", beta=0.1)(_ctx(r)).loss.detach()
    weights = torch.softmax(values / 0.5, 0)
    assert int(weights.argmax()) == 2  # the unsolved prompt weighs most
    torch.testing.assert_close(out.loss, (weights * values).sum())
    # r -> infinity: the plain mean over prompts, whose gradient is GRPO's
    r, logits = _rollouts(bandit_rollouts)
    KLDRO(PerPromptGRPO(divergence="reverse_kl", beta=0.1), r=math.inf)(_ctx(r)).loss.backward()
    grad = logits.grad.clone()
    r, logits = _rollouts(bandit_rollouts)
    GRPO(divergence="reverse_kl", beta=0.1)(_ctx(r)).loss.backward()
    torch.testing.assert_close(grad, logits.grad)


def test_rehearsal_divergence_split_and_bad_value(bandit_rollouts):
    r, _ = _rollouts(bandit_rollouts, reference=False)
    rehearsal, _ = _rollouts(bandit_rollouts, seed=1)
    rehearsal.ref_logp = rehearsal.old_logp
    ctx = _ctx(r)
    ctx.extras["rehearsal"] = rehearsal
    out = PerPromptGRPO(divergence="forward_kl", beta=0.2)(ctx)
    assert out.loss.shape == (3,) and torch.isfinite(out.loss).all()
    assert "divergence" in out.logs
    with pytest.raises(ValueError, match="value must be"):
        PerPromptGRPO(value="advantage")
