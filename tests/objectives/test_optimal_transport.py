"""Sinkhorn, SinKD and the Cauchy-Schwarz divergences against independent references."""

from __future__ import annotations

import math

import pytest
import torch

from geozoo.objectives.cauchy_schwarz import cauchy_schwarz, conditional_cauchy_schwarz
from geozoo.objectives.optimal_transport import sinkd_loss, sinkhorn


def _plain_sinkhorn(a, b, c, eps, iters):
    """Textbook (kernel-domain) Sinkhorn in float64 for one problem (Cuturi 2013, Alg. 1)."""
    k = torch.exp(-c / eps)
    v = torch.ones_like(b)
    for _ in range(iters):
        u = a / (k @ v)
        v = b / (k.T @ u)
    return u[:, None] * k * v[None, :]


def _hist(g, *shape):
    return torch.softmax(torch.randn(*shape, generator=g, dtype=torch.float64), -1)


@pytest.mark.parametrize("backend", ["matmul", "logsumexp"])
def test_matches_kernel_domain_sinkhorn_and_marginals(backend: str) -> None:
    g = torch.Generator().manual_seed(0)
    a, b = _hist(g, 4, 6), _hist(g, 4, 5)
    c = torch.rand(4, 6, 5, generator=g, dtype=torch.float64)
    res = sinkhorn(a, b, c, epsilon=0.2, iters=5000, tol=1e-12, return_plan=True, backend=backend)
    assert res.marginal_error < 1e-12
    for k in range(4):
        ref = _plain_sinkhorn(a[k], b[k], c[k], 0.2, 500)
        torch.testing.assert_close(res.plan[k], ref, rtol=1e-8, atol=1e-12)
        assert res.cost[k].item() == pytest.approx((ref * c[k]).sum().item(), rel=1e-9)
    torch.testing.assert_close(res.plan.sum(-1), a, atol=1e-11, rtol=0)
    torch.testing.assert_close(res.plan.sum(-2), b, atol=1e-11, rtol=0)


def test_small_epsilon_tends_to_exact_ot_and_stays_finite() -> None:
    # 1-D transport with cost |x_i - y_j|: the exact cost is the L1 distance of the CDFs.
    n = 12
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    c = (x[:, None] - x[None, :]).abs()
    g = torch.Generator().manual_seed(1)
    a, b = _hist(g, n), _hist(g, n)
    exact = (a.cumsum(0) - b.cumsum(0)).abs()[:-1].sum() * (x[1] - x[0])
    res = sinkhorn(a, b, c, epsilon=1e-3, iters=20000, tol=1e-9)
    assert math.isfinite(res.cost.item())
    assert res.cost.item() == pytest.approx(exact.item(), abs=5e-3)
    with torch.no_grad():  # the kernel-domain iteration breaks down there
        k = torch.exp(-c.float() / 1e-4)
        assert (k == 0).any()


def test_backends_agree_and_auto_switches() -> None:
    g = torch.Generator().manual_seed(8)
    a, b = _hist(g, 5, 12), _hist(g, 5, 12)
    x = torch.linspace(0, 1, 12, dtype=torch.float64)
    c = (x[:, None] - x[None, :]).square()
    for eps in (0.05, 0.005):  # same number of iterations: the same iterates up to rounding
        m = sinkhorn(a, b, c, eps, 200, None, backend="matmul")
        lse = sinkhorn(a, b, c, eps, 200, None, backend="logsumexp")
        torch.testing.assert_close(m.cost, lse.cost, rtol=1e-9, atol=0)
    # float32 with spread 1 / 1e-3 = 1000: auto must use logsumexp and stay finite
    res = sinkhorn(a.float(), b.float(), c.float(), 1e-3, 300, None, return_plan=True)
    assert torch.isfinite(res.cost).all()
    torch.testing.assert_close(res.plan.sum(-2), b.float(), atol=1e-5, rtol=0)


def test_zero_marginals_gradients_and_shared_cost() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.tensor([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[0.25, 0.75], [0.6, 0.4]], dtype=torch.float64)
    c = torch.rand(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    for backend in ("matmul", "logsumexp"):
        res = sinkhorn(a, b, c, 0.1, 200, None, return_plan=True, backend=backend)
        assert torch.isfinite(res.cost).all()
        assert res.plan[0, 1].abs().max().item() == 0.0
        ga, gc = torch.autograd.grad(res.cost.sum(), (a, c))
        assert torch.isfinite(ga).all() and torch.isfinite(gc).all()


def test_gradcheck_autodiff() -> None:
    g = torch.Generator().manual_seed(3)
    a, b = _hist(g, 2, 4), _hist(g, 2, 3)
    c = torch.rand(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    a.requires_grad_()
    for backend in ("matmul", "logsumexp"):

        def fn(a, c, backend=backend):
            return sinkhorn(a / a.sum(-1, keepdim=True), b, c, 0.3, 30, None, backend=backend).cost

        assert torch.autograd.gradcheck(fn, (a, c))


def test_last_step_gradient_close_to_autodiff_at_convergence() -> None:
    g = torch.Generator().manual_seed(4)
    a, b = _hist(g, 3, 5), _hist(g, 3, 5)
    c = torch.rand(3, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    full = torch.autograd.grad(sinkhorn(a, b, c, 0.5, 300, None).cost.sum(), c)[0]
    last = torch.autograd.grad(sinkhorn(a, b, c, 0.5, 300, None, grad="last_step").cost.sum(), c)[0]
    # one differentiated step: the plan itself plus part of the implicit term
    assert torch.isfinite(last).all()
    assert (last - full).abs().max() < 0.5 * full.abs().max()


def test_errors() -> None:
    with pytest.raises(ValueError, match="same total mass"):
        sinkhorn(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 1.0]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="cost must have shape"):
        sinkhorn(torch.tensor([0.5, 0.5]), torch.tensor([1.0]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn(torch.tensor([1.0]), torch.tensor([1.0]), torch.zeros(1, 1), epsilon=0)


def test_sinkd_loss_reference_and_properties() -> None:
    g = torch.Generator().manual_seed(5)
    s = torch.randn(6, 10, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 10, generator=g, dtype=torch.float64)
    loss = sinkd_loss(s, t, temperature=2.0, epsilon=0.1, iters=20)
    # reference: the released code's alternating normalisation in probability space
    ps, pt = torch.softmax(s.detach() / 2, -1), torch.softmax(t / 2, -1)
    w = torch.cdist(ps, pt, p=1)
    plan = torch.exp(-w / 0.1)
    for _ in range(20):
        plan = plan / plan.sum(1, keepdim=True)
        plan = plan / plan.sum(0, keepdim=True)
    ref = (plan * w).sum()  # unnormalised marginals: B times ours
    assert (6 * loss).item() == pytest.approx(ref.item(), rel=1e-6)
    scaled = sinkd_loss(s, t, iters=20, scale_by_batch=True)
    assert scaled.item() == pytest.approx(ref.item(), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, s)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # equal clouds cost (almost) nothing; moving the student away costs more
    same = sinkd_loss(t, t, epsilon=0.01, iters=200)
    assert same.item() < 0.05 * loss.item()


# ------------------------------------------------------------------ Cauchy-Schwarz


def _cs_reference(x: torch.Tensor, y: torch.Tensor, sigma: float) -> float:
    def ksum(a, b):
        total = 0.0
        for ai in a.tolist():
            for bj in b.tolist():
                d2 = sum((u - v) ** 2 for u, v in zip(ai, bj, strict=True))
                total += math.exp(-d2 / (2 * sigma**2))
        return total

    m, n = len(x), len(y)
    return (
        math.log(ksum(x, x) / m**2)
        + math.log(ksum(y, y) / n**2)
        - 2 * math.log(ksum(x, y) / (m * n))
    )


def test_cauchy_schwarz_reference_symmetry_invariance() -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.randn(7, 2, generator=g, dtype=torch.float64)
    y = torch.randn(9, 2, generator=g, dtype=torch.float64) + 0.7
    got = cauchy_schwarz(x, y, sigma=0.8)
    assert got.item() == pytest.approx(_cs_reference(x, y, 0.8), rel=1e-10)
    assert cauchy_schwarz(y, x, 0.8).item() == pytest.approx(got.item(), rel=1e-12)
    assert got.item() > 0
    assert cauchy_schwarz(x, x, 0.8).abs().item() < 1e-12
    rot = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
    moved = cauchy_schwarz(x @ rot.T + 3.0, y @ rot.T + 3.0, 0.8)
    assert moved.item() == pytest.approx(got.item(), rel=1e-10)


def test_cauchy_schwarz_far_apart_is_finite() -> None:
    # kernels of exp(-5000) underflow in any float; the log-sum-exp keeps the value finite
    x = torch.zeros(4, 1)
    y = torch.full((4, 1), 100.0, requires_grad=True)
    got = cauchy_schwarz(x, y, sigma=1.0)
    assert got.item() == pytest.approx(2 * 100.0**2 / 2, rel=1e-5)
    (grad,) = torch.autograd.grad(got, y)
    assert torch.isfinite(grad).all()


def _ccs_reference(x, y, yh, sigma):
    def k(a, b):
        return math.exp(-sum((u - v) ** 2 for u, v in zip(a, b, strict=True)) / (2 * sigma**2))

    xs, ys, hs = x.tolist(), y.tolist(), yh.tolist()
    n = len(xs)

    def term(lfun):
        total = 0.0
        for j in range(n):
            num = sum(k(xs[j], xs[i]) * lfun(j, i) for i in range(n))
            den = sum(k(xs[j], xs[i]) for i in range(n)) ** 2
            total += num / den
        return total

    t1 = term(lambda j, i: k(ys[j], ys[i]))
    t2 = term(lambda j, i: k(hs[j], hs[i]))
    t21 = term(lambda j, i: k(hs[j], ys[i]))
    return math.log(t1) + math.log(t2) - 2 * math.log(t21)


def test_conditional_cauchy_schwarz_reference() -> None:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.randn(8, 1, generator=g, dtype=torch.float64)
    yh = y + 0.5 * torch.randn(8, 1, generator=g, dtype=torch.float64)
    got = conditional_cauchy_schwarz(x, y, yh, sigma=1.0)
    assert got.item() == pytest.approx(_ccs_reference(x, y, yh, 1.0), rel=1e-10)
    assert conditional_cauchy_schwarz(x, y, y, 1.0).abs().item() < 1e-12
    yh.requires_grad_()
    (grad,) = torch.autograd.grad(conditional_cauchy_schwarz(x, y, yh, 1.0), yh)
    assert torch.isfinite(grad).all()
