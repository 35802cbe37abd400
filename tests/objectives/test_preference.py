"""f-DPO and f-DPG against their formulas and a direct DPO computation."""

from __future__ import annotations

import math
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from geozoo.objectives import FDPG, FDPO, StepContext
from geozoo.objectives.grpo import policy_generator
from geozoo.objectives.preference import preference_pairs, psi
from geozoo.rl import Rollouts, group_ids

RHO = torch.tensor([-3.0, -0.7, 0.0, 0.4, 2.5], dtype=torch.float64)


@pytest.mark.parametrize(
    ("name", "formula"),
    [
        ("reverse_kl", lambda r: r),
        ("forward_kl", lambda r: -math.exp(-r)),
        ("js", lambda r: math.log(2) - math.log(1 + math.exp(-r)) - math.log(2)),
        ("alpha", lambda r: -math.exp(-0.3 * r) / 0.3),
    ],
)
def test_psi_matches_formula_and_generator_derivative(name, formula):
    values = psi(RHO, name, alpha=0.3)
    torch.testing.assert_close(
        values, torch.tensor([formula(float(r)) for r in RHO], dtype=torch.float64)
    )
    # psi is f'(exp(rho)) up to a constant; f-DPO's JS generator is twice the textbook one
    scale = 2.0 if name == "js" else 1.0
    f_prime = scale * policy_generator(name, 0.3).f_prime(RHO.exp())
    torch.testing.assert_close(values - values[2], f_prime - f_prime[2])


def test_psi_finite_far_from_the_reference():
    rho = torch.tensor([-1e4, 1e4])
    for name in ("reverse_kl", "forward_kl", "js", "alpha"):
        assert torch.isfinite(psi(rho, name)).all()


def test_preference_pairs_enumerates_better_within_groups():
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    winners, losers = preference_pairs(rewards, group)
    pairs = sorted(zip(winners.tolist(), losers.tolist()))
    assert pairs == [(0, 1), (2, 1), (5, 3), (5, 4)]


def _rollouts(logp_value: float = -2.0, dtype=torch.float32, seed: int = 0) -> Rollouts:
    gen = torch.Generator().manual_seed(seed)
    b, g, t = 3, 4, 3
    n = b * g
    mask = torch.arange(t)[None, :] < torch.randint(1, t + 1, (n,), generator=gen)[:, None]
    base = logp_value + 0.2 * torch.randn(n, t, generator=gen)
    return Rollouts(
        prompts=torch.zeros(b, 1),
        group=group_ids(b, g),
        responses=torch.zeros(n, t, dtype=torch.long),
        mask=mask,
        rewards=torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0]),
        logp=base.to(dtype).clone().requires_grad_(),
        old_logp=base.to(dtype),
        ref_logp=(base + 0.5 * torch.randn(n, t, generator=gen)).to(dtype),
    )


def _ctx(rollouts: Rollouts, stage: str = "train") -> StepContext:
    return StepContext(
        rollouts.prompts,
        None,
        rollouts.logp,
        torch.nn.Identity(),
        stage=stage,
        extras={"rollouts": rollouts},
    )


def test_fdpo_with_reverse_kl_is_dpo():
    rollouts = _rollouts()
    loss = FDPO(beta=0.3, divergence="reverse_kl")(_ctx(rollouts)).loss
    logp = (rollouts.logp * rollouts.mask).sum(-1)
    ref = (rollouts.ref_logp * rollouts.mask).sum(-1)
    terms = []
    for w in range(12):
        for l in range(12):
            if rollouts.group[w] == rollouts.group[l] and rollouts.rewards[w] > rollouts.rewards[l]:
                margin = (logp[w] - ref[w]) - (logp[l] - ref[l])
                terms.append(-F.logsigmoid(0.3 * margin))
    torch.testing.assert_close(loss, torch.stack(terms).mean())


@pytest.mark.parametrize("name", ["reverse_kl", "forward_kl", "js", "alpha"])
@pytest.mark.parametrize(("logp_value", "dtype"), [(-1e4, torch.float32), (-2.0, torch.bfloat16)])
def test_fdpo_and_fdpg_finite(name, logp_value, dtype):
    for objective in (FDPO(divergence=name), FDPG(divergence=name)):
        rollouts = _rollouts(logp_value, dtype)
        loss, logs = objective(_ctx(rollouts))
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(rollouts.logp.grad).all()
        assert all(torch.isfinite(v).all() for v in logs.values())


def test_fdpo_without_pairs_is_zero_with_a_graph():
    rollouts = _rollouts()
    rollouts.rewards = torch.ones(12)
    loss, logs = FDPO()(_ctx(rollouts))
    assert loss.item() == 0.0 and loss.requires_grad and float(logs["pairs"]) == 0.0


def test_fdpg_forward_kl_pseudo_reward_is_the_dpg_ratio():
    rollouts = _rollouts()
    fdpg = FDPG(divergence="forward_kl", tau=0.5)
    rewards = fdpg.pseudo_rewards(rollouts)
    # p = pi_ref exp(r / tau) / Z with Z the group mean of P / pi_old: R = p / pi
    logp = (rollouts.logp.detach() * rollouts.mask).sum(-1)
    log_target = (rollouts.ref_logp * rollouts.mask).sum(-1) + rollouts.rewards / 0.5
    z = (log_target - logp).exp().reshape(3, 4).mean(-1).repeat_interleave(4)
    torch.testing.assert_close(rewards, log_target.exp() / z / logp.exp())


def test_fdpg_baseline_is_a_moving_average_buffer():
    fdpg = FDPG(divergence="js", baseline_momentum=0.5)
    assert "baseline" in fdpg.state_dict()
    first = _rollouts(seed=0)
    fdpg(_ctx(first))
    r0 = float(fdpg.pseudo_rewards(first).mean())
    assert float(fdpg.baseline) == pytest.approx(r0)
    second = _rollouts(seed=1)
    fdpg(_ctx(second, stage="val"))
    assert float(fdpg.baseline) == pytest.approx(r0)  # only training steps update it
    fdpg(_ctx(second))
    assert float(fdpg.baseline) == pytest.approx(
        0.5 * r0 + 0.5 * float(fdpg.pseudo_rewards(second).mean())
    )


def _ddp_worker(rank: int, world: int, port: int, path: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    fdpg = FDPG(divergence="js", baseline_momentum=0.5)
    rewards = []
    for step in range(2):
        rollouts = _rollouts(seed=10 * rank + step)  # different samples on each rank
        fdpg(_ctx(rollouts))
        rewards.append(fdpg.pseudo_rewards(rollouts))
    torch.save({"baseline": fdpg.baseline, "rewards": rewards}, os.path.join(path, f"{rank}.pt"))
    dist.destroy_process_group()


def test_fdpg_baseline_is_identical_on_two_gloo_ranks(free_port: int):
    with tempfile.TemporaryDirectory() as path:
        mp.spawn(_ddp_worker, args=(2, free_port, path), nprocs=2, join=True)
        r0, r1 = (torch.load(os.path.join(path, f"{r}.pt")) for r in (0, 1))
    assert not torch.equal(r0["rewards"][0], r1["rewards"][0])
    assert torch.equal(r0["baseline"], r1["baseline"])
    first = float(torch.cat([r0["rewards"][0], r1["rewards"][0]]).mean())
    second = float(torch.cat([r0["rewards"][1], r1["rewards"][1]]).mean())
    assert float(r0["baseline"]) == pytest.approx(0.5 * first + 0.5 * second, abs=1e-6)
