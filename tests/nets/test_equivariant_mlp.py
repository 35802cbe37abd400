"""EMLP-like networks: exact equivariance of the hard model for several groups (float64,
transformed inputs), the free model is not equivariant, RPP reduces to the hard model."""

from __future__ import annotations

import pytest
import torch

from geozoo.groups.representations import get_group
from geozoo.nets.equivariant_mlp import EquivariantMLP, PlainMLP, RepLinear, as_rep
from geozoo.zoo import create_model


def _equivariance_error(net, group: str, n: int = 6) -> float:
    g = get_group(group).sample(n, torch.Generator().manual_seed(0), torch.float64)
    x = torch.randn(
        n, net.rep_in.size(3), generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    with torch.no_grad():
        lhs = net(net.rep_in.act(g, x))
        rhs = net.rep_out.act(g, net(x))
    return float((lhs - rhs).abs().max() / rhs.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize(
    ("group", "rep_in", "rep_out"),
    [
        ("o3", [5, 5], [0, 0, 1]),
        ("o2_z", [5, 5], [0, 0, 1]),
        ("so3", [0, 3], [1, 1, 1]),
        ("o2_x", [0, 6], [0, 6]),
        ("s3", [2, 2], [1, 1]),  # permutations of the three coordinates
    ],
)
def test_hard_model_is_exactly_equivariant(group, rep_in, rep_out) -> None:
    torch.manual_seed(0)
    net = EquivariantMLP(
        rep_in,
        rep_out,
        hidden=(6, 4, 2),
        num_blocks=2,
        mode="equivariant",
        group=group,
        bilinear=(2, 2),
    ).double()
    assert _equivariance_error(net, group) < 1e-10
    free = EquivariantMLP(rep_in, rep_out, hidden=(6, 4, 2), num_blocks=2).double()
    assert _equivariance_error(free, group) > 1e-3


def test_scale_equivariant_model_preserves_tensor_ranks() -> None:
    torch.manual_seed(0)
    net = EquivariantMLP(
        [1, 2],
        [1, 1, 1],
        hidden=(4, 3, 2),
        num_blocks=2,
        mode="equivariant",
        group="so3_scaling",
        bilinear=(2, 2),
    ).double()
    assert _equivariance_error(net, "so3_scaling") < 1e-10


def test_rpp_without_free_path_is_the_hard_model() -> None:
    torch.manual_seed(0)
    net = EquivariantMLP(
        [5, 5], [0, 0, 1], hidden=(4, 2, 1), num_blocks=1, mode="rpp", group="o2_z", bilinear=(2, 2)
    ).double()
    assert _equivariance_error(net, "o2_z") > 1e-8  # the free path breaks it slightly
    with torch.no_grad():
        for layer in net.rep_linears():
            layer.weight_free.zero_()
            layer.bias_free.zero_()
    assert _equivariance_error(net, "o2_z") < 1e-10


def test_shapes_registry_and_errors() -> None:
    net = create_model("emlp", hidden=[4, 2, 1], num_blocks=1)
    assert net(torch.randn(7, 20)).shape == (7, 9)
    mlp = create_model("plain_mlp", width=16)
    assert isinstance(mlp, PlainMLP) and mlp(torch.randn(3, 20)).shape == (3, 9)
    with pytest.raises(ValueError, match=r"inputs \(\.\.\., 20\)"):
        net(torch.randn(2, 19))
    with pytest.raises(ValueError, match="needs a group"):
        EquivariantMLP([1], [1], mode="equivariant")
    with pytest.raises(ValueError, match="multiplicities"):
        as_rep([-1, 2])


@pytest.mark.parametrize("mode", ["free", "equivariant"])
def test_bilinear_on_symmetric_products_is_the_outer_product_map(mode) -> None:
    """The layer sees s_i s_j for i <= j with folded weights: the same map (and the same weight
    gradients) as its weight applied to the full outer product in the product rep's layout."""
    from geozoo.groups.representations import tensor_product_order
    from geozoo.nets.equivariant_mlp import RepBilinear

    torch.manual_seed(0)
    rep = as_rep([3, 2, 1])
    layer = RepBilinear(rep, rep, scalars=2, vectors=2, mode=mode, group="o3").double()
    x = torch.randn(5, rep.size(3), dtype=torch.float64)
    sub = torch.cat([x[:, a:b] for a, b in layer.ranges], dim=-1)
    outer = (sub[:, :, None] * sub[:, None, :]).flatten(1)
    order = tensor_product_order(layer.sub_rep, layer.sub_rep, 3)
    weight, bias = layer.linear.effective_weight(), layer.linear.effective_bias()
    reference = torch.nn.functional.linear(outer[:, order], weight, bias)
    assert layer.folded_weight().shape[1] == sub.shape[1] * (sub.shape[1] + 1) // 2
    out = layer(x)
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)
    (g_fast,) = torch.autograd.grad(out.square().sum(), layer.linear.weight)
    (g_ref,) = torch.autograd.grad(reference.square().sum(), layer.linear.weight)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rep", [[3, 2, 1], [0, 2], as_rep([0, 1]) + as_rep([2])])
def test_gate_is_silu_on_scalars_and_sigmoid_gates_elsewhere(rep) -> None:
    from geozoo.nets.equivariant_mlp import GatedNonlinearity

    gate = GatedNonlinearity(as_rep(rep))
    x = torch.randn(4, gate.input_rep.size(3))
    values, gates = x[:, : gate.size], x[:, gate.size :]
    spread = torch.sigmoid(gates)[:, gate.gate_index]
    masked = torch.where(gate.scalar_mask, torch.nn.functional.silu(values), values * spread)
    torch.testing.assert_close(gate(x), masked)


def test_hard_bilinear_layers_keep_every_candidate_symmetry() -> None:
    """``bilinear_group`` (Kim et al.'s SoftEMLP): bilinear layers equivariant to the largest
    group, left out of ``rep_linears()``; with the free layers projected, the whole network is
    equivariant."""
    from geozoo.groups.projection import equivariant_projector

    torch.manual_seed(0)
    kwargs = {"hidden": (4, 3, 1), "num_blocks": 2, "bilinear": (2, 2)}
    net = EquivariantMLP([5, 5], [0, 0, 1], bilinear_group="o3", **kwargs).double()
    layers = list(net.rep_linears())
    assert len(layers) == 3 and all(layer.mode == "free" for layer in layers)
    assert len(list(EquivariantMLP([5, 5], [0, 0, 1], **kwargs).rep_linears())) == 5
    assert _equivariance_error(net, "o2_z") > 1e-3
    with torch.no_grad():
        for layer in layers:
            projector = equivariant_projector(get_group("o2_z"), layer.rep_out, layer.rep_in)
            layer.weight.copy_(projector(layer.weight))
            layer.bias.copy_(projector.project_bias(layer.bias))
    assert _equivariance_error(net, "o2_z") < 1e-10


@pytest.mark.parametrize(
    ("mode", "bilinear_group"), [("equivariant", None), ("rpp", None), ("free", "o3")]
)
def test_fused_projections_match_the_layers_own(mode, bilinear_group) -> None:
    """All projections of a forward pass come from one sparse product; each layer's
    ``effective_weight()`` / ``effective_bias()`` (its own projector) gives the same network."""
    torch.manual_seed(0)
    group = None if mode == "free" else "o2_z"
    net = EquivariantMLP(
        [5, 5],
        [0, 0, 1],
        hidden=(4, 3, 1),
        num_blocks=2,
        mode=mode,
        group=group,
        bilinear=(2, 2),
        bilinear_group=bilinear_group,
    )
    x = torch.randn(6, 20)
    h = x
    for block in net.blocks:
        lin = block["linear"](h)
        h = block["gate"](lin + block["bilinear"](lin))
    reference = net.head(h)
    torch.testing.assert_close(net(x), reference, rtol=1e-6, atol=1e-6)
    grads = torch.autograd.grad(net(x).square().sum(), list(net.parameters()))
    ref_grads = torch.autograd.grad(reference.square().sum(), list(net.parameters()))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)


def _modules_forward(net: EquivariantMLP, x: torch.Tensor) -> torch.Tensor:
    """The network as its modules compose, batch-major and through autograd (the reference for
    the fused feature-major blocks)."""
    h = x
    for block in net.blocks:
        lin = block["linear"](h)
        h = block["gate"](lin + block["bilinear"](lin))
    return net.head(h)


@pytest.mark.parametrize("hidden", [(4, 3, 1), (5, 0, 0), (0, 2, 1)])
def test_fused_blocks_are_the_modules_map_with_their_gradients(hidden) -> None:
    """float64: the fused blocks give the modules' outputs and the same gradients for every
    parameter and the inputs (leading batch axes kept), and pass gradcheck; they refuse a second
    derivative, which ``fused=False`` (the same map) allows."""
    torch.manual_seed(0)
    net = EquivariantMLP([2, 2], [1, 1, 1], hidden=hidden, num_blocks=2, bilinear=(2, 2)).double()
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    out, reference = net(x), _modules_forward(net, x)
    assert out.shape == (2, 3, 13)
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)
    target = torch.randn_like(out)
    params = [x, *net.parameters()]
    grads = torch.autograd.grad((out * target).sum(), params)
    ref_grads = torch.autograd.grad((reference * target).sum(), params)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)
    small = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(net, (small,))
    (g,) = torch.autograd.grad(net(small).square().sum(), small, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.sum().backward()
    # a loss linear in the outputs hands the network a constant gradient: torch's generic error
    (g,) = torch.autograd.grad(net(small).sum(), small, create_graph=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        g.sum().backward()
    net.fused = False
    torch.testing.assert_close(net(x), reference, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradgradcheck(net, (small,))


def test_fused_network_refuses_an_input_changed_in_place() -> None:
    """The fused network saves its input and intermediates through ``save_for_backward``, so an
    in-place change of the input between the forward and backward passes raises, as with the
    modules, instead of silently giving wrong gradients; and backward frees what it saved."""
    torch.manual_seed(0)
    net = EquivariantMLP([2, 2], [1, 1, 1], hidden=(4, 3, 1), num_blocks=2, bilinear=(2, 2))
    x = torch.randn(5, 8)
    out = net(x)
    x.mul_(3)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
    out = net(torch.randn(5, 8))
    out.sum().backward()
    with pytest.raises(RuntimeError, match="after they have already been freed"):
        out.sum().backward()


def test_fused_blocks_take_an_empty_batch() -> None:
    """An empty batch (e.g. the last, empty shard of a split) gives an empty output and zero
    gradients, as the modules' composition does."""
    torch.manual_seed(0)
    net = EquivariantMLP([2, 2], [1, 1, 1], hidden=(4, 3, 1), num_blocks=2, bilinear=(2, 2))
    x = torch.zeros(0, 8, requires_grad=True)
    out = net(x)
    assert out.shape == (0, 13)
    out.sum().backward()
    assert x.grad.shape == (0, 8)
    assert all(float(p.grad.abs().sum()) == 0.0 for p in net.parameters())


def test_fused_network_trains_under_autocast() -> None:
    """Mixed precision (Lightning's ``bf16-mixed``: CPU autocast to bfloat16) gives the modules'
    outputs and float32 gradients, fused or not."""
    torch.manual_seed(0)
    net = EquivariantMLP([2, 2], [1, 1, 1], hidden=(4, 3, 1), num_blocks=2, bilinear=(2, 2))
    x = torch.randn(5, 8)
    grads = []
    for fused in (False, True):
        net.fused = fused
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x)
        assert out.dtype == torch.bfloat16
        grads.append(torch.autograd.grad(out.float().square().sum(), list(net.parameters())))
    for g, r in zip(*grads):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, r)


def test_hard_network_runs_in_bfloat16() -> None:
    """The projections of 16-bit weights run in float32 (the CPU sparse kernels have no bf16
    version) and come back in the weights' dtype: the hard model's map, rounded."""
    torch.manual_seed(0)
    net = EquivariantMLP(
        [2, 2], [1, 1, 1], hidden=(4, 3, 1), num_blocks=2, mode="equivariant", group="o3"
    )
    x = torch.randn(5, 8)
    reference = net(x)
    half = net.bfloat16()
    assert half.head.effective_weight().dtype == torch.bfloat16
    out = half(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.05)
    out.float().square().sum().backward()
    assert all(p.grad.dtype == torch.bfloat16 for p in half.parameters())


def test_a_replaced_layer_is_used_or_refused_with_what_was_expected() -> None:
    """A layer replaced after construction by one of the same kind and representations takes
    part in the fused network (the modules' map, the new layer's parameters); anything else is
    refused, naming the place, what it expected and what it got."""
    torch.manual_seed(0)
    net = EquivariantMLP([2, 2], [1, 1, 1], hidden=(4, 3, 1), num_blocks=2, bilinear=(2, 2))
    net = net.double()
    old = net.blocks[1]["linear"]
    new = RepLinear(old.rep_in, old.rep_out).double()
    net.blocks[1]["linear"] = new
    x = torch.randn(4, 8, dtype=torch.float64)
    torch.testing.assert_close(net(x), _modules_forward(net, x), rtol=1e-12, atol=1e-12)
    assert new in list(net.rep_linears()) and old not in list(net.rep_linears())
    net(x).sum().backward()
    assert new.weight.grad is not None and old.weight.grad is None
    # a hard layer in a free network's place is projected with the others
    bilinear = net.blocks[0]["bilinear"]
    hard = RepLinear(
        bilinear.linear.rep_in, bilinear.linear.rep_out, mode="equivariant", group="o3"
    )
    bilinear.linear = hard.double()
    torch.testing.assert_close(net(x), _modules_forward(net, x), rtol=1e-12, atol=1e-12)
    net.blocks[1]["linear"] = RepLinear(old.rep_out, old.rep_in)
    with pytest.raises(ValueError, match=r"blocks\[1\]\['linear'\] must be a RepLinear for .* got"):
        net(x)
    net.blocks[1]["linear"] = new
    net.head = torch.nn.Linear(19, 12)
    with pytest.raises(ValueError, match=r"head must be a RepLinear for .* got Linear"):
        net(x)
    net.head = RepLinear(net.hidden, net.rep_out).double()
    net.blocks[0]["gate"] = torch.nn.SiLU()
    with pytest.raises(ValueError, match=r"blocks\[0\]\['gate'\] must be a GatedNonlinearity"):
        net(x)
