"""APO (DADS + STCR) on hand-made groups: long wrong answers and easy prompts as the paper says."""

from __future__ import annotations

import math

import pytest
import torch

from geozoo.objectives import GRPO, StepContext
from geozoo.objectives.apo import APO, dads_weights, stcr_weights
from geozoo.objectives.divergences import kl_estimate
from geozoo.rl import Rollouts, group_ids, masked_mean


def _rollouts(rewards, lengths, t=6, logp_value=-1.0, dtype=torch.float32, g=4) -> Rollouts:
    rewards = torch.tensor(rewards, dtype=torch.float32)
    lengths = torch.tensor(lengths)
    n = len(rewards)
    gen = torch.Generator().manual_seed(0)
    base = logp_value + 0.1 * torch.randn(n, t, generator=gen)
    return Rollouts(
        prompts=torch.zeros(n // g, 2),
        group=group_ids(n // g, g),
        responses=torch.zeros(n, t, dtype=torch.long),
        mask=torch.arange(t)[None, :] < lengths[:, None],
        rewards=rewards,
        logp=base.to(dtype).clone().requires_grad_(),
        old_logp=base.to(dtype),
        ref_logp=(base + 0.5 * torch.randn(n, t, generator=gen)).to(dtype),
    )


def _ctx(rollouts: Rollouts) -> StepContext:
    return StepContext(
        rollouts.prompts, None, rollouts.logp, torch.nn.Identity(), extras={"rollouts": rollouts}
    )


def test_long_wrong_answers_are_penalised_more_than_short_ones():
    # one group: two correct answers of length 2, wrong answers of lengths 1, 2, 5 and 6
    r = _rollouts([1, 1, 0, 0, 0, 0, 0, 0], [2, 2, 1, 2, 5, 6, 6, 6], g=8)
    apo = APO(stcr_base=1.5)
    plain = GRPO(divergence="reverse_kl", beta=1e-3).advantages(r)
    adv = apo.advantages(r)
    assert torch.equal(adv[:4], plain[:4])  # correct answers and short wrong ones unchanged
    scale = adv / plain
    assert scale[4] == pytest.approx(1 + (1 - 1.5**-3))
    assert scale[5] == pytest.approx(1 + (1 - 1.5**-4))
    assert adv[5] < adv[4] < adv[3] < 0  # the longer the wrong answer, the stronger the push
    # the paper's base: 10^4 excess tokens give 1.095
    huge = stcr_weights(
        torch.tensor([-1.0]), torch.tensor([10_002]), torch.tensor([False]), torch.tensor([0]), 1
    )
    assert huge.item() == 1.0  # no correct answer in the group: no reference length
    w = stcr_weights(
        torch.tensor([-1.0, 1.0]),
        torch.tensor([10_002, 2]),
        torch.tensor([False, True]),
        torch.tensor([0, 0]),
        1,
    )
    assert w[0].item() == pytest.approx(2 - 1.00001**-10_000, rel=1e-6)
    assert w[0].item() == pytest.approx(1.095, abs=1e-3)
    assert w[1].item() == 1.0


def test_easy_prompts_get_more_kl_weight_than_hard_ones():
    # group 0 easy (3 of 4 correct), group 1 hard (1 of 4), group 2 all wrong
    r = _rollouts([1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0], [3] * 12)
    apo = APO(stcr=False)
    w = apo.kl_weights(r)
    easy, hard = w[0].item(), w[4].item()
    assert easy == pytest.approx(1 - math.exp(-math.e * 0.75))
    assert hard == pytest.approx(1 - math.exp(-math.e * 0.25))
    assert easy > hard
    assert torch.equal(w[[3, 5, 6, 7, 8, 9, 10, 11]], torch.ones(8))  # negatives, d = 1: 1
    # the divergence term is the DADS-weighted token mean of k3
    kl = kl_estimate(r.logp, r.ref_logp, "k3", 20.0)
    expected = masked_mean(kl * w[:, None], r.mask, "token")
    assert torch.allclose(apo.divergence_loss(_ctx(r), r), expected)
    alt = dads_weights(torch.ones(2), torch.tensor([0.25, 0.75]), form="exponential")
    assert torch.allclose(alt, torch.exp(-math.e * torch.tensor([0.25, 0.75])))


def test_without_dads_and_stcr_it_is_grpo():
    r = _rollouts([1, 1, 1, 0, 1, 0, 0, 0], [3, 1, 4, 6, 2, 5, 6, 1])
    apo = APO(dads=False, stcr=False, beta=0.04)
    grpo = GRPO(divergence="reverse_kl", beta=0.04)
    assert torch.allclose(apo(_ctx(r)).loss, grpo(_ctx(r)).loss)
    out = APO()(_ctx(r))
    assert {"dads_weight", "stcr_scale", "difficulty"} <= set(out.logs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_log_probs(dtype):
    r = _rollouts([1, 0, 0, 1, 1, 0, 0, 0], [3, 6, 2, 1, 2, 6, 6, 1], logp_value=-1e4, dtype=dtype)
    r.ref_logp = torch.zeros_like(r.ref_logp)  # ref log-ratio of -1e4
    out = APO(stcr_base=1e4)(_ctx(r))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(r.logp.grad).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="DADS weights the reverse-KL"):
        APO(divergence="js")
    with pytest.raises(ValueError, match="DADS weights the reverse-KL"):
        APO(estimator="k1")
    APO(dads=False, divergence="js")  # fine without DADS
    with pytest.raises(ValueError, match="stcr_base"):
        APO(stcr_base=1.0)
    with pytest.raises(ValueError, match="dads_form"):
        APO(dads_form="linear")


def test_apo_raises_expected_reward_on_a_toy_bandit(train_bandit):
    """Tabular softmax policy over 4 contexts x 6 actions (action 5 always right), with a
    reverse-KL anchor to the uniform reference weighted by DADS."""
    reward_table = torch.rand(4, 6, generator=torch.Generator().manual_seed(0)).round()
    reward_table[:, 5] = 1.0
    start, end = train_bandit(APO(beta=0.01, stcr_base=2.0), reward_table, steps=60)
    assert start < 0.75
    assert end > 0.95
