"""Soft-equivariance regularizers (Kim et al., ICML 2023): values against brute force, zero for
exactly equivariant models, strength tuning on a toy, and DDP synchronisation on gloo."""

from __future__ import annotations

import gc
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from geozoo.data.tensor_batches import TensorBatches
from geozoo.groups.projection import equivariant_projector
from geozoo.groups.representations import Scalar, Vector, get_group
from geozoo.nets.equivariant_mlp import EquivariantMLP, PlainMLP, RepLinear
from geozoo.objectives.base import StepContext
from geozoo.objectives.soft_equivariance import (
    MixedSymmetryRegularizer,
    ProjectionEquivarianceRegularizer,
    ResidualPathwayPrior,
    SampleEquivarianceRegularizer,
    projection_penalties,
    sample_penalty,
)

CANDIDATES = ["o3", "o2_x", "o2_z"]


def _net(mode: str = "free", group: str | None = None) -> EquivariantMLP:
    torch.manual_seed(0)
    return EquivariantMLP(
        [2, 2], [0, 1, 1], hidden=(4, 3, 1), num_blocks=2, mode=mode, group=group, bilinear=(2, 2)
    ).double()


def _ctx(net: nn.Module, x: torch.Tensor, stage: str = "train") -> StepContext:
    return StepContext(inputs=x, targets=None, outputs=net(x), network=net, stage=stage)


def test_projection_penalty_matches_dense_brute_force() -> None:
    torch.manual_seed(1)
    net = EquivariantMLP([1, 1], [0, 0, 1], hidden=(2, 1, 1), num_blocks=1, bilinear=(1, 1))
    net = net.double()
    values = projection_penalties(net, CANDIDATES)
    for k, name in enumerate(CANDIDATES):
        group, expected = get_group(name), 0.0
        for layer in net.rep_linears():
            dense = equivariant_projector(group, layer.rep_out, layer.rep_in).matrix()
            w = layer.weight.detach().reshape(-1)
            expected += 0.5 * (w - dense @ w).square().sum()
            b = layer.bias.detach()
            bias_dense = equivariant_projector(group, layer.rep_out, Scalar).matrix()
            expected += 0.5 * (b - bias_dense @ b).square().sum()
        torch.testing.assert_close(values[k], torch.as_tensor(expected, dtype=torch.float64))


def test_fused_penalty_gradient_and_normalized_variant() -> None:
    """The fused backward ((I - P_g) theta) equals autograd through the dense projectors, and
    ``normalize`` divides R_g by the number of directions the group constrains."""
    net = EquivariantMLP([1, 1], [0, 0, 1], hidden=(2, 1, 1), num_blocks=1, bilinear=(1, 1))
    net = net.double()
    weights = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64)
    (weights * projection_penalties(net, CANDIDATES)).sum().backward()
    fused = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    total, dims = 0.0, []
    for k, name in enumerate(CANDIDATES):
        group, size, rank = get_group(name), 0, 0.0
        for layer in net.rep_linears():
            for param, rep_in in ((layer.weight, layer.rep_in), (layer.bias, Scalar)):
                dense = equivariant_projector(group, layer.rep_out, rep_in).matrix()
                w = param.reshape(-1)
                total = total + weights[k] * 0.5 * (w - dense @ w).square().sum()
                size, rank = size + w.numel(), rank + float(torch.trace(dense))
        dims.append((size, round(rank)))
    total.backward()
    for a, p in zip(fused, net.parameters()):
        torch.testing.assert_close(a, p.grad)
    raw = projection_penalties(net, CANDIDATES).detach()
    normalized = projection_penalties(net, CANDIDATES, normalize=True).detach()
    expected = torch.tensor([r / (size - rank) for r, (size, rank) in zip(raw.tolist(), dims)])
    torch.testing.assert_close(normalized, expected.double())
    reg = MixedSymmetryRegularizer(CANDIDATES, normalize=True)
    x = torch.randn(4, 4, dtype=torch.float64)
    torch.testing.assert_close(reg(_ctx(net, x)).loss, normalized.sum())
    with pytest.raises(ValueError, match="normalize"):
        MixedSymmetryRegularizer(CANDIDATES, form="sample", normalize=True)


def test_penalty_of_bfloat16_networks_replaced_layers_and_no_constrained_rows() -> None:
    """A bfloat16 network is penalized in float32 (no 16-bit sparse CPU kernels) with values
    and gradients in bfloat16; a layer replaced after the first call is the one penalized; and a
    network every group leaves unconstrained has zero penalties and gradients."""
    net = _net().float()
    reference = projection_penalties(net, CANDIDATES).detach()
    half = net.bfloat16()
    values = projection_penalties(half, CANDIDATES)
    assert values.dtype == torch.bfloat16
    torch.testing.assert_close(values.float().detach(), reference, rtol=2e-2, atol=1e-2)
    values.sum().backward()
    assert all(p.grad.dtype == torch.bfloat16 for p in half.parameters())

    net = _net()
    before = projection_penalties(net, CANDIDATES).detach()
    old = net.blocks[0]["linear"]
    net.blocks[0]["linear"] = RepLinear(old.rep_in, old.rep_out).double()
    with torch.no_grad():
        net.blocks[0]["linear"].weight.copy_(2 * old.weight)
        net.blocks[0]["linear"].bias.copy_(2 * old.bias)
    after = projection_penalties(net, CANDIDATES).detach()
    expected = before.clone()
    for k, name in enumerate(CANDIDATES):  # R_g is quadratic: the layer's share is 4 times
        share = 0.0
        for param, rep_in in ((old.weight, old.rep_in), (old.bias, Scalar)):
            dense = equivariant_projector(get_group(name), old.rep_out, rep_in).matrix()
            w = param.detach().reshape(-1)
            share += 0.5 * float((w - dense @ w).square().sum())
        expected[k] += 3 * share
    torch.testing.assert_close(after, expected)

    scalars = EquivariantMLP([3], [1], hidden=(4,), num_blocks=1, bilinear=(2, 0)).double()
    values = projection_penalties(scalars, ["o3", "o2_z"])
    assert values.tolist() == [0.0, 0.0]
    values.sum().backward()
    assert all(float(p.grad.abs().sum()) == 0.0 for p in scalars.parameters())


@pytest.mark.parametrize("group", ["o3", "o2_z", "so3_scaling"])
def test_zero_for_equivariant_positive_otherwise(group: str) -> None:
    x = torch.randn(16, 8, dtype=torch.float64)
    hard, free = _net("equivariant", group), _net("free")
    if group == "so3_scaling":  # scale-equivariance admits no vector -> scalar maps at all
        hard = EquivariantMLP(
            [0, 2],
            [0, 1],
            hidden=(4, 3, 1),
            num_blocks=2,
            mode="equivariant",
            group=group,
            bilinear=(2, 2),
        ).double()
        free = EquivariantMLP([0, 2], [0, 1], hidden=(4, 3, 1), num_blocks=2).double()
        x = torch.randn(16, 6, dtype=torch.float64)
    proj, sample = (
        ProjectionEquivarianceRegularizer(group),
        SampleEquivarianceRegularizer(group, num_samples=2),
    )
    assert float(proj(_ctx(hard, x)).loss.detach()) < 1e-20
    assert float(sample(_ctx(hard, x)).loss.detach()) < 1e-18
    free_proj = proj(_ctx(free, x)).loss
    free_sample = sample(_ctx(free, x)).loss
    assert float(free_proj.detach()) > 1e-3 and float(free_sample.detach()) > 1e-6
    (free_proj + free_sample).backward()
    grads = [p.grad for p in free.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_sample_penalty_against_explicit_formula() -> None:
    net = PlainMLP([0, 2], [0, 1], width=8, num_layers=2).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    group = get_group("o3")
    gen = torch.Generator().manual_seed(3)
    value = sample_penalty(net, x, group, net.rep_in, net.rep_out, generator=gen)
    g = group.sample(5, torch.Generator().manual_seed(3), torch.float64)
    gx = torch.einsum("nij,nkj->nki", g, x.reshape(5, 2, 3)).reshape(5, 6)
    expected = (net(gx) - torch.einsum("nij,nj->ni", g, net(x))).square().sum(-1).mean()
    torch.testing.assert_close(value, expected)


def test_mixed_regularizer_loss_logs_and_oneshot_rule() -> None:
    net = _net()
    reg = MixedSymmetryRegularizer(
        CANDIDATES, init_strength=[0.0, 2.0, 2.0], adjust_at=3, window=2, exponent=2.0
    )
    x = torch.randn(8, 8, dtype=torch.float64)
    out = reg(_ctx(net, x))
    expected = 2.0 * projection_penalties(net, CANDIDATES)[1:].sum()
    torch.testing.assert_close(out.loss, expected)
    assert set(out.logs) >= {"strength_o3", "strength_o2_z", "R_o2_x"}
    assert float(reg(_ctx(net, x, "val")).loss) == 0.0  # only training is regularized
    # hand-fed epoch statistics: the windowed minimum decides (R_o2_x = 4, R_o2_z = 1)
    reg.epoch_sum.zero_()
    reg.epoch_count.zero_()
    for values in ([9.0, 8.0, 3.0], [9.0, 4.0, 1.0], [9.0, 6.0, 2.0]):
        reg.epoch_sum.copy_(torch.tensor(values, dtype=torch.float64))
        reg.epoch_count.fill_(1.0)
        reg.on_train_epoch_end(None)
    torch.testing.assert_close(
        reg.strengths, torch.tensor([0.0, 2.0 * (1.0 / 4.0) ** 2, 2.0], dtype=torch.float64)
    )
    assert int(reg.adjustments) == 1
    state = reg.state_dict()  # strengths are checkpointed buffers
    assert {"strengths", "history", "epochs_seen"} <= set(state)
    # the loss and the logs follow the strengths wherever they change (adjustment, loading)
    penalties = projection_penalties(net, CANDIDATES).detach()
    out = reg(_ctx(net, x))
    torch.testing.assert_close(out.loss, (reg.strengths * penalties).sum())
    assert float(out.logs["strength_o2_x"]) == float(reg.strengths[1])
    state["strengths"] = torch.tensor([0.0, 5.0, 7.0], dtype=torch.float64)
    reg.load_state_dict(state)
    out = reg(_ctx(net, x))
    torch.testing.assert_close(out.loss, (state["strengths"] * penalties).sum())
    assert float(out.logs["strength_o2_z"]) == 7.0


def test_mixed_regularizer_trains_after_an_inference_mode_validation() -> None:
    """Lightning validates under ``torch.inference_mode`` (its sanity check before the first
    training step too): the strengths read there must not enter the training loss's graph."""
    torch.manual_seed(0)
    net = EquivariantMLP([1, 1], [0, 0, 1], hidden=(2, 1, 1), num_blocks=1, bilinear=(1, 1))
    reg = MixedSymmetryRegularizer(CANDIDATES, init_strength=[1.0, 2.0, 3.0])
    x = torch.randn(4, net.rep_in.size(3))
    with torch.inference_mode():
        logs = reg(_ctx(net, x, stage="val")).logs
    assert float(logs["strength_o2_z"]) == 3.0
    out = reg(_ctx(net, x))
    out.loss.backward()
    expected = (reg.strengths * projection_penalties(net, CANDIDATES).detach()).sum()
    torch.testing.assert_close(out.loss.detach(), expected.float())
    assert all(p.grad is not None for p in net.parameters())


def test_normalized_penalties_train_after_an_inference_mode_call() -> None:
    """The operator's cached matrix and scales, first built under ``torch.inference_mode``
    (a validation-time log of ``R_g``), still enter a training step's graph."""
    torch.manual_seed(0)
    net = EquivariantMLP([1, 1], [0, 0, 1], hidden=(2, 1, 1), num_blocks=1, bilinear=(1, 1))
    with torch.inference_mode():
        logged = projection_penalties(net, CANDIDATES, normalize=True)
    values = projection_penalties(net, CANDIDATES, normalize=True)
    torch.testing.assert_close(values.detach(), logged.clone())
    values.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


class _Toy(nn.Module):
    """One linear map R^3 -> R^3 (a RepLinear, so both regularizer forms apply)."""

    def __init__(self) -> None:
        super().__init__()
        self.rep_in, self.rep_out, self.dim = Vector, Vector, 3
        self.layer = RepLinear(Vector, Vector)

    def rep_linears(self):
        yield self.layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


@pytest.mark.parametrize(
    ("form", "schedule"), [("projection", "oneshot"), ("sample", "continuous")]
)
def test_auto_tuning_ranks_the_exact_symmetry_first(form: str, schedule: str) -> None:
    """Targets y = diag(1, 1, 2) x commute with O(2) about z, not with O(2) about x."""
    torch.manual_seed(0)
    target = torch.diag(torch.tensor([1.0, 1.0, 2.0]))
    net = _Toy()
    with torch.no_grad():  # start equivariant to both: only the data can break a symmetry
        net.layer.weight.zero_()
    reg = MixedSymmetryRegularizer(
        ["o2_x", "o2_z"],
        init_strength=1.0,
        form=form,
        schedule=schedule,
        adjust_at=6,
        window=3,
        rate=0.5,
    )
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _epoch in range(12):
        for _ in range(4):
            x = torch.randn(64, 3)
            out = net(x)
            loss = (out - x @ target.T).square().mean() + reg(
                StepContext(inputs=x, targets=None, outputs=out, network=net)
            ).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        reg.on_train_epoch_end(None)
    strengths = reg.strength_dict()
    assert strengths["o2_z"] == pytest.approx(1.0)
    assert strengths["o2_z"] > 3 * strengths["o2_x"]


def test_rpp_prior() -> None:
    net = _net("rpp", "o3")
    x = torch.randn(4, 8, dtype=torch.float64)
    out = ResidualPathwayPrior(equiv_wd=0.1, basic_wd=2.0)(_ctx(net, x))
    layers = list(net.rep_linears())
    equiv = sum(l.weight.square().sum() + l.bias.square().sum() for l in layers)
    basic = sum(l.weight_free.square().sum() + l.bias_free.square().sum() for l in layers)
    torch.testing.assert_close(out.loss, 0.1 * equiv + 2.0 * basic)
    with pytest.raises(TypeError, match="mode='rpp'"):
        ResidualPathwayPrior()(_ctx(_net(), x))


def test_errors_are_explicit() -> None:
    with pytest.raises(TypeError, match="rep_linears"):
        projection_penalties(PlainMLP([0, 1], [0, 1]), ["o3"])
    with pytest.raises(ValueError, match="one per group"):
        MixedSymmetryRegularizer(["o3", "so3"], init_strength=[1.0])
    with pytest.raises(ValueError, match="form"):
        MixedSymmetryRegularizer(["o3"], form="other")


def _ddp_worker(rank: int, world: int, port: int, path: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # same network on both ranks
    net = PlainMLP([0, 2], [0, 1], width=8, num_layers=2)
    reg = MixedSymmetryRegularizer(["o3", "o2_z"], form="sample", adjust_at=2, window=2)
    torch.manual_seed(100 + rank)  # different data (and group samples) per rank
    local = []
    for _epoch in range(3):
        x = torch.randn(32, 6) * (1 + rank)
        out = reg(StepContext(inputs=x, targets=None, outputs=net(x), network=net))
        local.append(float(out.logs["R_o2_z"]))
        reg.on_train_epoch_end(None)
    torch.save(
        {"strengths": reg.strengths, "history": reg.history, "local": local},
        os.path.join(path, f"rank{rank}.pt"),
    )
    dist.destroy_process_group()


def _ddp_fast_path_worker(rank: int, world: int, port: int, path: str) -> None:
    """The fast path under DDP: rank shards of TensorBatches, a DDP-wrapped free EMLP, the fused
    projection penalty and a sample-form term, strengths tuned from all-reduced statistics."""
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # the same data, network and permutations on both ranks
    x = torch.randn(40, 8)
    y = torch.randn(40, 12)  # one vector and one rank-2 tensor per example
    net = EquivariantMLP([2, 2], [0, 1, 1], hidden=(4, 3, 1), num_blocks=1, bilinear=(2, 2))
    model = nn.parallel.DistributedDataParallel(net)
    proj = MixedSymmetryRegularizer(CANDIDATES, init_strength=[0.0, 1.0, 1.0], adjust_at=2)
    sample = MixedSymmetryRegularizer(CANDIDATES, form="sample", adjust_at=2, name="sample")
    batches = TensorBatches(x, y, batch_size=8, shuffle=True, rank=rank, world_size=world)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    seen, local = [], []
    torch.manual_seed(1)
    for _epoch in range(3):
        for xb, yb in batches:
            seen.append(xb)
            out = model(xb)
            ctx = StepContext(inputs=xb, targets=yb, outputs=out, network=net)
            sample_out = sample(ctx)
            local.append(float(sample_out.logs["R_o2_z"]))
            loss = (out - yb).square().mean() + proj(ctx).loss + sample_out.loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        proj.on_train_epoch_end(None)
        sample.on_train_epoch_end(None)
    torch.save(
        {
            "strengths": [proj.strengths, sample.strengths],
            "params": torch.cat([p.detach().flatten() for p in net.parameters()]),
            "seen": torch.cat(seen[: len(batches)]),
            "local": local,
        },
        os.path.join(path, f"rank{rank}.pt"),
    )
    # DDP's reducer holds the process group: freed after destroy_process_group, it would join the
    # gloo threads while holding the GIL that a finishing broadcast of theirs may need (deadlock)
    del model
    gc.collect()
    dist.destroy_process_group()


def test_ddp_fast_path_keeps_identical_strengths(free_port: int) -> None:
    with tempfile.TemporaryDirectory() as path:
        mp.spawn(_ddp_fast_path_worker, args=(2, free_port, path), nprocs=2, join=True)
        r0, r1 = (torch.load(os.path.join(path, f"rank{r}.pt")) for r in (0, 1))
    # each rank trained on its own half of the epoch ...
    assert len(r0["seen"]) == len(r1["seen"]) == 20
    assert not (r0["seen"][:, None] == r1["seen"][None]).all(-1).any()
    assert r0["local"] != r1["local"]
    # ... with averaged gradients (identical networks) and identical tuned strengths
    assert torch.equal(r0["params"], r1["params"])
    for a, b in zip(r0["strengths"], r1["strengths"]):
        assert torch.equal(a, b)
        assert float(a[1]) < 1.0 or float(a[2]) < 1.0  # an adjustment happened


def test_ddp_two_gloo_processes_keep_identical_strengths(free_port: int) -> None:
    with tempfile.TemporaryDirectory() as path:
        mp.spawn(_ddp_worker, args=(2, free_port, path), nprocs=2, join=True)
        r0, r1 = (torch.load(os.path.join(path, f"rank{r}.pt")) for r in (0, 1))
    assert r0["local"] != r1["local"]  # the ranks saw different penalties ...
    assert torch.equal(r0["history"], r1["history"])  # ... but share the epoch statistics
    assert torch.equal(r0["strengths"], r1["strengths"])
    assert float(r0["strengths"][0]) < 1.0  # and an adjustment happened
