"""SteerableCNN symmetry: a D_N trunk whose head pools over the rotations C_N
only, so logits are rotation-invariant but tell a digit from its mirror image."""

from __future__ import annotations

import pytest
import torch

import geozoo
from geozoo.nets.steerable import SteerableCNN
from geozoo.nn import FiberPool
from geozoo.testing import assert_equivariant, equivariance_error, flip, rot90

SMALL = {"widths": (2, 3, 4), "kernel_sizes": (5, 3, 3), "pools": (True, True, False)}


def test_fiber_pool_blocks_pool_each_run_separately():
    x = torch.arange(2 * 8, dtype=torch.float64).reshape(1, 16, 1, 1)
    pooled = FiberPool(8, "max", blocks=2)(x)
    assert pooled.flatten().tolist() == [3.0, 7.0, 11.0, 15.0]
    assert FiberPool(8, "mean")(x).flatten().tolist() == [3.5, 11.5]
    with pytest.raises(ValueError, match="blocks must divide the group order 8"):
        FiberPool(8, blocks=3)


@pytest.fixture(scope="module")
def d4_nets():
    pytest.importorskip("escnn")
    torch.manual_seed(0)
    nets = {}
    for invariance in ("group", "rotations"):
        net = SteerableCNN(group="d4", invariance=invariance, **SMALL)
        net.train()
        with torch.no_grad():
            net(torch.rand(16, 1, 28, 28))
        nets[invariance] = net.eval()
    return nets


def test_rotation_invariant_but_not_mirror_invariant(d4_nets):
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    quarter_turns = [rot90(k) for k in (1, 2, 3)]
    for net in d4_nets.values():
        assert_equivariant(net, x, quarter_turns, tolerance=1e-5)
    assert_equivariant(d4_nets["group"], x, flip(), tolerance=1e-5)
    # the restricted head keeps the two mirror halves of each fiber apart
    assert equivariance_error(d4_nets["rotations"], x, flip()).max > 1e-3


def test_restricted_head_exports_and_checks_its_argument(d4_nets):
    net = d4_nets["rotations"]
    assert net.head[-1].in_features == 2 * SMALL["widths"][-1]
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(net.export()(x), net(x), atol=1e-5)
    with pytest.raises(ValueError, match="invariance must be 'group' or 'rotations'"):
        SteerableCNN(group="c8", invariance="reflections", exported=True)


def test_pooling_an_odd_size_is_refused_and_padding_fixes_it():
    four_blocks = {
        "widths": (2, 3, 4, 5),
        "kernel_sizes": (5, 3, 3, 3),
        "pools": (True, True, True, False),
    }
    with pytest.raises(ValueError, match="block 2 pools a 7x7 map"):
        SteerableCNN(group="c8", exported=True, **four_blocks)
    with pytest.raises(ValueError, match="square input"):
        SteerableCNN(group="c8", input_size=(28, 32), exported=True, **SMALL)
    pytest.importorskip("escnn")
    net = SteerableCNN(group="c8", padding=2, **four_blocks).eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    assert_equivariant(net, x, [rot90(k) for k in (1, 2, 3)], tolerance=1e-5)


@pytest.mark.parametrize("name", ["steerable_c8_rotmnist", "steerable_d4_rotmnist"])
def test_published_entries_are_invariant_to_quarter_turns(name):
    model = geozoo.create_model(name, pretrained=True)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    assert_equivariant(model, x, [rot90(k) for k in (1, 2, 3)])  # the float32 default budget
