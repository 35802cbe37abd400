"""RECAP dynamic reweighting: a saturated objective loses weight, a rising or volatile one gains."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from geozoo.objectives import DynamicReweighting, Objective, ObjectiveOutput, StepContext
from geozoo.objectives.reweighting import reweighting_scores


class Scripted(Objective):
    """Returns the next value of a fixed sequence (times a trainable scale of 1)."""

    def __init__(self, values: list[float], name: str, log_key: str | None = None) -> None:
        super().__init__(name=name)
        self.values = values
        self.log_key = log_key
        self.calls = 0

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        loss = ctx.network.scale * value
        logs = {self.log_key: torch.tensor(-value)} if self.log_key else {}
        return ObjectiveOutput(loss, logs)


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))


def _ctx(net: nn.Module, stage: str = "train") -> StepContext:
    return StepContext(
        inputs=torch.zeros(1), targets=None, outputs=torch.zeros(1), network=net, stage=stage
    )


def test_scores_by_hand():
    flat = torch.full((1, 8), 2.0)
    falling = torch.linspace(2.0, 1.0, 8)[None]
    rising = torch.linspace(1.0, 2.0, 8)[None]
    scores = reweighting_scores(torch.cat([flat, falling, rising]), eps=0.0)
    assert scores[0] == 0.0
    trend = (falling[0, 4:].mean() - falling[0, :4].mean()) / falling.abs().mean()
    assert torch.isclose(scores[1], trend.abs().double(), atol=1e-6)  # diffs constant: no noise
    assert torch.isclose(scores[2], 2 * scores[1])  # rising counts progress and rise
    noisy = torch.tensor([[1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0]])
    expected = noisy.diff().std() / (2.0**0.5 * 2.0)  # scale = mean |v| = 2
    got = reweighting_scores(noisy, progress_coef=0, rise_coef=0, eps=0.0)[0]
    assert torch.isclose(got, expected.double())


def test_toy_where_one_objective_saturates_early():
    """Objective 'format' is learnt within a few steps and stays flat; 'answer' keeps moving
    and is noisy: after the window fills, 'format' loses weight and 'answer' gains it."""
    gen = torch.Generator().manual_seed(0)
    steps = 40
    fmt = [max(1.0 - 0.5 * t, 0.05) for t in range(steps)]
    answer = [2.0 - 0.02 * t + 0.1 * torch.randn((), generator=gen).item() for t in range(steps)]
    recap = DynamicReweighting([Scripted(fmt, "format"), Scripted(answer, "answer")], window=10)
    net = Scale()
    weights = []
    for _ in range(steps):
        out = recap(_ctx(net))
        weights.append((out.logs["format/weight"].item(), out.logs["answer/weight"].item()))
    assert weights[0] == (1.0, 1.0)  # uniform while the window fills
    w_format, w_answer = weights[-1]
    assert w_format < 0.9 < 1.1 < w_answer
    assert w_format + w_answer == pytest.approx(2.0)
    # the loss uses the weights fixed at the start of the step, without gradient through them
    before = recap.weights.clone()
    out = recap(_ctx(net))
    expected = before[0].item() * fmt[-1] + before[1].item() * answer[-1]
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    out.loss.backward()
    assert net.scale.grad.item() == pytest.approx(expected, rel=1e-5)


def test_forgotten_replay_objective_gains_weight_over_an_improving_one():
    steps = 30
    rl = [2.0 - 0.03 * t for t in range(steps)]  # improving
    replay = [1.0 + 0.03 * t for t in range(steps)]  # rising: being forgotten
    recap = DynamicReweighting([Scripted(rl, "rl"), Scripted(replay, "replay")], window=10)
    net = Scale()
    for _ in range(steps):
        recap(_ctx(net))
    assert recap.weights[1] > recap.weights[0]


def test_logged_signal_orientation_and_eval_does_not_update():
    steps = 20
    # the loss is flat but the logged reward (-value) keeps falling: getting worse
    reward_obj = Scripted([float(t) for t in range(steps)], "grpo", log_key="reward")
    flat = Scripted([1.0] * steps, "ce")
    recap = DynamicReweighting(
        [reward_obj, flat], window=6, signals={"grpo": "reward"}, higher_is_better=["grpo"]
    )
    net = Scale()
    for _ in range(3):
        recap(_ctx(net, stage="val"))
    assert int(recap.count) == 0
    for _ in range(steps - 3):
        recap(_ctx(net))
    assert recap.weights[0] > 1.0 > recap.weights[1]
    history = recap.history[0, -1].item()
    assert history == pytest.approx(float(steps - 1))  # -(reward) = value, lower is better
    # state travels with the state dict
    clone = DynamicReweighting([Scripted([0.0], "grpo"), Scripted([0.0], "ce")], window=6)
    clone.load_state_dict(recap.state_dict())
    assert torch.equal(clone.weights, recap.weights)


def test_signal_from_the_step_extras():
    class Rollouts:  # stands for geozoo.rl.Rollouts: anything with the attribute
        def __init__(self, rewards: list[float]) -> None:
            self.rewards = torch.tensor(rewards)

    recap = DynamicReweighting(
        [Scripted([0.0], "grpo"), Scripted([1.0], "ce")],
        window=4,
        signals={"grpo": "rollouts.rewards"},
        higher_is_better=["grpo"],
    )
    net = Scale()
    ctx = _ctx(net)
    ctx.extras["rollouts"] = Rollouts([1.0, 0.0, 0.0, 0.0])
    recap(ctx)
    assert recap.history[0, -1].item() == -0.25


def test_non_finite_step_keeps_weights_and_bad_arguments():
    recap = DynamicReweighting([Scripted([1.0, float("inf")], "a"), Scripted([1.0], "b")], window=4)
    net = Scale()
    recap(_ctx(net))
    recap(_ctx(net))
    assert int(recap.count) == 1
    with pytest.raises(ValueError, match="unique"):
        DynamicReweighting([Scripted([1.0], "a"), Scripted([1.0], "a")])
    with pytest.raises(ValueError, match="window"):
        DynamicReweighting([Scripted([1.0], "a")], window=2)
    with pytest.raises(ValueError, match="unknown objectives"):
        DynamicReweighting([Scripted([1.0], "a")], signals={"b": "reward"})
    with pytest.raises(TypeError, match="non-empty list"):
        DynamicReweighting([])
    with pytest.raises(KeyError, match="neither among its logged values"):
        DynamicReweighting([Scripted([1.0], "a")], signals={"a": "reward"})(_ctx(net))


def _ddp_worker(rank: int, world: int, port: int, path: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    gen = torch.Generator().manual_seed(rank)  # each rank sees different losses
    a = [1.0 + rank + 0.3 * torch.rand((), generator=gen).item() for _ in range(12)]
    b = [2.0 - 0.1 * t * (1 + rank) for t in range(12)]
    recap = DynamicReweighting([Scripted(a, "a"), Scripted(b, "b")], window=5)
    net = Scale()
    for _ in range(12):
        recap(_ctx(net))
    torch.save(
        {"weights": recap.weights, "history": recap.history}, os.path.join(path, f"rank{rank}.pt")
    )
    dist.destroy_process_group()


def test_ddp_two_gloo_processes_keep_identical_weights(free_port):
    with tempfile.TemporaryDirectory() as path:
        mp.spawn(_ddp_worker, args=(2, free_port, path), nprocs=2, join=True)
        r0, r1 = (torch.load(os.path.join(path, f"rank{r}.pt")) for r in (0, 1))
    assert torch.equal(r0["history"], r1["history"])
    assert torch.equal(r0["weights"], r1["weights"])
    assert not torch.equal(r0["weights"], torch.ones(2, dtype=torch.float64))
    # the history holds the mean over ranks of the last step's signals
    assert r0["history"][1, -1].item() == pytest.approx((0.9 + 2.0 - 2.2) / 2)


def test_low_precision_and_extreme_losses_stay_finite():
    values = [1e4 * (1 + (t % 3)) for t in range(10)]
    recap = DynamicReweighting([Scripted(values, "a"), Scripted([-1e4] * 10, "b")], window=4)
    net = Scale().to(torch.bfloat16)
    for _ in range(10):
        out = recap(_ctx(net))
    assert torch.isfinite(recap.weights).all() and torch.isfinite(out.loss)
    out.loss.backward()
    assert torch.isfinite(net.scale.grad)
