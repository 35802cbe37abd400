"""Invariance-constrained learning (Hounie, Chamon & Ribeiro, ICML 2023): the dual variable rises
while the constraint is violated and decays to 0 when it holds, the loss is mu times the augmented
cross-entropy, the state is checkpointed, identical on two gloo DDP ranks, and the objectives are
configured from YAML."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch import nn

from geozoo.cli import build_cli
from geozoo.objectives import CrossEntropy, InvarianceConstrained, UniformAugmentation
from geozoo.objectives.base import StepContext
from geozoo.tasks import ClassificationTask
from geozoo.zoo.recipes import lightning_cli

SPACE = {"operations": ["rotate", "translate_x", "contrast"], "levels": 5}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))


def _ctx(net: nn.Module, seed: int = 0, stage: str = "train", n: int = 16) -> StepContext:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 1, 8, 8, generator=g), torch.randint(10, (n,), generator=g)
    return StepContext(inputs=x, targets=y, outputs=net(x), network=net, stage=stage)


def test_dual_rises_while_violated_and_decays_to_zero_when_it_holds() -> None:
    net = _net()
    objective = InvarianceConstrained(epsilon=0.0, dual_lr=0.1, **SPACE)
    duals = []
    for step in range(5):  # CE > 0 = epsilon: violated
        objective(_ctx(net, step))
        duals.append(float(objective.dual))
    assert all(b > a for a, b in zip([0.0, *duals], duals))
    objective.epsilon = 100.0  # now CE < epsilon: the constraint holds
    for step in range(5):
        objective(_ctx(net, step))
        duals.append(float(objective.dual))
    assert duals[5] < duals[4] and duals[-1] == 0.0 and duals[-2] == 0.0


def test_dual_step_is_projected_gradient_ascent() -> None:
    objective = InvarianceConstrained(epsilon=0.5, dual_lr=0.2, dual_init=1.0, **SPACE)
    assert float(objective.update_dual(torch.tensor(1.5))) == 1.5
    assert float(objective.dual) == pytest.approx(1.0 + 0.2 * (1.5 - 0.5))
    objective.update_dual(torch.tensor(0.0))
    assert float(objective.dual) == pytest.approx(1.2 - 0.1)
    objective.update_dual(torch.tensor(-100.0))  # never negative
    assert float(objective.dual) == 0.0


def test_loss_is_dual_times_the_augmented_cross_entropy() -> None:
    net = _net()
    objective = InvarianceConstrained(epsilon=0.1, dual_lr=0.5, dual_init=2.0, **SPACE)
    torch.manual_seed(7)
    out = objective(_ctx(net))
    assert out.loss.requires_grad and float(out.logs["dual"]) == 2.0
    assert float(out.loss.detach()) == pytest.approx(
        2.0 * float(out.logs["augmented_ce"]), rel=1e-6
    )
    assert float(objective.dual) == pytest.approx(2.0 + 0.5 * (float(out.logs["slack"])))
    assert 0.0 <= float(out.logs["acceptance"]) <= 1.0
    assert float(objective.visits.sum()) == 16  # one transformation per example recorded
    # with mu = 0 nothing is back-propagated; the chain's losses update mu
    zero = InvarianceConstrained(epsilon=0.1, dual_lr=0.5, **SPACE)
    out = zero(_ctx(net))
    assert float(out.loss) == 0.0 and float(zero.dual) > 0.0


def test_validation_steps_leave_the_state_alone() -> None:
    net = _net()
    objective = InvarianceConstrained(epsilon=0.0, dual_init=0.3, **SPACE)
    out = objective(_ctx(net, stage="val"))
    assert float(out.loss) == 0.0 and float(objective.dual) == pytest.approx(0.3)
    assert float(objective.visits.sum()) == 0.0
    assert float(UniformAugmentation(**SPACE)(_ctx(net, stage="val")).loss) == 0.0


def test_uniform_augmentation_is_the_augmented_cross_entropy() -> None:
    net = _net()
    objective = UniformAugmentation(**SPACE)
    ctx = _ctx(net)
    torch.manual_seed(3)
    loss = objective(ctx).loss
    torch.manual_seed(3)
    params = objective.space.sample(16)
    expected = nn.functional.cross_entropy(
        net(objective.space.apply(ctx.inputs, params)), ctx.targets
    )
    assert torch.allclose(loss, expected) and loss.requires_grad
    assert objective.visits.shape == (3, 5) and float(objective.visits.sum()) == 16


def test_state_is_checkpointed() -> None:
    objective = InvarianceConstrained(dual_init=0.7, **SPACE)
    objective.visits[1, 2] = 5
    task = ClassificationTask(_net(), [CrossEntropy(), objective])
    state = task.state_dict()
    assert "objectives.1.dual" in state and "objectives.1.visits" in state
    fresh = ClassificationTask(_net(), [CrossEntropy(), InvarianceConstrained(**SPACE)])
    fresh.load_state_dict(state)
    assert float(fresh.objectives[1].dual) == pytest.approx(0.7)
    assert float(fresh.objectives[1].visits[1, 2]) == 5


def test_bad_arguments_are_reported() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        InvarianceConstrained(epsilon=-1.0)
    with pytest.raises(ValueError, match="dual_lr"):
        InvarianceConstrained(dual_lr=float("nan"))
    with pytest.raises(ValueError, match="unknown operation"):
        InvarianceConstrained(operations=["rotate", "blur"])
    with pytest.raises(ValueError, match="chain_length"):
        InvarianceConstrained(chain_length=0, **SPACE)
    with pytest.raises(ValueError, match="class targets"):
        objective = UniformAugmentation(**SPACE)
        net = _net()
        x = torch.rand(2, 1, 8, 8)
        objective(StepContext(inputs=x, targets=None, outputs=net(x), network=net))


def test_group_space_by_name() -> None:
    objective = InvarianceConstrained(group="so2", dual_init=1.0)
    out = objective(_ctx(_net()))
    assert torch.isfinite(out.loss) and float(objective.visits.sum()) == 16


def _ddp_worker(rank: int, world: int, path: str) -> None:
    # file rendezvous: no free TCP port to find
    store = f"file://{os.path.join(path, 'rendezvous')}"
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=world)
    torch.set_num_threads(1)
    net = _net()  # same network on both ranks
    objective = InvarianceConstrained(epsilon=0.5, dual_lr=0.1, dual_init=0.2, **SPACE)
    torch.manual_seed(100 + rank)  # different chains per rank
    local, shared = [], []
    for step in range(3):
        ctx = _ctx(net, seed=10 * step + rank)  # different data per rank
        out = objective(ctx)
        local.append(float(nn.functional.cross_entropy(ctx.outputs, ctx.targets)))
        shared.append(float(out.logs["augmented_ce"]))
    plain = InvarianceConstrained(epsilon=0.5, dual_lr=0.1, **SPACE)
    plain.update_dual(torch.tensor([1.0, 3.0][rank]))
    torch.save(
        {"dual": objective.dual, "shared": shared, "local": local, "plain": plain.dual},
        os.path.join(path, f"rank{rank}.pt"),
    )
    dist.destroy_process_group()


def test_ddp_two_gloo_processes_share_the_dual_variable() -> None:
    with tempfile.TemporaryDirectory() as path:
        mp.spawn(_ddp_worker, args=(2, path), nprocs=2, join=True)
        r0, r1 = (torch.load(os.path.join(path, f"rank{r}.pt")) for r in (0, 1))
    assert r0["local"] != r1["local"]  # the ranks saw different batches ...
    assert r0["shared"] == r1["shared"]  # ... but step on the same averaged constraint value
    assert torch.equal(r0["dual"], r1["dual"])
    expected = 0.2
    for value in r0["shared"]:
        expected = max(0.0, expected + 0.1 * (value - 0.5))
    assert float(r0["dual"]) == pytest.approx(expected, rel=1e-6)
    # mean of 1.0 and 3.0 is 2.0: mu = 0.1 * (2.0 - 0.5) on both ranks
    assert float(r0["plain"]) == float(r1["plain"]) == pytest.approx(0.15)


ROOT = Path(__file__).resolve().parents[2]


def _recipe(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_recipes_differ_only_in_their_objectives(dataset: str) -> None:
    arms = ["uniform", "mh"] if dataset == "cifar10" else ["none", "uniform", "mh"]
    recipes = [_recipe(f"daug_{arm}_{dataset}") for arm in arms]
    objectives = [r["model"]["init_args"].pop("objectives") for r in recipes]
    assert all(r == recipes[0] for r in recipes)
    spaces = [
        {k: v for k, v in o[1]["init_args"].items() if k != "weight"} for o in objectives[-2:]
    ]
    uniform, constrained = spaces
    assert all(uniform[k] == constrained[k] for k in ("operations", "levels"))
    assert uniform.get("maximum") == constrained.get("maximum")


def test_zoo_recipe_is_the_constrained_arm() -> None:
    # the zoo names a recipe after its entry; this copy must not drift from the experiment's
    assert _recipe("cnn_mcmcaug_mnist") == _recipe("daug_mh_mnist")


@pytest.mark.parametrize("arm", ["uniform", "mh"])
def test_cifar_recipes_build_without_the_data(arm: str, tmp_path) -> None:
    path = ROOT / "configs" / f"daug_{arm}_cifar10.yaml"
    cli = lightning_cli(
        ["--config", str(path), f"--trainer.default_root_dir={tmp_path}"], run=False
    )
    kind = UniformAugmentation if arm == "uniform" else InvarianceConstrained
    assert isinstance(cli.model.objectives[1], kind)
    cli.model.objectives[1].space.apply(
        torch.rand(2, 3, 32, 32), cli.model.objectives[1].space.sample(2)
    )


def test_the_constrained_recipe_trains_through_the_cli(tmp_path) -> None:
    cli = build_cli(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / "daug_mh_mnist.yaml"),
            "--trainer.fast_dev_run=2",
            "--data.init_args.offline_test_size=200",
            "--data.init_args.test_sets=[clean]",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    objective = cli.model.objectives[1]
    assert isinstance(objective, InvarianceConstrained) and cli.trainer.global_step == 2
    assert float(objective.dual) > 0  # the constraint was violated at the start: mu rose
    assert "train/invariance_constrained/dual" in cli.trainer.callback_metrics
    assert float(objective.visits.sum()) == 2 * 64
