"""GRPO, its divergences and KDRL against hand computations and exact categorical values."""

from __future__ import annotations

import math

import pytest
import torch

from geozoo.objectives import GRPO, KDRL, StepContext
from geozoo.objectives import divergences as D
from geozoo.objectives.grpo import (
    clipped_surrogate,
    group_advantages,
    policy_generator,
    rehearsal_divergence,
)
from geozoo.rl import Rollouts, group_ids

# ------------------------------------------------------------------ advantages


def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 5.0])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2])
    adv = group_advantages(rewards, group, eps=1e-4)
    std = math.sqrt(4 * 0.25 / 3)  # unbiased std of [1, 0, 0, 1]
    expected = torch.tensor([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4)
    torch.testing.assert_close(adv[:4], expected)
    assert torch.equal(adv[4:], torch.zeros(5))  # all equal, and a group of one: zero, no NaN
    centred = group_advantages(rewards, group, scale=False)
    torch.testing.assert_close(centred[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]))


def test_group_advantages_shape_error():
    with pytest.raises(ValueError, match="shape"):
        group_advantages(torch.zeros(4), torch.zeros(3, dtype=torch.long))


# ------------------------------------------------------------------ clipped surrogate


@pytest.mark.parametrize(
    ("ratio", "advantage", "zero"),
    [(1.5, 1.0, True), (0.5, -1.0, True), (1.1, 1.0, False), (0.5, 1.0, False), (1.5, -1.0, False)],
)
def test_clipped_gradient_zero_outside_trust_region(ratio, advantage, zero):
    old = torch.tensor([[-1.0]])
    logp = (old + math.log(ratio)).requires_grad_()
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([[advantage]]), epsilon=0.2)
    loss.sum().backward()
    assert bool(clipped.item()) == zero
    if zero:
        assert logp.grad.item() == 0.0
    else:
        assert logp.grad.item() == pytest.approx(-ratio * advantage)


def test_clip_higher():
    old = torch.tensor([[0.0]])
    logp = torch.tensor([[math.log(1.25)]], requires_grad=True)
    loss, _ = clipped_surrogate(logp, old, torch.ones(1, 1), epsilon=0.2, epsilon_high=0.28)
    loss.sum().backward()
    assert logp.grad.item() != 0.0  # inside [0.8, 1.28]


# ------------------------------------------------------------------ KL estimators by Monte Carlo


def _categorical():
    p_logits = torch.tensor([1.2, -0.3, 0.4, -1.0, 0.1], dtype=torch.float64)
    q_logits = torch.tensor([0.2, 0.5, -0.6, 0.3, -0.2], dtype=torch.float64)
    return p_logits, q_logits


def test_k1_k3_expectations_and_k2_gradient_match_exact_kl():
    p_logits, q_logits = _categorical()
    exact = float(D.kl(p_logits, q_logits))
    gen = torch.Generator().manual_seed(0)
    x = torch.multinomial(p_logits.softmax(-1), 200_000, replacement=True, generator=gen)
    theta = p_logits.clone().requires_grad_()
    logp = theta.log_softmax(-1)[x]
    logq = q_logits.log_softmax(-1)[x]
    k1 = D.kl_estimate(logp.detach(), logq, "k1").mean()
    k3 = D.kl_estimate(logp.detach(), logq, "k3").mean()
    assert float(k1) == pytest.approx(exact, abs=5e-3)
    assert float(k3) == pytest.approx(exact, abs=5e-3)
    # k2 is biased as a value but its gradient (as a loss on-policy) is the reverse-KL gradient
    delta = p_logits.log_softmax(-1) - q_logits.log_softmax(-1)
    k2_value = float((p_logits.softmax(-1) * 0.5 * delta.square()).sum())
    k2 = D.kl_estimate(logp, logq, "k2").mean()
    assert k2.item() == pytest.approx(k2_value, abs=5e-3)
    assert abs(k2_value - exact) > 0.02
    (grad_k2,) = torch.autograd.grad(k2, theta)
    theta_exact = p_logits.clone().requires_grad_()
    (grad_exact,) = torch.autograd.grad(D.kl(theta_exact, q_logits), theta_exact)
    torch.testing.assert_close(grad_k2, grad_exact, atol=1e-2, rtol=0)


@pytest.mark.parametrize(
    ("name", "alpha"), [("forward_kl", None), ("js", None), ("alpha", 0.3), ("reverse_kl", None)]
)
def test_rehearsal_divergence_on_reference_samples_is_unbiased(name, alpha):
    pi_logits, ref_logits = _categorical()
    gen = torch.Generator().manual_seed(1)
    x = torch.multinomial(ref_logits.softmax(-1), 400_000, replacement=True, generator=gen)
    per_sample = rehearsal_divergence(
        pi_logits.log_softmax(-1)[x], ref_logits.log_softmax(-1)[x], name, alpha
    )
    assert bool((per_sample >= -1e-12).all())
    exact = {
        "forward_kl": lambda: D.kl(ref_logits, pi_logits),
        "reverse_kl": lambda: D.kl(pi_logits, ref_logits),
        "js": lambda: D.js(pi_logits, ref_logits),
        "alpha": lambda: D.alpha_divergence(pi_logits, ref_logits, alpha=1 - alpha),
    }[name]()
    assert float(per_sample.mean()) == pytest.approx(float(exact), rel=0.03, abs=2e-3)


def test_policy_generator_alpha_limits():
    u = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)
    near_forward = policy_generator("alpha", 1 - 1e-6).f(u)
    torch.testing.assert_close(
        near_forward, policy_generator("forward_kl").f(u) + (u - 1), atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="0 < alpha < 1"):
        policy_generator("alpha", 1.5)


# ------------------------------------------------------------------ GRPO as an objective


def _rollouts(
    logp_value: float = -1.0, dtype=torch.float32, ref: bool = True, seed: int = 0
) -> Rollouts:
    gen = torch.Generator().manual_seed(seed)
    b, g, t = 3, 4, 5
    n = b * g
    lengths = torch.randint(1, t + 1, (n,), generator=gen)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    base = logp_value + 0.1 * torch.randn(n, t, generator=gen)
    logp = base.to(dtype).clone().requires_grad_()
    return Rollouts(
        prompts=torch.zeros(b, 2),
        group=group_ids(b, g),
        responses=torch.zeros(n, t, dtype=torch.long),
        mask=mask,
        rewards=torch.randint(0, 2, (n,), generator=gen).float(),
        logp=logp,
        old_logp=(base + 0.05 * torch.randn(n, t, generator=gen)).to(dtype),
        ref_logp=(base + 0.3 * torch.randn(n, t, generator=gen)).to(dtype) if ref else None,
    )


def _ctx(rollouts: Rollouts, rehearsal: Rollouts | None = None) -> StepContext:
    extras = {"rollouts": rollouts}
    if rehearsal is not None:
        extras["rehearsal"] = rehearsal
    return StepContext(rollouts.prompts, None, rollouts.logp, torch.nn.Identity(), extras=extras)


GRPO_CHOICES = [
    {"divergence": "none"},
    {"divergence": "reverse_kl", "estimator": "k1"},
    {"divergence": "reverse_kl", "estimator": "k2"},
    {"divergence": "reverse_kl", "estimator": "k3", "aggregation": "sequence"},
    {"divergence": "forward_kl"},
    {"divergence": "js"},
    {"divergence": "alpha", "alpha": 0.3},
    {"divergence": "total_variation", "scale_rewards": False},
]


@pytest.mark.parametrize("kwargs", GRPO_CHOICES)
@pytest.mark.parametrize(
    ("logp_value", "dtype"), [(-1.0, torch.float32), (-1e4, torch.float32), (-2.0, torch.bfloat16)]
)
def test_grpo_finite(kwargs, logp_value, dtype):
    objective = GRPO(**kwargs, beta=0.1)
    rollouts = _rollouts(logp_value, dtype)
    rehearsal = _rollouts(logp_value, dtype, seed=1)
    loss, logs = objective(_ctx(rollouts, rehearsal))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(v).all() for v in logs.values())
    assert torch.isfinite(rollouts.logp.grad).all()
    if objective.needs_rehearsal:
        assert torch.isfinite(rehearsal.logp.grad).all()
        assert rehearsal.logp.grad.abs().sum() > 0


def test_grpo_extreme_log_ratios_stay_finite():
    rollouts = _rollouts(-1e4)
    rollouts.old_logp = torch.zeros_like(rollouts.old_logp)
    rollouts.ref_logp = torch.full_like(rollouts.old_logp, -1e4)
    for kwargs in GRPO_CHOICES[1:4]:
        loss, _ = GRPO(**kwargs)(_ctx(rollouts))
        assert torch.isfinite(loss)


def test_grpo_is_the_advantage_weighted_logp_on_policy():
    rollouts = _rollouts()
    rollouts.old_logp = rollouts.logp.detach().clone()
    loss, logs = GRPO(aggregation="token")(_ctx(rollouts))
    loss.backward()
    adv = group_advantages(rollouts.rewards, rollouts.group)
    expected = -(adv[:, None] * rollouts.mask) / rollouts.mask.sum()
    torch.testing.assert_close(rollouts.logp.grad, expected)
    assert float(logs["clip_fraction"]) == 0.0


def test_grpo_k1_shapes_the_reward_and_k3_is_a_loss():
    rollouts = _rollouts()
    k1 = GRPO(divergence="reverse_kl", estimator="k1", beta=0.5)
    kl = D.kl_estimate(rollouts.old_logp, rollouts.ref_logp, "k1")
    expected = rollouts.rewards - 0.5 * (kl * rollouts.mask).sum(-1)
    torch.testing.assert_close(k1.shaped_rewards(rollouts), expected)
    plain = GRPO(divergence="none")(_ctx(rollouts)).loss
    k3 = GRPO(divergence="reverse_kl", estimator="k3", beta=0.5)
    value = (D.kl_estimate(rollouts.logp, rollouts.ref_logp, "k3") * rollouts.mask).sum()
    value = value / rollouts.mask.sum()
    torch.testing.assert_close(k3(_ctx(rollouts)).loss, plain + 0.5 * value)


def test_grpo_errors_name_what_is_missing():
    rollouts = _rollouts(ref=False)
    with pytest.raises(ValueError, match="ref_logp"):
        GRPO(divergence="reverse_kl")(_ctx(rollouts))
    with pytest.raises(ValueError, match="rehearsal"):
        GRPO(divergence="js")(_ctx(rollouts))
    with pytest.raises(ValueError, match="divergence must be one of"):
        GRPO(divergence="hellinger")
    with pytest.raises(ValueError, match="RLTask"):
        GRPO()(StepContext(torch.zeros(1), None, torch.zeros(1), torch.nn.Identity()))


# ------------------------------------------------------------------ KDRL


class _TablePolicy(torch.nn.Module):
    """A teacher whose token log-probs are a fixed table over (position, token)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def log_probs(self, prompts, responses, group, temperature=1.0):
        table = (self.logits / temperature).log_softmax(-1)
        return table[torch.arange(responses.shape[1])[None, :], responses]


def test_kdrl_adds_k2_to_the_teacher_with_masking_and_anneal():
    rollouts = _rollouts()
    gen = torch.Generator().manual_seed(3)
    rollouts.responses = torch.randint(0, 4, rollouts.responses.shape, generator=gen)
    teacher = _TablePolicy(torch.randn(5, 4, generator=gen))
    kdrl = KDRL(teacher, beta_kd=0.2, beta_kd_final=0.1, anneal_steps=10, mask_correct=True)
    assert "teacher" not in dict(kdrl.named_modules())
    assert kdrl.kd_strength(0) == pytest.approx(0.2) and kdrl.kd_strength(5) == pytest.approx(0.15)
    assert kdrl.kd_strength(50) == pytest.approx(0.1)
    loss = kdrl(_ctx(rollouts)).loss
    plain = GRPO()(_ctx(rollouts)).loss
    t_logp = teacher.log_probs(None, rollouts.responses, None).detach()
    mask = rollouts.mask & (rollouts.rewards <= 0)[:, None]
    k2 = 0.5 * (rollouts.logp - t_logp).square()
    torch.testing.assert_close(loss, plain + 0.2 * (k2 * mask).sum() / mask.sum())
    with pytest.raises(TypeError, match="log_probs"):
        KDRL(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------ a toy bandit


def test_grpo_raises_expected_reward_on_a_toy_bandit(bandit_rollouts):
    """Tabular softmax policy over 4 contexts x 6 actions, reward table with a known optimum."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    reward_table = torch.rand(4, 6, generator=gen).round()
    reward_table[:, 5] = 1.0  # action 5 is always right: optimum 1
    logits = torch.nn.Parameter(torch.zeros(4, 6))
    optimizer = torch.optim.Adam([logits], lr=0.1)
    objective = GRPO(divergence="none")

    def expected_reward() -> float:
        return float((logits.detach().softmax(-1) * reward_table).sum(-1).mean())

    start = expected_reward()
    for _ in range(60):
        probs = logits.detach().softmax(-1)
        actions = torch.multinomial(probs, 8, replacement=True, generator=gen).reshape(-1, 1)
        group = group_ids(4, 8)
        logp = logits.log_softmax(-1)[group, actions[:, 0]][:, None]
        rollouts = bandit_rollouts(torch.arange(4), group, actions, reward_table, logp)
        optimizer.zero_grad()
        objective(_ctx(rollouts)).loss.backward()
        optimizer.step()
    assert start < 0.75
    assert expected_reward() > 0.97


@pytest.mark.parametrize(("logp_value", "dtype"), [(-1e4, torch.float32), (-2.0, torch.bfloat16)])
def test_kdrl_finite(logp_value, dtype):
    rollouts = _rollouts(logp_value, dtype)
    teacher = _TablePolicy(torch.tensor([[30.0, -30.0, 0.0, 1.0]]).repeat(5, 1))
    loss, logs = KDRL(teacher, kd_estimator="k3", divergence="reverse_kl")(_ctx(rollouts))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(rollouts.logp.grad).all()
    assert all(torch.isfinite(v).all() for v in logs.values())
