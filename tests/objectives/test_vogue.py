"""VOGUE: zero bonus for identical branches, the symmetric-KL estimator, the annealed share."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from geozoo.objectives import GRPO, StepContext
from geozoo.objectives import divergences as D
from geozoo.objectives.vogue import VOGUE, GaussianNoise, symmetric_kl_estimate
from geozoo.rl import Rollouts, group_ids


class LinearPolicy(nn.Module):
    """Every position's token distribution is softmax(W x) of the prompt x (a toy policy)."""

    def __init__(self, dim: int = 4, vocab: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(dim, vocab)

    def log_probs(self, prompts, responses, group=None, temperature=1.0):
        logits = self.linear(prompts)
        if group is not None:
            logits = logits[group]
        logp = (logits.float() / temperature).log_softmax(-1)
        return (
            logp[:, None, :]
            .expand(-1, responses.shape[1], -1)
            .gather(-1, responses[..., None])[..., 0]
        )


def _rollouts(policy, prompts, extras=None, g=4, t=3, dtype=torch.float32) -> Rollouts:
    gen = torch.Generator().manual_seed(1)
    b = len(prompts)
    n = b * g
    group = group_ids(b, g)
    responses = torch.randint(0, 5, (n, t), generator=gen)
    lengths = torch.randint(1, t + 1, (n,), generator=gen)
    mask = torch.arange(t)[None] < lengths[:, None]
    sampled = extras["vogue_sampled"] if extras and "vogue_sampled" in extras else prompts
    logp = policy.log_probs(sampled, responses, group).masked_fill(~mask, 0.0).to(dtype)
    return Rollouts(
        prompts=sampled,
        group=group,
        responses=responses,
        mask=mask,
        rewards=torch.randint(0, 2, (n,), generator=gen).float(),
        logp=logp.detach().clone().requires_grad_(),
        old_logp=logp.detach(),
        entropy=torch.rand(n, t, generator=gen).masked_fill(~mask, 0.0),
        extras={k: v for k, v in (extras or {}).items() if k != "vogue_sampled"},
    )


def _ctx(policy, rollouts) -> StepContext:
    return StepContext(rollouts.prompts, None, rollouts.logp, policy, extras={"rollouts": rollouts})


def test_identical_branches_give_zero_bonus():
    policy = LinearPolicy()
    prompts = torch.rand(3, 4)
    vogue = VOGUE(perturbation=lambda x: x.clone(), entropy_coef=0.0, share_start=0.5)
    sampled, extras = vogue.sampling_prompts(prompts, step=0)
    r = _rollouts(policy, prompts, {**extras, "vogue_sampled": sampled})
    assert torch.equal(vogue.uncertainty(policy, r), torch.zeros(12))
    out = vogue(_ctx(policy, r))
    assert out.logs["uncertainty"] == 0.0 and out.logs["uncertainty_bonus"] == 0.0
    grpo = GRPO()(_ctx(policy, r))
    assert torch.allclose(out.loss, grpo.loss)


def test_symmetric_kl_estimator_is_unbiased_and_nonnegative():
    p = torch.tensor([1.2, -0.3, 0.4, -1.0], dtype=torch.float64)
    q = torch.tensor([0.2, 0.5, -0.6, 0.3], dtype=torch.float64)
    exact = D.symmetric_kl(p, q).item()
    gen = torch.Generator().manual_seed(0)
    x = torch.multinomial(p.softmax(-1), 200_000, replacement=True, generator=gen)
    values = symmetric_kl_estimate(p.log_softmax(-1)[x], q.log_softmax(-1)[x])
    assert (values >= 0).all()
    assert values.mean().item() == pytest.approx(exact, rel=0.02)


def test_uncertainty_bonus_on_perturbed_rollouts_clipped_by_the_advantage():
    policy = LinearPolicy()
    prompts = torch.rand(4, 4)
    torch.manual_seed(3)
    vogue = VOGUE(
        perturbation=GaussianNoise(0.5),
        uncertainty_coef=100.0,
        entropy_coef=0.0,
        bonus_clip=2.0,
        share_start=0.5,
        anneal_steps=10,
    )
    sampled, extras = vogue.sampling_prompts(prompts, step=0)
    assert int(extras["vogue_perturbed"].sum()) == 2
    r = _rollouts(policy, prompts, {**extras, "vogue_sampled": sampled})
    u = vogue.uncertainty(policy, r)
    assert (u > 0).all()
    r.extras["vogue_uncertainty"] = u
    shaped = vogue.token_advantages(r)
    adv = vogue.advantages(r)
    bonus = (shaped - adv[:, None])[:, 0]
    perturbed = extras["vogue_perturbed"][r.group]
    assert torch.equal(bonus[~perturbed], torch.zeros(int((~perturbed).sum())))
    # the bonus is min(c U, |A| / kappa) on perturbed rollouts; some of them hit the clip
    expected = torch.minimum(100.0 * u, adv.abs() / 2.0)
    assert torch.allclose(bonus[perturbed], expected[perturbed])
    assert (100.0 * u[perturbed] > adv[perturbed].abs() / 2.0).any()
    assert vogue(_ctx(policy, r)).logs["perturbed_share"] == 0.5


def test_entropy_bonus_is_per_token():
    policy = LinearPolicy()
    prompts = torch.rand(2, 4)
    vogue = VOGUE(uncertainty_coef=0.0, entropy_coef=0.01, bonus_clip=None, bonus_on="all")
    r = _rollouts(policy, prompts)
    r.extras["vogue_uncertainty"] = torch.zeros(8)
    shaped = vogue.token_advantages(r)
    expected = (vogue.advantages(r)[:, None] + 0.01 * r.entropy).masked_fill(~r.mask, 0.0)
    assert torch.allclose(shaped, expected)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_anneals_as_configured(schedule):
    vogue = VOGUE(share_start=0.8, share_end=0.2, anneal_steps=100, schedule=schedule)
    assert vogue.perturbed_share(0) == pytest.approx(0.8)
    assert vogue.perturbed_share(100) == pytest.approx(0.2)
    assert vogue.perturbed_share(10_000) == pytest.approx(0.2)
    mid = 0.8 - 0.6 * (0.25 if schedule == "linear" else 0.5 * (1 - math.cos(math.pi / 4)))
    assert vogue.perturbed_share(25) == pytest.approx(mid)
    shares = [vogue.perturbed_share(s) for s in range(0, 101, 10)]
    assert all(a >= b for a, b in itertools.pairwise(shares))
    prompts = torch.rand(10, 4)
    for step, count in ((0, 8), (100, 2)):
        sampled, extras = vogue.sampling_prompts(prompts, step)
        flags = extras["vogue_perturbed"]
        assert int(flags.sum()) == count
        assert torch.equal(sampled[~flags], prompts[~flags])
        assert torch.equal(extras["vogue_other_prompts"][flags], prompts[flags])
    assert VOGUE(anneal_steps=0, share_end=0.3).perturbed_share(5) == 0.3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_log_probs(dtype):
    policy = LinearPolicy()
    with torch.no_grad():
        policy.linear.weight.mul_(1e4)
    prompts = torch.rand(2, 4)
    vogue = VOGUE(bonus_on="all", perturbation=GaussianNoise(0.3))
    r = _rollouts(policy, prompts, dtype=dtype)
    out = vogue(_ctx(policy, r))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(r.logp.grad).all()
    assert math.isfinite(out.logs["uncertainty"].item())


def test_errors():
    policy = LinearPolicy()
    r = _rollouts(policy, torch.rand(2, 4))
    with pytest.raises(ValueError, match="sampling_prompts"):
        VOGUE()(_ctx(policy, r))
    with pytest.raises(TypeError, match="log_probs"):
        VOGUE().check_network(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="share_start"):
        VOGUE(share_start=1.5)
    with pytest.raises(ValueError, match="schedule"):
        VOGUE(schedule="step")
    with pytest.raises(TypeError, match="callable"):
        VOGUE(perturbation=3)
    with pytest.raises(ValueError, match="shape"):
        VOGUE(perturbation=lambda x: x[:1]).sampling_prompts(torch.rand(3, 4), 0)


def test_vogue_raises_expected_reward_on_a_toy_contextual_bandit(bandit_rollouts):
    """4 one-hot contexts x 5 actions, a linear policy; a share of the prompts is sampled on
    noisy contexts through sampling_prompts, as an RL task does."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    reward_table = torch.rand(4, 5, generator=gen).round()
    reward_table[:, 4] = 1.0
    policy = LinearPolicy()
    optimizer = torch.optim.Adam(policy.parameters(), lr=0.1)
    vogue = VOGUE(perturbation=GaussianNoise(0.2, clamp=None), share_start=0.5, anneal_steps=40)
    contexts = torch.eye(4)

    def expected_reward() -> float:
        with torch.no_grad():
            return float((policy.linear(contexts).softmax(-1) * reward_table).sum(-1).mean())

    start = expected_reward()
    for step in range(60):
        sampled, extras = vogue.sampling_prompts(contexts, step)
        group = group_ids(4, 8)
        probs = policy.linear(sampled).softmax(-1).detach()
        actions = torch.multinomial(probs, 8, True, generator=gen).reshape(-1, 1)
        logp = policy.log_probs(sampled, actions, group)
        entropy = -(probs * probs.log()).sum(-1)[group][:, None]
        rollouts = bandit_rollouts(
            sampled, group, actions, reward_table, logp, entropy=entropy, extras=extras
        )
        optimizer.zero_grad()
        vogue(_ctx(policy, rollouts)).loss.backward()
        optimizer.step()
    assert start < 0.75
    assert expected_reward() > 0.95
