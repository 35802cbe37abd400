"""Haar samplers: the orthogonal family (haar_orthogonal, through every group that uses it), the
finite groups, and the laws of the scalings; distribution checks against closed-form moments."""

from __future__ import annotations

import math

import pytest
import torch

from geozoo.groups import (
    SO,
    Cyclic,
    Dihedral,
    Embedded,
    Orthogonal,
    Permutations,
    RotationScaling,
    Scaling,
    get_group,
    haar_orthogonal,
)

DT = torch.float64
M = 6000  # samples per distribution check; bounds below are ~5 standard errors


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _second_moments(q: torch.Tensor) -> torch.Tensor:
    flat = q.reshape(q.shape[0], -1)
    return flat.T @ flat / q.shape[0]


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("det", [None, 1, -1])
def test_orthogonal_samples_components_and_moments(n, det):
    """Haar on O(n) and on each of its components: E[Q] = 0, and (except on SO(2), which is
    abelian) E[Q_ij Q_kl] = delta_ik delta_jl / n; det is +-1 as asked."""
    q = haar_orthogonal(M, n, _gen(n), DT, det=det)
    eye = torch.eye(n, dtype=DT)
    torch.testing.assert_close(q.transpose(1, 2) @ q, eye.expand(M, n, n), rtol=0, atol=1e-12)
    dets = torch.linalg.det(q)
    torch.testing.assert_close(dets.abs(), torch.ones(M, dtype=DT))
    if det is None:
        assert abs(float((dets > 0).double().mean()) - 0.5) < 5 * 0.5 / math.sqrt(M)
    else:
        assert bool((dets * det > 0).all())
    assert float(q.mean(0).abs().max()) < 5 / math.sqrt(n * M)
    if not (n == 2 and det is not None):
        moments = _second_moments(q)
        torch.testing.assert_close(moments, torch.eye(n * n, dtype=DT) / n, atol=0.06 / n, rtol=0)


def test_so2_is_not_moment_isotropic_but_o2_is():
    """The moment check above has teeth: on SO(2) E[Q_00 Q_11] = E[cos^2] = 1/2, not 0."""
    q = haar_orthogonal(M, 2, _gen(5), DT, det=1)
    assert abs(float((q[:, 0, 0] * q[:, 1, 1]).mean()) - 0.5) < 0.02
    q = haar_orthogonal(M, 2, _gen(5), DT)
    assert abs(float((q[:, 0, 0] * q[:, 1, 1]).mean())) < 0.03


def test_left_translation_leaves_the_law_unchanged():
    """Haar measure is invariant: for a fixed rotation g, the samples g Q have the same
    moments as Q (a sampler biased towards the identity fails this)."""
    g = SO(3).exp(torch.tensor([[0.4, -1.1, 2.0]], dtype=DT))[0]
    q = haar_orthogonal(M, 3, _gen(6), DT, det=1)
    trace_q = torch.diagonal(q, dim1=-2, dim2=-1).sum(-1)
    trace_gq = torch.diagonal(g @ q, dim1=-2, dim2=-1).sum(-1)
    for t in (trace_q, trace_gq):
        assert abs(float(t.mean())) < 5 / math.sqrt(M)  # E[tr R] = 0
        assert abs(float((t**2).mean()) - 1.0) < 0.1  # E[(tr R)^2] = 1
    biased = SO(3).exp(0.3 * torch.randn(M, 3, generator=_gen(7), dtype=DT))
    trace_biased = torch.diagonal(biased, dim1=-2, dim2=-1).sum(-1)
    assert float(trace_biased.mean()) > 1.0


@pytest.mark.parametrize(("n", "p"), [(5, 2), (4, 1), (3, 3)])
def test_stiefel_frames(n, p):
    """First p columns of Haar O(n): orthonormal, with E[Q Q^T] = (p / n) I."""
    q = haar_orthogonal(M, n, _gen(8), DT, columns=p)
    assert q.shape == (M, n, p)
    torch.testing.assert_close(q.transpose(1, 2) @ q, torch.eye(p, dtype=DT).expand(M, p, p))
    projector = (q @ q.transpose(1, 2)).mean(0)
    torch.testing.assert_close(projector, p / n * torch.eye(n, dtype=DT), atol=0.03, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="det must be"):
        haar_orthogonal(2, 3, det=2)
    with pytest.raises(ValueError, match="square"):
        haar_orthogonal(2, 3, det=1, columns=2)
    with pytest.raises(ValueError, match="columns"):
        haar_orthogonal(2, 3, columns=4)


def test_groups_sample_through_the_one_sampler():
    """SO(n), O(n) and the planar groups of R^3 draw exactly haar_orthogonal's samples."""
    for group, det in ((SO(3), 1), (Orthogonal(3), None), (SO(2), 1), (Orthogonal(2), None)):
        expected = haar_orthogonal(5, group.n, _gen(9), DT, det=det)
        assert torch.equal(group.sample(5, _gen(9), DT), expected)
    o2_z = get_group("o2_z").sample(5, _gen(10), DT)
    planar = haar_orthogonal(5, 2, _gen(10), DT)
    assert torch.equal(o2_z[:, :2, :2], planar) and bool((o2_z[:, 2, 2] == 1).all())
    so2_x = Embedded(SO(2), "x").sample(5, _gen(11), DT)
    assert torch.equal(so2_x[:, 1:, 1:], SO(2).sample(5, _gen(11), DT))


def _distinct(matrices: torch.Tensor) -> torch.Tensor:
    kept: list[torch.Tensor] = []
    for m in matrices:
        if not any(torch.allclose(m, k, rtol=0, atol=1e-9) for k in kept):
            kept.append(m)
    return torch.stack(kept)


@pytest.mark.parametrize("group", [Cyclic(5), Dihedral(3), Permutations(3)])
def test_finite_groups_are_closed_and_sampled_uniformly(group):
    elements = group.elements() if hasattr(group, "elements") else group.sample(400, _gen(12), DT)
    distinct = _distinct(elements)
    assert distinct.shape[0] == group.order
    products = (distinct[:, None] @ distinct[None]).reshape(-1, group.n, group.n)
    assert _distinct(torch.cat([distinct, products])).shape[0] == group.order
    samples = group.sample(M, _gen(13), DT)
    matches = (samples[:, None] - distinct[None]).abs().flatten(2).amax(-1) < 1e-9
    assert bool((matches.sum(1) == 1).all())  # every sample is exactly one element
    counts, expected = matches.sum(0).double(), M / group.order
    assert bool(((counts - expected).abs() < 5 * math.sqrt(expected)).all()), counts


def test_dihedral_generators_generate_it_and_contain_escnns_mirror():
    group = Dihedral(4)
    rotation, flip = group.discrete_generators
    torch.testing.assert_close(flip, torch.diag(torch.tensor([1.0, -1.0], dtype=DT)))
    generated = [torch.eye(2, dtype=DT)]
    for element in generated:
        for generator in (rotation, flip):
            candidate = generator @ element
            if not any(torch.allclose(candidate, g) for g in generated):
                generated.append(candidate)
    assert len(generated) == group.order


@pytest.mark.parametrize("factory", [Scaling, RotationScaling])
def test_scale_law_is_log_uniform_on_half_to_two(factory):
    group = factory(3)
    g = group.sample(M, _gen(14), DT)
    _, p = group.decompose(g)
    log_s = torch.log(torch.diagonal(p, dim1=-2, dim2=-1).mean(-1))
    assert float(log_s.abs().max()) <= math.log(2.0)
    x, _ = torch.sort(log_s)
    cdf = (x + math.log(2.0)) / (2 * math.log(2.0))
    ks = float(torch.maximum(torch.arange(1, M + 1) / M - cdf, cdf - torch.arange(M) / M).max())
    assert ks < 1.63 / math.sqrt(M)  # KS at alpha = 1%
    half = math.sqrt(3) * math.log(2.0)
    uniform = torch.full((M,), -math.log(2 * half), dtype=DT)
    torch.testing.assert_close(group.log_density(g), uniform)
    outside = 3.0 * torch.eye(3, dtype=DT)[None]
    assert float(Scaling(3).log_density(outside)) == -math.inf
    # the log-normal law is still there for the affine layers
    lognormal = factory(3, pd_scale=0.3).sample(M, _gen(15), DT)
    log_s = torch.log(torch.linalg.det(lognormal).abs()) / 3
    assert abs(float(log_s.std()) - 0.3 / math.sqrt(3)) < 0.01
    with pytest.raises(ValueError, match="not both"):
        factory(3, pd_scale=0.3, max_log_scale=1.0)
