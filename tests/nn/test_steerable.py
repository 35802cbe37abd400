"""escnn blocks: equivariance through geozoo.testing with escnn's own representation matrices,
export, the fiber pool, and the cache location."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("escnn")

from geozoo.nn import steerable
from geozoo.nn.steerable import (
    FiberPool,
    SteerableConvBlock,
    fiber_size,
    field_type,
    import_escnn,
    steerable_gspace,
)
from geozoo.testing import _copy_module, assert_equivariant, fiber_transform, flip, rot90

# escnn samples its kernel bases in float32, so a float64 evaluation of a block still carries
# float32 rounding of the basis: the float64 bound is a measured budget (~2e-7 observed), not 1e-9.
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-6}


def _block(group: str, kind: str, fields: int = 2, pool: bool = False):
    escnn = import_escnn()
    torch.manual_seed(0)
    gspace = steerable_gspace(group, max_frequency=2)
    in_type = field_type(gspace, 1, "trivial")
    block = SteerableConvBlock(in_type, fields, kind, 5, pool=pool, max_frequency=2)
    block.train()
    block(escnn.nn.GeometricTensor(torch.randn(8, 1, 12, 12), in_type))  # non-trivial BN stats
    return escnn, gspace, in_type, block.eval()


def _as_function(escnn, block, in_type):
    # escnn shares basis-expansion submodules between layers with the same basis (a global
    # cache), so cast a deep copy: casting the block in place would change other blocks too
    copies = {}

    def fn(x):
        if x.dtype not in copies:
            copies[x.dtype] = _copy_module(block).to(x.dtype)
        return copies[x.dtype](escnn.nn.GeometricTensor(x, in_type)).tensor

    return fn


def _rho(block, element) -> torch.Tensor:
    return torch.as_tensor(np.asarray(block.out_type.representation(element)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "group, kind, element",
    [
        ("c8", "regular", 2),  # element 2 of C8 = 90 degrees
        ("d4", "regular", (0, 1)),  # (no flip, one quarter turn)
        ("so2", "irreps", np.pi / 2),
    ],
)
def test_blocks_are_equivariant_to_quarter_turns(group, kind, element, dtype):
    escnn, gspace, in_type, block = _block(group, kind, pool=group != "so2")
    g = gspace.fibergroup.element(element)
    x = torch.randn(3, 1, 12, 12, dtype=dtype)
    fn = _as_function(escnn, block, in_type)
    result = assert_equivariant(
        fn,
        x,
        rot90(1),
        fiber_transform(rot90(1), _rho(block, g)),
        dtype=dtype,
        tolerance=TOLERANCE[dtype],
    )
    assert result.dtype == dtype
    # the wrong fiber action (identity on channels) must fail: the check has teeth
    with pytest.raises(AssertionError):
        assert_equivariant(fn, x, rot90(1), rot90(1), dtype=dtype)


def test_d4_block_reflection_is_horizontal_flip():
    escnn, gspace, in_type, block = _block("d4", "regular")
    g = gspace.fibergroup.element((1, 0))
    x = torch.randn(3, 1, 12, 12)
    fn = _as_function(escnn, block, in_type)
    assert_equivariant(
        fn,
        x,
        flip("horizontal"),
        fiber_transform(flip("horizontal"), _rho(block, g)),
        dtype=torch.float32,
        tolerance=TOLERANCE[torch.float32],
    )


def test_export_gives_the_same_function_and_regular_fibers_are_permuted():
    escnn, gspace, in_type, block = _block("c8", "regular", pool=True)
    plain = block.export()
    assert not any("escnn" in type(m).__module__ for m in plain.modules())
    x = torch.randn(4, 1, 12, 12)
    with torch.no_grad():
        expected = block(escnn.nn.GeometricTensor(x, in_type)).tensor
        assert torch.allclose(plain(x), expected, atol=1e-6)
    # the regular representation is a permutation matrix, so FiberPool is invariant
    rho = _rho(block, gspace.fibergroup.element(1))
    perm = rho.round()
    assert torch.allclose(rho, perm, atol=1e-12)
    assert torch.equal(perm.sum(0), torch.ones(len(rho), dtype=rho.dtype)) and perm.min() == 0
    assert fiber_size(gspace) == 8
    block.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        block.export()


def test_fiber_pool_against_loop_and_invariance():
    x = torch.randn(2, 12, 3, 3)
    pooled = FiberPool(4)(x)
    reference = torch.stack([x[:, 4 * f : 4 * f + 4].max(1).values for f in range(3)], 1)
    assert torch.equal(pooled, reference)
    shift = torch.cat([torch.roll(torch.arange(4), 1) + 4 * f for f in range(3)])
    assert torch.equal(FiberPool(4)(x[:, shift]), pooled)
    assert torch.allclose(FiberPool(4, "mean")(x), x.reshape(2, 3, 4, 3, 3).mean(2))
    with pytest.raises(ValueError, match="divisible by the group order 5"):
        FiberPool(5)(x)


def test_bad_arguments():
    gspace = steerable_gspace("c4")
    with pytest.raises(ValueError, match=r"unknown group 'x3'.*c<N>, d<N>"):
        steerable_gspace("x3")
    with pytest.raises(ValueError, match="'cN', 'dN'"):
        steerable_gspace("gl2")  # a group, but not one of escnn's planar ones
    with pytest.raises(ValueError, match="finite group"):
        field_type(steerable_gspace("so2"), 1, "regular")
    with pytest.raises(ValueError, match="odd"):
        SteerableConvBlock(field_type(gspace, 1, "trivial"), 2, kernel_size=4)


def test_escnn_cache_goes_where_asked_and_escnn_keeps_its_setting(tmp_path):
    code = (
        "import os\n"
        "from geozoo.nn.steerable import import_escnn\n"
        "escnn = import_escnn()\n"
        "import escnn.group._clebsh_gordan as cg\n"
        "import escnn.group.irrep as irrep\n"
        "print(cg.cache.location)\n"
        "print(irrep.cache.location)\n"
        "print(escnn.group.__cache_path__)\n"
        "print(os.path.join(os.path.dirname(escnn.group.__file__), '_cache'))\n"
    )
    env = {**os.environ, "GEOZOO_ESCNN_CACHE": str(tmp_path / "escnn-cache")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    cg_location, irrep_location, cache_path, default = out.stdout.strip().splitlines()[-4:]
    assert cg_location.startswith(str(tmp_path / "escnn-cache")), cg_location
    assert irrep_location.startswith(str(tmp_path / "escnn-cache")), irrep_location
    assert cache_path == default  # escnn's attribute is restored after the import


def test_cache_location_keeps_escnns_own_unless_read_only_or_asked(tmp_path, monkeypatch):
    package = tmp_path / "escnn"
    (package / "group").mkdir(parents=True)
    monkeypatch.delenv("GEOZOO_ESCNN_CACHE", raising=False)
    assert steerable._cache_location(package) is None  # writable: escnn's own
    monkeypatch.setattr(steerable.os, "access", lambda path, mode: False)  # read-only install
    assert steerable._cache_location(package) == steerable.escnn_cache_dir()
    monkeypatch.setenv("GEOZOO_ESCNN_CACHE", str(tmp_path / "mine"))
    assert steerable._cache_location(package) == tmp_path / "mine"


def test_escnn_scope_restores_the_solver():
    import_escnn()
    import escnn.group._numerical as numerical

    before = numerical.randomized_svd
    with steerable.escnn_scope():
        assert numerical.randomized_svd is None
        with steerable.escnn_scope():
            assert numerical.randomized_svd is None
        assert numerical.randomized_svd is None
    assert numerical.randomized_svd is before
    with pytest.raises(RuntimeError), steerable.escnn_scope():
        raise RuntimeError("restored on errors too")
    assert numerical.randomized_svd is before
