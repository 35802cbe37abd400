"""Tests of matrix groups and tensor representations (float64, independent references)."""

from __future__ import annotations

import pytest
import torch

from geozoo.groups.representations import (
    Rep,
    Scalar,
    Vector,
    get_group,
    tensor,
    tensor_features,
)

GROUPS = ["o3", "so3", "o2_z", "so2_x", "scaling", "so3_scaling", "s3", "trivial"]
REP = 2 * Scalar + Vector + tensor(2) + tensor(3)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", GROUPS)
def test_rho_is_a_homomorphism(name: str) -> None:
    group = get_group(name)
    a = group.sample(4, _gen(1), torch.float64)
    b = group.sample(4, _gen(2), torch.float64)
    lhs = REP.rho(a @ b)
    rhs = REP.rho(a) @ REP.rho(b)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["o3", "o2_y", "so3_scaling", "scaling"])
def test_drho_is_the_derivative_of_rho(name: str) -> None:
    """rho(exp(A)) = exp(drho(A)) for every generator A (checked with matrix exponentials)."""
    group = get_group(name)
    for a in group.lie_generators:
        a = 0.3 * a
        lhs = REP.rho(torch.linalg.matrix_exp(a))
        rhs = torch.linalg.matrix_exp(REP.drho(a))
        torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", GROUPS)
def test_act_matches_dense_rho(name: str) -> None:
    group = get_group(name)
    g = group.sample(5, _gen(3), torch.float64)
    x = torch.randn(5, REP.size(group.n), generator=_gen(4), dtype=torch.float64)
    expected = torch.einsum("nij,nj->ni", REP.rho(g), x)
    torch.testing.assert_close(REP.act(g, x), expected, rtol=1e-12, atol=1e-12)


def test_rank_two_is_conjugation() -> None:
    """A rank-2 tensor flattened row-major transforms as M -> g M g^T."""
    g = get_group("o3").sample(3, _gen(5), torch.float64)
    m = torch.randn(3, 3, 3, generator=_gen(6), dtype=torch.float64)
    out = tensor(2).act(g, m.reshape(3, 9)).reshape(3, 3, 3)
    torch.testing.assert_close(out, g @ m @ g.transpose(1, 2))


def test_samples_lie_in_their_groups() -> None:
    n, eye = 64, torch.eye(3, dtype=torch.float64)
    o3 = get_group("o3").sample(n, _gen(7), torch.float64)
    torch.testing.assert_close(o3 @ o3.transpose(1, 2), eye.expand(n, 3, 3))
    dets = torch.linalg.det(o3)
    assert (dets > 0).any() and (dets < 0).any()
    so3 = get_group("so3").sample(n, _gen(8), torch.float64)
    torch.testing.assert_close(torch.linalg.det(so3), torch.ones(n, dtype=torch.float64))
    o2 = get_group("o2_z").sample(n, _gen(9), torch.float64)
    torch.testing.assert_close(o2[:, :, 2], eye[2].expand(n, 3))  # fixes e_z
    torch.testing.assert_close(o2 @ o2.transpose(1, 2), eye.expand(n, 3, 3))
    s = get_group("scaling").sample(n, _gen(10), torch.float64)
    torch.testing.assert_close(s, s[:, :1, :1] * eye)
    perm = get_group("s5").sample(n, _gen(11), torch.float64)
    assert torch.equal(perm.sum(1), torch.ones(n, 5, dtype=torch.float64))
    assert torch.equal(perm.sum(2), torch.ones(n, 5, dtype=torch.float64))


def test_tensor_features_transform_by_the_product_rep() -> None:
    group = get_group("so3_scaling")
    a, b = 2 * Scalar + 3 * Vector, Vector + tensor(2)
    x = torch.randn(4, a.size(3), generator=_gen(12), dtype=torch.float64)
    y = torch.randn(4, b.size(3), generator=_gen(13), dtype=torch.float64)
    g = group.sample(4, _gen(14), torch.float64)
    product = a @ b
    lhs = tensor_features(a.act(g, x), a, b.act(g, y), b, 3)
    rhs = product.act(g, tensor_features(x, a, y, b, 3))
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


def test_rep_algebra_and_errors() -> None:
    rep = 5 * Scalar + 5 * Vector
    assert rep.blocks == ((0, 5), (1, 5)) and rep.size(3) == 20
    assert (Vector + Vector).blocks == ((1, 2),)
    assert Rep.from_multiplicities([0, 0, 1]) == tensor(2)
    assert (Vector @ Vector).size(3) == 9
    with pytest.raises(ValueError, match="multiplicity"):
        Rep(((1, 0),))
    with pytest.raises(ValueError, match="features of size 20"):
        rep.act(torch.eye(3), torch.zeros(2, 7))
    with pytest.raises(ValueError, match="unknown group"):
        get_group("o4_q")
    assert get_group("o2_x").name == "o2_x" and get_group("s4").n == 4
    assert get_group("o3") == get_group("o3") and get_group("o3") != get_group("so3")
