"""Group laws, charts and samplers of geozoo.groups, checked in float64 on random elements."""

from __future__ import annotations

import math

import pytest
import torch

from geozoo.groups import (
    PD,
    SL,
    SO,
    Affine,
    GLPlus,
    RotationScaling,
    UnitPD,
    haar_orthogonal,
    polar,
)
from geozoo.groups.linalg import so_hat, sym_hat, sym_vee

DT = torch.float64
GROUP_FACTORIES = [SO, GLPlus, SL, RotationScaling]


def _random_elements(group, num: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    # wider than the sampler default so that the tests see strongly anisotropic elements
    wide = type(group)(group.n) if isinstance(group, SO) else type(group)(group.n, pd_scale=0.6)
    return wide.sample(num, gen, dtype=DT)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("factory", GROUP_FACTORIES)
def test_group_laws(factory, n):
    group = factory(n)
    a, b, c = (_random_elements(group, 16, s) for s in (1, 2, 3))
    assert bool(group.contains(a, atol=1e-9).all())
    ab_c = group.compose(group.compose(a, b), c)
    a_bc = group.compose(a, group.compose(b, c))
    torch.testing.assert_close(ab_c, a_bc, rtol=1e-12, atol=1e-12)
    eye = group.identity(16, dtype=DT)
    torch.testing.assert_close(group.compose(a, group.inverse(a)), eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(group.compose(eye, a), a)
    assert bool(group.contains(group.compose(a, b), atol=1e-9).all())
    # action: (ab) x = a (b x)
    x = torch.randn(16, n, dtype=DT)
    torch.testing.assert_close(group.act(group.compose(a, b), x), group.act(a, group.act(b, x)))


@pytest.mark.parametrize("n", [2, 3])
def test_det_sign_and_unit_det(n):
    g = _random_elements(GLPlus(n), 64, 4)
    assert bool((torch.linalg.det(g) > 0).all())
    s = _random_elements(SL(n), 64, 5)
    torch.testing.assert_close(torch.linalg.det(s), torch.ones(64, dtype=DT))
    _, p = SL(n).decompose(s)
    torch.testing.assert_close(torch.linalg.det(p), torch.ones(64, dtype=DT))
    # a non-member is rejected
    bad = torch.diag_embed(torch.tensor([[2.0] + [1.0] * (n - 1)], dtype=DT))
    assert not bool(SL(n).contains(bad).any())
    assert bool(GLPlus(n).contains(bad).all())
    reflection = torch.diag_embed(torch.tensor([[-1.0] + [1.0] * (n - 1)], dtype=DT))
    assert not bool(GLPlus(n).contains(reflection).any())


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("factory", GROUP_FACTORIES)
def test_decompose_round_trip(factory, n):
    group = factory(n)
    g = _random_elements(group, 32, 6)
    r, p = group.decompose(g)
    eye = torch.eye(n, dtype=DT)
    torch.testing.assert_close(r.transpose(-1, -2) @ r, eye.expand_as(r), rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(32, dtype=DT))
    torch.testing.assert_close(p, p.transpose(-1, -2))
    assert bool((torch.linalg.eigvalsh(p) > 0).all())
    torch.testing.assert_close(group.compose_factors(r, p), g, rtol=0, atol=1e-12)
    # the positive factor is (g^T g)^{1/2}, independent of the SVD route
    torch.testing.assert_close(p @ p, g.transpose(-1, -2) @ g, rtol=0, atol=1e-11)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("factory", GROUP_FACTORIES)
def test_log_exp_round_trip(factory, n):
    group = factory(n)
    g = _random_elements(group, 32, 7)
    v = group.log(g)
    assert v.shape == (32, group.dim)
    torch.testing.assert_close(group.exp(v), g, rtol=0, atol=1e-10)
    # and the other way, on coordinates with rotation angles inside (-pi, pi)
    gen = torch.Generator().manual_seed(8)
    w = 0.5 * torch.randn(32, group.dim, generator=gen, dtype=DT)
    torch.testing.assert_close(group.log(group.exp(w)), w, rtol=0, atol=1e-10)


def test_chart_matches_closed_form_in_2d():
    """xi(theta, S) = R(theta) exp(S), checked against scipy-free closed forms in 2D."""
    theta = torch.tensor([0.3, -2.0, 3.0], dtype=DT)
    v = torch.stack([theta, torch.tensor([0.2, -0.1, 0.0], dtype=DT)], -1)
    g = RotationScaling(2).exp(v)
    scale = torch.exp(v[:, 1] / math.sqrt(2))
    rot = torch.stack(
        [torch.cos(theta), -torch.sin(theta), torch.sin(theta), torch.cos(theta)], -1
    ).reshape(3, 2, 2)
    torch.testing.assert_close(g, scale[:, None, None] * rot)
    # dimension counts of the paper: GL+(2) has 4 coordinates, SL(2) 3
    assert (GLPlus(2).dim, SL(2).dim, SO(2).dim, RotationScaling(2).dim) == (4, 3, 1, 2)
    assert (GLPlus(3).dim, SL(3).dim, SO(3).dim) == (9, 8, 3)


def test_so3_log_near_pi():
    axis = torch.tensor([[0.0, 0.6, 0.8]], dtype=DT)
    angle = math.pi - 1e-9
    k = so_hat(torch.stack([axis[:, 2], -axis[:, 1], axis[:, 0]], -1), 3)
    r = torch.linalg.matrix_exp(angle * k)
    v = SO(3).log(r)
    torch.testing.assert_close(SO(3).exp(v), r, rtol=0, atol=1e-7)


@pytest.mark.parametrize("n", [2, 3])
def test_sym_coordinates_are_orthonormal(n):
    gen = torch.Generator().manual_seed(9)
    for traceless in (False, True):
        d = n * (n + 1) // 2 - traceless
        a, b = torch.randn(2, d, generator=gen, dtype=DT)
        sa, sb = sym_hat(a, n, traceless), sym_hat(b, n, traceless)
        torch.testing.assert_close((sa * sb).sum(), (a * b).sum())
        torch.testing.assert_close(sym_vee(sa, traceless), a)
        if traceless:
            torch.testing.assert_close(torch.diagonal(sa).sum(), torch.tensor(0.0, dtype=DT))


@pytest.mark.parametrize("n", [2, 3])
def test_pd_log_euclidean_group_and_congruence(n):
    group = PD(n)
    a, b, c = (group.sample_positive(8, torch.Generator().manual_seed(s), DT) for s in (1, 2, 3))
    torch.testing.assert_close(
        group.compose(group.compose(a, b), c), group.compose(a, group.compose(b, c))
    )
    torch.testing.assert_close(group.compose(a, group.inverse(a)), group.identity(8, dtype=DT))
    g = _random_elements(GLPlus(n), 8, 4)
    congr = group.congruence(g, a)
    assert bool((torch.linalg.eigvalsh(congr) > 0).all())
    unit = UnitPD(n).sample_positive(8, torch.Generator().manual_seed(5), DT)
    torch.testing.assert_close(torch.linalg.det(unit), torch.ones(8, dtype=DT))


@pytest.mark.parametrize("n", [2, 3])
def test_affine_group(n):
    group = Affine(GLPlus(n, pd_scale=0.5), translation_range=2.0)
    gen = torch.Generator().manual_seed(10)
    a, b, c = (group.sample(8, gen, DT) for _ in range(3))
    torch.testing.assert_close(
        group.compose(group.compose(a, b), c), group.compose(a, group.compose(b, c))
    )
    torch.testing.assert_close(
        group.compose(a, group.inverse(a)), group.identity(8, dtype=DT), rtol=0, atol=1e-12
    )
    x = torch.randn(8, n, dtype=DT)
    torch.testing.assert_close(group.act(group.compose(a, b), x), group.act(a, group.act(b, x)))
    t, r, p = group.decompose(a)
    torch.testing.assert_close(group.compose_factors(t, r, p), a)
    torch.testing.assert_close(group.exp(group.log(a)), a)
    assert bool(group.contains(a, atol=1e-9).all())
    with pytest.raises(ValueError, match="not closed"):
        Affine(PD(n))


def test_polar_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(\.\.\., n, n\)"):
        polar(torch.zeros(3, 2))


def _ks_statistic(samples: torch.Tensor, cdf) -> float:
    x, _ = torch.sort(samples)
    m = x.numel()
    f = cdf(x)
    upper = torch.arange(1, m + 1, dtype=DT) / m - f
    lower = f - torch.arange(0, m, dtype=DT) / m
    return float(torch.maximum(upper, lower).max())


def test_haar_so2_angles_uniform():
    r = haar_orthogonal(4000, 2, torch.Generator().manual_seed(0), DT, det=1)
    theta = torch.atan2(r[:, 1, 0], r[:, 0, 0])
    stat = _ks_statistic(theta, lambda t: (t + math.pi) / (2 * math.pi))
    assert stat < 1.63 / math.sqrt(4000)  # KS critical value at alpha = 1%


def test_haar_so3_angle_distribution_and_moments():
    """Haar on SO(3): the rotation angle has density (1 - cos t) / pi on [0, pi], i.e. CDF
    (t - sin t) / pi; entries have E[R_ij^2] = 1/3 and E[tr R] = 0, E[(tr R)^2] = 1."""
    m = 4000
    r = haar_orthogonal(m, 3, torch.Generator().manual_seed(1), DT, det=1)
    assert bool((torch.linalg.det(r) > 0).all())
    trace = torch.diagonal(r, dim1=-2, dim2=-1).sum(-1)
    angle = torch.acos(((trace - 1) / 2).clamp(-1, 1))
    assert _ks_statistic(angle, lambda t: (t - torch.sin(t)) / math.pi) < 1.63 / math.sqrt(m)
    assert abs(float(trace.mean())) < 4 / math.sqrt(m)
    assert abs(float((trace**2).mean()) - 1.0) < 0.1
    torch.testing.assert_close(
        (r**2).mean(0), torch.full((3, 3), 1 / 3, dtype=DT), atol=0.03, rtol=0
    )


def test_uniform_quadrature_is_not_haar():
    """The KS statistic above can fail: rotations concentrated near the identity are rejected."""
    theta = 0.5 * torch.randn(4000, generator=torch.Generator().manual_seed(2), dtype=DT)
    stat = _ks_statistic(theta, lambda t: (t + math.pi) / (2 * math.pi))
    assert stat > 1.63 / math.sqrt(4000)


@pytest.mark.parametrize("factory", [PD, UnitPD])
@pytest.mark.parametrize("n", [2, 3])
def test_pd_sampler_matches_documented_density(factory, n):
    """log P has i.i.d. N(0, pd_scale^2) orthonormal coordinates, and log_density agrees with
    the Gaussian density of those coordinates."""
    scale, m = 0.3, 4000
    group = factory(n, pd_scale=scale)
    p = group.sample_positive(m, torch.Generator().manual_seed(3), DT)
    assert bool((torch.linalg.eigvalsh(p) > 0).all())
    coords = group.log(p)
    d = group.positive_dim
    assert coords.shape == (m, d)
    cov = coords.T @ coords / m
    torch.testing.assert_close(cov, scale**2 * torch.eye(d, dtype=DT), atol=0.15 * scale**2, rtol=0)
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=DT), torch.tensor(scale, dtype=DT))
    for k in range(d):  # KS critical value at alpha = 0.1% per coordinate (several coordinates)
        assert _ks_statistic(coords[:, k], normal.cdf) < 1.95 / math.sqrt(m)
    expected = normal.log_prob(coords).sum(-1)
    torch.testing.assert_close(group.log_density(p), expected)
