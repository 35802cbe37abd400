"""Divergences against float64 references written from their definitions (sums over classes)."""

from __future__ import annotations

import math

import pytest
import torch

from geozoo.objectives import divergences as D

# ------------------------------------------------------------------ references (float64, by hand)


def _probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    z = logits.double() / temperature
    z = z - z.max(-1, keepdim=True).values
    e = z.exp()
    return e / e.sum(-1, keepdim=True)


def _ref(name: str, p: torch.Tensor, q: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Reference value per row from the textbook definition, with 0 log 0 = 0."""
    out = torch.zeros(p.shape[:-1], dtype=torch.float64)
    flat_p, flat_q, flat_out = p.reshape(-1, p.shape[-1]), q.reshape(-1, q.shape[-1]), out.view(-1)
    for row in range(flat_p.shape[0]):
        total = 0.0
        pr, qr = flat_p[row].tolist(), flat_q[row].tolist()
        if name == "renyi":
            s = sum(a**alpha * b ** (1 - alpha) for a, b in zip(pr, qr, strict=True))
            flat_out[row] = math.log(s) / (alpha - 1)
            continue
        if name == "alpha":
            s = sum(a**alpha * b ** (1 - alpha) for a, b in zip(pr, qr, strict=True))
            flat_out[row] = (1 - s) / (alpha * (1 - alpha))
            continue
        for a, b in zip(pr, qr, strict=True):
            m = 0.5 * (a + b)
            if name == "kl":
                total += a * math.log(a / b) if a > 0 else 0.0
            elif name == "reverse_kl":
                total += b * math.log(b / a) if b > 0 else 0.0
            elif name == "symmetric_kl":
                total += (a * math.log(a / b) if a > 0 else 0.0) + (
                    b * math.log(b / a) if b > 0 else 0.0
                )
            elif name == "js":
                total += 0.5 * (a * math.log(a / m) if a > 0 else 0.0)
                total += 0.5 * (b * math.log(b / m) if b > 0 else 0.0)
            elif name == "hellinger2":
                total += (math.sqrt(a) - math.sqrt(b)) ** 2
            elif name == "total_variation":
                total += 0.5 * abs(a - b)
            elif name == "pearson_chi2":
                total += (a - b) ** 2 / b if b > 0 else 0.0  # p has a zero wherever q has one
            elif name == "neyman_chi2":
                total += (a - b) ** 2 / a if a > 0 else 0.0
        flat_out[row] = total
    return out


ALL = [
    "kl",
    "reverse_kl",
    "symmetric_kl",
    "js",
    "hellinger2",
    "total_variation",
    "pearson_chi2",
    "neyman_chi2",
    "alpha",
    "renyi",
]
BOUNDED = ["js", "hellinger2", "total_variation"]


def _fn(name: str, alpha: float = 0.5):
    return D.get(name, alpha=alpha) if name in ("alpha", "renyi") else D.get(name)


# ------------------------------------------------------------------ values


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_matches_float64_reference_random(name: str, temperature: float) -> None:
    g = torch.Generator().manual_seed(0)
    p_logits = 2 * torch.randn(3, 5, 7, generator=g)
    q_logits = 2 * torch.randn(3, 5, 7, generator=g)
    got = _fn(name)(p_logits, q_logits, temperature=temperature)
    assert got.shape == (3, 5) and got.dtype == torch.float32
    want = _ref(name, _probs(p_logits, temperature), _probs(q_logits, temperature))
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)
    got64 = _fn(name)(p_logits.double(), q_logits.double(), temperature=temperature)
    assert got64.dtype == torch.float64
    torch.testing.assert_close(got64, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("alpha", [-1.5, -0.3, 0.25, 0.7, 1.6, 3.0])
def test_alpha_and_renyi_orders(alpha: float) -> None:
    g = torch.Generator().manual_seed(1)
    p_logits, q_logits = torch.randn(2, 6, 9, generator=g, dtype=torch.float64)
    p, q = _probs(p_logits), _probs(q_logits)
    got = D.alpha_divergence(p_logits, q_logits, alpha=alpha)
    torch.testing.assert_close(got, _ref("alpha", p, q, alpha), rtol=1e-10, atol=1e-12)
    if alpha > 0:
        got = D.renyi(p_logits, q_logits, alpha=alpha)
        torch.testing.assert_close(got, _ref("renyi", p, q, alpha), rtol=1e-10, atol=1e-12)


def test_special_cases_relate_the_families() -> None:
    g = torch.Generator().manual_seed(2)
    p, q = torch.randn(2, 16, 10, generator=g, dtype=torch.float64)
    tol = {"rtol": 1e-9, "atol": 1e-12}
    torch.testing.assert_close(D.alpha_divergence(p, q, 0.5), 2 * D.hellinger2(p, q), **tol)
    torch.testing.assert_close(D.alpha_divergence(p, q, 2.0), D.pearson_chi2(p, q) / 2, **tol)
    torch.testing.assert_close(D.alpha_divergence(p, q, -1.0), D.neyman_chi2(p, q) / 2, **tol)
    torch.testing.assert_close(D.reverse_kl(p, q), D.kl(q, p), **tol)
    torch.testing.assert_close(D.symmetric_kl(p, q), D.kl(p, q) + D.kl(q, p), **tol)
    # limits alpha -> 1 and alpha -> 0 of Amari's family, alpha -> 1 of Renyi
    torch.testing.assert_close(D.alpha_divergence(p, q, 1 - 1e-6), D.kl(p, q), rtol=1e-4, atol=0)
    torch.testing.assert_close(D.alpha_divergence(p, q, 1e-6), D.kl(q, p), rtol=1e-4, atol=0)
    torch.testing.assert_close(D.renyi(p, q, 1 + 1e-7), D.kl(p, q), rtol=1e-4, atol=0)


def test_kl_closed_form() -> None:
    # P = (1/2, 1/4, 1/4), Q = (1/4, 1/2, 1/4): KL = 1/2 log 2 - 1/4 log 2 = log(2) / 4.
    p = torch.tensor([0.5, 0.25, 0.25]).log()
    q = torch.tensor([0.25, 0.5, 0.25]).log()
    assert D.kl(p, q).item() == pytest.approx(math.log(2) / 4, rel=1e-6)
    assert D.total_variation(p, q).item() == pytest.approx(0.25, rel=1e-6)
    # two-point distributions: JS(delta_0-ish, uniform) closed form with p=(1,0), q=(1/2,1/2):
    # JS = 1/2 [1 log(1/(3/4))] + 1/2 [1/2 log((1/2)/(3/4)) + 1/2 log((1/2)/(1/4))]
    p2 = torch.tensor([0.0, -float("inf")])
    q2 = torch.tensor([0.0, 0.0])
    want = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert D.js(p2, q2).item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_zero_for_equal_distributions(name: str) -> None:
    x = 3 * torch.randn(8, 11, generator=torch.Generator().manual_seed(3))
    # shifting logits by a per-row constant does not change the distribution
    got = _fn(name)(x, x + torch.randn(8, 1))
    torch.testing.assert_close(got, torch.zeros(8), atol=2e-6, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_non_negative(name: str) -> None:
    g = torch.Generator().manual_seed(4)
    got = _fn(name, alpha=1.7)(
        4 * torch.randn(64, 5, generator=g), 4 * torch.randn(64, 5, generator=g)
    )
    assert (got >= -1e-6).all()


@pytest.mark.parametrize("name", [*BOUNDED, "symmetric_kl"])
def test_symmetric(name: str) -> None:
    g = torch.Generator().manual_seed(5)
    p, q = torch.randn(2, 10, 6, generator=g)
    torch.testing.assert_close(_fn(name)(p, q), _fn(name)(q, p), rtol=1e-5, atol=1e-7)


def test_reductions_and_bounds() -> None:
    g = torch.Generator().manual_seed(6)
    p, q = 5 * torch.randn(2, 32, 4, generator=g)
    rows = D.kl(p, q)
    assert D.kl(p, q, reduction="mean").item() == pytest.approx(rows.mean().item(), rel=1e-6)
    assert D.kl(p, q, reduction="batchmean").item() == pytest.approx(rows.mean().item(), rel=1e-6)
    assert D.kl(p, q, reduction="sum").item() == pytest.approx(rows.sum().item(), rel=1e-6)
    # batchmean is kl_div's batchmean, not its mean over B*C entries
    ref = torch.nn.functional.kl_div(
        q.log_softmax(-1), p.log_softmax(-1), log_target=True, reduction="batchmean"
    )
    assert D.kl(p, q, reduction="mean").item() == pytest.approx(ref.item(), rel=1e-5)
    assert (D.js(p, q) <= math.log(2) + 1e-6).all()
    assert (D.hellinger2(p, q) <= 2 + 1e-6).all()
    assert (D.total_variation(p, q) <= 1 + 1e-6).all()


# ------------------------------------------------------------------ extreme inputs


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_extreme_logits_finite_values_and_gradients(name: str, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(7)
    p = (1e4 * torch.sign(torch.randn(16, 12, generator=g))).to(dtype).requires_grad_()
    q = (1e4 * torch.sign(torch.randn(16, 12, generator=g))).to(dtype).requires_grad_()
    for alpha in (0.5, 2.0, -1.0):
        if name not in ("alpha", "renyi") and alpha != 0.5:
            continue
        if name == "renyi" and alpha < 0:
            continue
        out = _fn(name, alpha)(p, q)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all(), (name, alpha, out)
        (gp, gq) = torch.autograd.grad(out.sum(), (p, q))
        assert torch.isfinite(gp.float()).all() and torch.isfinite(gq.float()).all()


def test_extreme_logits_match_reference_where_representable() -> None:
    # Logit gaps of 20 keep every probability representable in float64 and the values moderate.
    g = torch.Generator().manual_seed(8)
    p = 20 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    q = 20 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    for name in ("kl", "js", "hellinger2", "total_variation", "symmetric_kl"):
        want = _ref(name, _probs(p), _probs(q))
        torch.testing.assert_close(
            _fn(name)(p.float(), q.float()).double(), want, rtol=1e-4, atol=1e-5
        )


def test_kl_with_huge_logits_is_exact_in_log_space() -> None:
    # P puts all mass on class 0, Q on class 1 (gap 2e4): KL = log p0 - log q0 = 2e4 exactly.
    p = torch.tensor([[1e4, -1e4]])
    q = torch.tensor([[-1e4, 1e4]])
    assert D.kl(p, q).item() == pytest.approx(2e4, rel=1e-6)
    # Renyi-1/2 = -2 log sum sqrt(p q) = -2 log(2 exp(-1e4)) = 2e4 - 2 log 2
    assert D.renyi(p, q, alpha=0.5).item() == pytest.approx(2e4 - 2 * math.log(2), rel=1e-6)
    assert D.js(p, q).item() == pytest.approx(math.log(2), rel=1e-6)
    assert D.total_variation(p, q).item() == pytest.approx(1.0, rel=1e-6)
    # Pearson chi2 is exp(2e4): beyond the float range, so capped but finite and increasing.
    big = D.pearson_chi2(p, q)
    assert torch.isfinite(big).all() and big.item() > math.exp(49)


def test_zero_probability_classes() -> None:
    ninf = -float("inf")
    # P and Q share a zero class; P has a further zero where Q has mass.
    p = torch.tensor([[0.3, ninf, ninf, 1.2], [ninf, 0.0, 2.0, -1.0]], requires_grad=True)
    q = torch.tensor([[1.0, ninf, 0.5, -0.2], [ninf, 1.0, 0.0, 0.5]], requires_grad=True)
    pp, qq = _probs(p.detach()), _probs(q.detach())
    for name in ["kl", "js", "hellinger2", "total_variation", "pearson_chi2", "alpha"]:
        # references are finite here: p has zeros wherever q has zeros
        out = _fn(name)(p, q)
        assert torch.isfinite(out).all(), name
        torch.testing.assert_close(out.double(), _ref(name, pp, qq), rtol=1e-5, atol=1e-6)
        gp, gq = torch.autograd.grad(out.sum(), (p, q))
        assert torch.isfinite(gp).all() and torch.isfinite(gq).all(), name
    # every divergence stays finite, also where the true value is infinite (Q = 0 < P)
    for name in ALL:
        out = _fn(name)(q, p)
        assert torch.isfinite(out).all(), name
        gq, gp = torch.autograd.grad(out.sum(), (q, p))
        assert torch.isfinite(gp).all() and torch.isfinite(gq).all(), name


def test_half_precision_inputs_are_computed_in_float32() -> None:
    g = torch.Generator().manual_seed(9)
    p, q = torch.randn(2, 8, 50, generator=g)  # values well below the float16 cap exp(10)
    for name in ALL:
        want = _fn(name)(p.half().float(), q.half().float())
        got = _fn(name)(p.half(), q.half())
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_float64(name: str) -> None:
    g = torch.Generator().manual_seed(10)
    for alpha in (0.3, 1.8) if name in ("alpha", "renyi") else (0.5,):
        p = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
        q = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
        fn = _fn(name, alpha)
        assert torch.autograd.gradcheck(lambda a, b, fn=fn: fn(a, b, temperature=1.7), (p, q))


def test_kl_gradient_closed_form() -> None:
    # d KL(P||Q) / d q_logits = q - p
    g = torch.Generator().manual_seed(11)
    p = torch.randn(4, 6, generator=g, dtype=torch.float64)
    q = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(D.kl(p, q).sum(), q)
    torch.testing.assert_close(grad, _probs(q.detach()) - _probs(p))


# ------------------------------------------------------------------ registry, generators, k1-k3


def test_registry_errors_list_valid_names() -> None:
    with pytest.raises(KeyError, match=r"valid names are .*'hellinger2'"):
        D.get("hellinger")
    with pytest.raises(ValueError, match="needs an alpha"):
        D.get("alpha")
    with pytest.raises(ValueError, match="alpha in"):
        D.get("alpha", alpha=1.0)
    with pytest.raises(ValueError, match="takes no parameters"):
        D.get("kl", alpha=0.5)
    with pytest.raises(ValueError, match="same shape"):
        D.kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        D.kl(torch.zeros(2, 3), torch.zeros(2, 3), reduction="batch")
    assert D.get("forward_kl") is D.kl


@pytest.mark.parametrize(
    "name",
    [
        "kl",
        "reverse_kl",
        "symmetric_kl",
        "js",
        "hellinger2",
        "pearson_chi2",
        "neyman_chi2",
        "alpha",
        "total_variation",
    ],
)
def test_generators_reproduce_divergences_and_derivatives(name: str) -> None:
    g = torch.Generator().manual_seed(12)
    p_logits, q_logits = torch.randn(2, 4, 7, generator=g, dtype=torch.float64)
    gen = D.generator(name, alpha=0.3 if name == "alpha" else None)
    p, q = _probs(p_logits), _probs(q_logits)
    want = _fn(name, 0.3)(p_logits, q_logits)
    torch.testing.assert_close(gen.divergence(p, q), want, rtol=1e-9, atol=1e-12)
    assert gen.f(torch.ones(1, dtype=torch.float64)).abs().item() < 1e-12
    if name == "total_variation":
        return
    u = torch.linspace(0.2, 5.0, 23, dtype=torch.float64, requires_grad=True)
    (f1,) = torch.autograd.grad(gen.f(u).sum(), u, create_graph=True)
    (f2,) = torch.autograd.grad(f1.sum(), u)
    torch.testing.assert_close(gen.f_prime(u.detach()), f1.detach())
    torch.testing.assert_close(gen.weight(u.detach()), u.detach() ** 2 * f2)


def test_kl_estimators_expectations() -> None:
    # E_p[k1] = E_p[k3] = KL(p||q) exactly; k2 >= 0; clip bounds delta.
    g = torch.Generator().manual_seed(13)
    lp = torch.log_softmax(torch.randn(10, generator=g, dtype=torch.float64), -1)
    lq = torch.log_softmax(torch.randn(10, generator=g, dtype=torch.float64), -1)
    true_kl = D.kl(lp, lq).item()
    p = lp.exp()
    for kind in ("k1", "k3"):
        assert (p * D.kl_estimate(lp, lq, kind)).sum().item() == pytest.approx(true_kl, rel=1e-9)
    k2 = D.kl_estimate(lp, lq, "k2")
    torch.testing.assert_close(k2, 0.5 * (lp - lq) ** 2)
    assert (D.kl_estimate(lp, lq, "k3") >= 0).all()
    huge = D.kl_estimate(torch.tensor([-500.0]), torch.tensor([0.0]), "k3", clip=20.0)
    assert huge.item() == pytest.approx(math.expm1(20) - 20, rel=1e-6)
    with pytest.raises(ValueError, match="k1"):
        D.kl_estimate(lp, lq, "k4")
