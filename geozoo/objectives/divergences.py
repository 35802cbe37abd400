"""Divergences between categorical distributions given by logits, computed in log space.

Every function takes two logit tensors of the same shape ``(..., C)`` and returns
``D(P || Q)`` with ``P = softmax(p_logits / temperature)`` and ``Q = softmax(q_logits /
temperature)`` over the last axis: one value per row (shape ``(...)``) unless
``reduction="mean"`` or ``"sum"`` is given.  ``"batchmean"`` is an alias of ``"mean"``: the
sum over classes is always taken first, so ``"mean"`` here is the *per-row* mean that
knowledge distillation needs, never ``torch.nn.functional.kl_div``'s mean over B * C entries.

Numerics (see ``docs/objectives.md``):

* Inputs in float16 / bfloat16 / float32 are computed in float32, float64 stays float64.
* Everything is written with ``log_softmax``, ``logsumexp`` and ``expm1``: logits of +-1e4 give
  finite values and finite gradients.
* Classes with exactly zero probability (logit ``-inf``) are allowed; their log-probability is
  floored at :data:`LOG_FLOOR` (a probability of ``exp(-1e6)``, i.e. exactly 0 in any float
  format), so ``0 * log 0`` terms vanish instead of producing NaN.  A divergence that is truly
  infinite (KL when Q has a zero where P has mass) is then reported as a large finite number.
* The unbounded chi-square and alpha (outside [0, 1]) divergences are exact up to a value of
  about ``exp(log_cap)`` (default ``exp(50)``, ``exp(10)`` for float16 inputs) and continue
  linearly in the log of the value beyond, so they stay finite, with finite non-zero
  gradients, where the true value exceeds the float range.

Definitions (f-divergences ``D_f(P||Q) = sum_c q_c f(p_c / q_c)``; Amari 1985, Csiszar 1967):

=================  =======================================  ==============================
name               D(P || Q)                                generator f(u)
=================  =======================================  ==============================
kl                 sum p log(p/q)                           u log u
reverse_kl         sum q log(q/p)                           -log u
symmetric_kl       kl + reverse_kl (Jeffreys)               (u - 1) log u
js                 (KL(P||M) + KL(Q||M)) / 2, M=(P+Q)/2     (u log u - (u+1) log((u+1)/2))/2
hellinger2         sum (sqrt p - sqrt q)^2                  (sqrt u - 1)^2
total_variation    sum |p - q| / 2                          |u - 1| / 2
pearson_chi2       sum (p - q)^2 / q                        (u - 1)^2
neyman_chi2        sum (p - q)^2 / p                        (1 - u)^2 / u
alpha (Amari)      (1 - sum p^a q^(1-a)) / (a (1 - a))      (u^a - a u - (1 - a))/(a(a-1))
renyi              log(sum p^a q^(1-a)) / (a - 1)           (not an f-divergence)
=================  =======================================  ==============================

The generators with their derivatives and the f-distill weight ``h(r) = r^2 f''(r)`` (Xu, Nie
and Vahdat 2025, "One-step diffusion with f-divergence distribution matching", Eq. 7) are in
:func:`generator`; the sample-based KL estimators k1, k2, k3 (Schulman 2020, "Approximating KL
divergence") are in :func:`kl_estimate`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DIVERGENCES",
    "LOG_FLOOR",
    "FGenerator",
    "alpha_divergence",
    "generator",
    "get",
    "hellinger2",
    "js",
    "kl",
    "kl_estimate",
    "names",
    "neyman_chi2",
    "pearson_chi2",
    "renyi",
    "reverse_kl",
    "symmetric_kl",
    "total_variation",
]

#: Log-probabilities are floored here so that zero-probability classes never produce NaN.
LOG_FLOOR = -1.0e6
#: Default ``log_cap`` of the unbounded divergences (chi-square, alpha outside [0, 1]); float16
#: inputs get :data:`LOG_CAP_FP16` so that gradients cast back to float16 stay finite.
LOG_CAP = 50.0
LOG_CAP_FP16 = 10.0

Reduction = Literal["none", "mean", "batchmean", "sum"]
_LOG2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# helpers


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _scaled_logits(p_logits: Tensor, q_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Both inputs checked, cast to float32 (float64 stays) and divided by ``temperature``."""
    if not isinstance(p_logits, Tensor) or not isinstance(q_logits, Tensor):
        raise TypeError(
            f"expected two logit tensors, got {type(p_logits).__name__} and "
            f"{type(q_logits).__name__}"
        )
    if p_logits.shape != q_logits.shape:
        raise ValueError(
            f"p_logits and q_logits must have the same shape (..., C), got "
            f"{tuple(p_logits.shape)} and {tuple(q_logits.shape)}"
        )
    if p_logits.ndim == 0 or p_logits.shape[-1] == 0:
        raise ValueError(
            f"expected logits of shape (..., C) with C >= 1, got {tuple(p_logits.shape)}"
        )
    if not (isinstance(temperature, int | float) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    dtype = torch.promote_types(_compute_dtype(p_logits), _compute_dtype(q_logits))
    p = p_logits.to(dtype)
    q = q_logits.to(dtype)
    if temperature != 1:
        p = p / temperature
        q = q / temperature
    return p, q


def _log_probs(
    p_logits: Tensor, q_logits: Tensor, temperature: float, floor: bool = True
) -> tuple[Tensor, Tensor]:
    """Float32/64 log-softmax of both inputs at ``temperature`` (floored at LOG_FLOOR)."""
    p, q = _scaled_logits(p_logits, q_logits, temperature)
    lp = F.log_softmax(p, dim=-1)
    lq = F.log_softmax(q, dim=-1)
    # log_softmax of finite logits is finite; only -inf logits (exact zeros) need the floor.
    if floor and not bool(torch.isfinite(p).all() & torch.isfinite(q).all()):
        lp = lp.clamp_min(LOG_FLOOR)
        lq = lq.clamp_min(LOG_FLOOR)
    return lp, lq


def _reduce(values: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "none":
        return values
    if reduction in ("mean", "batchmean"):
        return values.mean()
    if reduction == "sum":
        return values.sum()
    raise ValueError(
        f"reduction must be one of 'none', 'mean', 'batchmean', 'sum'; got {reduction!r}"
    )


def _check_alpha(alpha: float, name: str, excluded: tuple[float, ...]) -> float:
    if not isinstance(alpha, int | float) or not math.isfinite(alpha):
        raise ValueError(f"{name} needs a finite real alpha, got {alpha!r}")
    if float(alpha) in excluded:
        raise ValueError(
            f"{name} is undefined at alpha in {excluded} (a limit: use kl / reverse_kl there), "
            f"got alpha={alpha}"
        )
    return float(alpha)


# --------------------------------------------------------------------------------------------
# the divergences


def kl(
    p_logits: Tensor, q_logits: Tensor, temperature: float = 1.0, reduction: Reduction = "none"
) -> Tensor:
    """Kullback-Leibler divergence ``KL(P||Q) = sum_c p_c (log p_c - log q_c)``.

    In distillation ``P`` is the teacher ("forward" KL, mode covering).  The gradient with
    respect to ``q_logits`` is ``(q - p) / temperature``.
    """
    lp, lq = _log_probs(p_logits, q_logits, temperature)
    return _reduce((lp.exp() * (lp - lq)).sum(-1), reduction)


def reverse_kl(
    p_logits: Tensor, q_logits: Tensor, temperature: float = 1.0, reduction: Reduction = "none"
) -> Tensor:
    """Reverse KL, ``KL(Q||P)``: :func:`kl` with the arguments swapped (mode seeking in Q)."""
    return kl(q_logits, p_logits, temperature, reduction)


def symmetric_kl(
    p_logits: Tensor, q_logits: Tensor, temperature: float = 1.0, reduction: Reduction = "none"
) -> Tensor:
    """Jeffreys divergence ``KL(P||Q) + KL(Q||P) = sum_c (p_c - q_c)(log p_c - log q_c)``."""
    lp, lq = _log_probs(p_logits, q_logits, temperature)
    return _reduce(((lp.exp() - lq.exp()) * (lp - lq)).sum(-1), reduction)


class _JensenShannon(torch.autograd.Function):
    """JS from (already temperature-scaled) logits with the analytic logit gradient.

    With ``m = (p + q) / 2``, ``dJS/dp_c = (log p_c - log m_c) / 2``; through the softmax the
    logit gradient is ``p * (g - <p, g>)``.  Writing it by hand halves the number of passes over
    the ``(B, C)`` arrays compared with autograd (the issue's 2x-of-kl_div budget).
    """

    @staticmethod
    def forward(ctx, p_scaled: Tensor, q_scaled: Tensor) -> Tensor:  # type: ignore[override]
        lp = F.log_softmax(p_scaled, dim=-1)
        lq = F.log_softmax(q_scaled, dim=-1)
        if not bool(torch.isfinite(p_scaled).all() & torch.isfinite(q_scaled).all()):
            lp = lp.clamp_min(LOG_FLOOR)
            lq = lq.clamp_min(LOG_FLOOR)
        lm = torch.logaddexp(lp, lq).sub_(_LOG2)
        p, q = lp.exp(), lq.exp()
        gp = lp.sub_(lm).mul_(0.5)  # in place: lp is no longer needed
        gq = lq.sub_(lm).mul_(0.5)
        kl_pm = (p * gp).sum(-1, keepdim=True)
        kl_qm = (q * gq).sum(-1, keepdim=True)
        ctx.save_for_backward(p, q, gp, gq, kl_pm, kl_qm)
        return (kl_pm + kl_qm).squeeze(-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        p, q, gp, gq, kl_pm, kl_qm = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        grad_p = p * (gp - kl_pm) * g if ctx.needs_input_grad[0] else None
        grad_q = q * (gq - kl_qm) * g if ctx.needs_input_grad[1] else None
        return grad_p, grad_q


def js(
    p_logits: Tensor, q_logits: Tensor, temperature: float = 1.0, reduction: Reduction = "none"
) -> Tensor:
    """Jensen-Shannon divergence ``(KL(P||M) + KL(Q||M)) / 2`` with ``M = (P + Q) / 2``.

    The mixture's log-probability is ``logaddexp(log p, log q) - log 2``, never ``log`` of a sum
    of probabilities.  Symmetric, bounded by ``log 2``.  The gradient is analytic (first order
    only: no double backward).
    """
    p, q = _scaled_logits(p_logits, q_logits, temperature)
    return _reduce(_JensenShannon.apply(p, q), reduction)


def hellinger2(
    p_logits: Tensor, q_logits: Tensor, temperature: float = 1.0, reduction: Reduction = "none"
) -> Tensor:
    """Squared Hellinger distance ``sum_c (sqrt p_c - sqrt q_c)^2 = 2 (1 - BC)``.

    ``BC = sum_c sqrt(p_c q_c)`` is the Bhattacharyya coefficient; ``1 - BC`` is computed as
    ``-expm1(log BC)`` so that it stays accurate when ``P ~ Q``.  Symmetric, in ``[0, 2]``.
    """
    lp, lq = _log_probs(p_logits, q_logits, temperature)
    log_bc = torch.logsumexp(0.5 * (lp + lq), dim=-1)
    return _reduce((-2.0 * torch.expm1(log_bc)).clamp_min(0.0), reduction)


def total_variation(
    p_logits: Tensor, q_logits: Tensor, temperature: float = 1.0, reduction: Reduction = "none"
) -> Tensor:
    """Total variation distance ``sum_c |p_c - q_c| / 2`` (symmetric, in ``[0, 1]``)."""
    lp, lq = _log_probs(p_logits, q_logits, temperature, floor=False)
    return _reduce(0.5 * (lp.exp() - lq.exp()).abs().sum(-1), reduction)


def _log_power_sum(lp: Tensor, lq: Tensor, alpha: float) -> Tensor:
    """``log sum_c p_c^alpha q_c^(1 - alpha)`` as one ``logsumexp`` (finite for finite logits)."""
    return torch.logsumexp(torch.lerp(lq, lp, alpha), dim=-1)


def _cap(log_cap: float | str | None, *inputs: Tensor) -> float | None:
    if log_cap == "auto":
        return LOG_CAP_FP16 if any(x.dtype == torch.float16 for x in inputs) else LOG_CAP
    if log_cap is None or isinstance(log_cap, int | float):
        return log_cap
    raise ValueError(f"log_cap must be a number, None or 'auto', got {log_cap!r}")


def _soft_capped_expm1(log_value: Tensor, cap: float | None) -> Tensor:
    """``expm1(x)`` for ``x <= cap``, continued linearly in ``x`` (with matching slope) above.

    Keeps unbounded divergences finite with finite, non-zero gradients when the true value is
    beyond the float range; exact wherever ``x <= cap``.
    """
    if cap is None:
        return torch.expm1(log_value)
    below = torch.expm1(log_value.clamp_max(cap))
    return below + math.exp(cap) * (log_value - cap).clamp_min(0.0)


def alpha_divergence(
    p_logits: Tensor,
    q_logits: Tensor,
    alpha: float = 0.5,
    temperature: float = 1.0,
    reduction: Reduction = "none",
    log_cap: float | Literal["auto"] | None = "auto",
) -> Tensor:
    """Amari's alpha-divergence ``(1 - sum_c p_c^a q_c^(1-a)) / (a (1 - a))``.

    ``alpha -> 1`` tends to ``KL(P||Q)``, ``alpha -> 0`` to ``KL(Q||P)``; ``alpha = 1/2`` is
    twice the squared Hellinger distance, ``alpha = 2`` half Pearson's chi-square and
    ``alpha = -1`` half Neyman's.  ``sum - 1`` is computed as ``expm1(log sum)``.

    Args:
        alpha: any real number except 0 and 1.
        log_cap: for ``alpha`` outside [0, 1] the sum is unbounded; beyond ``exp(log_cap)`` it
            is continued linearly in its logarithm so values and gradients stay finite (exact
            below).  ``"auto"``: 50, or 10 when an input is float16 (whose range ends at 65504).
            ``None`` disables this.
    """
    alpha = _check_alpha(alpha, "alpha_divergence", (0.0, 1.0))
    lp, lq = _log_probs(p_logits, q_logits, temperature)
    log_sum = _log_power_sum(lp, lq, alpha)
    cap = _cap(log_cap, p_logits, q_logits) if (alpha > 1.0 or alpha < 0.0) else None
    return _reduce(_soft_capped_expm1(log_sum, cap) / (alpha * (alpha - 1.0)), reduction)


def renyi(
    p_logits: Tensor,
    q_logits: Tensor,
    alpha: float = 0.5,
    temperature: float = 1.0,
    reduction: Reduction = "none",
) -> Tensor:
    """Renyi divergence of order ``alpha``: ``log(sum_c p_c^a q_c^(1-a)) / (a - 1)``.

    Entirely in log space (a ``logsumexp``), so it needs no cap.  ``alpha -> 1`` tends to
    ``KL(P||Q)``; ``alpha = 1/2`` is ``-2 log BC``.  ``alpha`` must be positive and not 1.
    """
    alpha = _check_alpha(alpha, "renyi", (1.0,))
    if alpha <= 0:
        raise ValueError(f"renyi needs alpha > 0, got alpha={alpha}")
    lp, lq = _log_probs(p_logits, q_logits, temperature)
    return _reduce(_log_power_sum(lp, lq, alpha) / (alpha - 1.0), reduction)


def _chi2(
    p_logits: Tensor,
    q_logits: Tensor,
    power: float,
    temperature: float,
    reduction: Reduction,
    log_cap: float | Literal["auto"] | None,
) -> Tensor:
    """``sum_c p_c^power q_c^(1 - power) - 1``, soft-capped: Pearson (power 2), Neyman (-1)."""
    lp, lq = _log_probs(p_logits, q_logits, temperature)
    return _reduce(
        _soft_capped_expm1(_log_power_sum(lp, lq, power), _cap(log_cap, p_logits, q_logits)),
        reduction,
    )


def pearson_chi2(
    p_logits: Tensor,
    q_logits: Tensor,
    temperature: float = 1.0,
    reduction: Reduction = "none",
    log_cap: float | Literal["auto"] | None = "auto",
) -> Tensor:
    """Pearson's chi-square ``sum_c (p_c - q_c)^2 / q_c = sum_c p_c^2 / q_c - 1``.

    Unbounded when ``q`` has small entries; see ``log_cap`` in :func:`alpha_divergence`.
    """
    return _chi2(p_logits, q_logits, 2.0, temperature, reduction, log_cap)


def neyman_chi2(
    p_logits: Tensor,
    q_logits: Tensor,
    temperature: float = 1.0,
    reduction: Reduction = "none",
    log_cap: float | Literal["auto"] | None = "auto",
) -> Tensor:
    """Neyman's chi-square ``sum_c (p_c - q_c)^2 / p_c = sum_c q_c^2 / p_c - 1``.

    Unbounded when ``p`` has small entries; see ``log_cap`` in :func:`alpha_divergence`.
    """
    return _chi2(p_logits, q_logits, -1.0, temperature, reduction, log_cap)


# --------------------------------------------------------------------------------------------
# registry

DivergenceFn = Callable[..., Tensor]

#: name -> function; ``alpha`` and ``renyi`` take an extra ``alpha`` keyword.
DIVERGENCES: dict[str, DivergenceFn] = {
    "kl": kl,
    "reverse_kl": reverse_kl,
    "symmetric_kl": symmetric_kl,
    "js": js,
    "hellinger2": hellinger2,
    "total_variation": total_variation,
    "pearson_chi2": pearson_chi2,
    "neyman_chi2": neyman_chi2,
    "alpha": alpha_divergence,
    "renyi": renyi,
}
_ALIASES = {
    "forward_kl": "kl",
    "jeffreys": "symmetric_kl",
    "jensen_shannon": "js",
    "tv": "total_variation",
    "alpha_divergence": "alpha",
}


def names() -> list[str]:
    """The valid divergence names accepted by :func:`get` (aliases excluded)."""
    return sorted(DIVERGENCES)


def get(name: str, **params: float) -> DivergenceFn:
    """The divergence function called ``name``, with ``params`` (e.g. ``alpha``) bound.

    ``get("alpha", alpha=0.5)(p_logits, q_logits)``.  Unknown names raise a ``KeyError`` listing
    the valid ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"divergence name must be a string, got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DIVERGENCES:
        raise KeyError(
            f"unknown divergence {name!r}; valid names are {names()} (aliases: {sorted(_ALIASES)})"
        )
    fn = DIVERGENCES[key]
    if key in ("alpha", "renyi"):
        if "alpha" not in params:
            raise ValueError(
                f"divergence {key!r} needs an alpha parameter, e.g. get({key!r}, alpha=0.5)"
            )
        alpha_check = (0.0, 1.0) if key == "alpha" else (1.0,)
        _check_alpha(params["alpha"], key, alpha_check)
    elif params:
        raise ValueError(f"divergence {key!r} takes no parameters, got {sorted(params)}")
    return functools.partial(fn, **params) if params else fn


# --------------------------------------------------------------------------------------------
# f-divergence generators


@dataclass(frozen=True)
class FGenerator:
    """A convex generator ``f`` with ``f(1) = 0`` and ``D_f(P||Q) = E_Q[f(P/Q)]``.

    Attributes:
        name: the divergence's name.
        f: ``f(u)`` for density ratios ``u = p/q > 0``.
        f_prime: ``f'(u)`` (the f-DPO score of Wang et al. 2024, up to constants).
        weight: ``h(r) = r^2 f''(r)``, the f-distill weighting of the score difference
            (Xu et al. 2025); total variation has ``f'' = 0`` almost everywhere.
    """

    name: str
    f: Callable[[Tensor], Tensor]
    f_prime: Callable[[Tensor], Tensor]
    weight: Callable[[Tensor], Tensor]

    def divergence(self, p: Tensor, q: Tensor) -> Tensor:
        """``sum_c q_c f(p_c / q_c)`` for probability vectors with positive ``q`` (last axis)."""
        return (q * self.f(p / q)).sum(-1)


def _alpha_generator(alpha: float) -> FGenerator:
    a = _check_alpha(alpha, "alpha generator", (0.0, 1.0))
    return FGenerator(
        f"alpha({a})",
        lambda u: (u.pow(a) - a * u - (1.0 - a)) / (a * (a - 1.0)),
        lambda u: (u.pow(a - 1.0) - 1.0) / (a - 1.0),
        lambda r: r.pow(a),
    )


_GENERATORS: dict[str, FGenerator] = {
    "kl": FGenerator("kl", lambda u: torch.xlogy(u, u), lambda u: 1.0 + u.log(), lambda r: r),
    "reverse_kl": FGenerator(
        "reverse_kl", lambda u: -u.log(), lambda u: -u.reciprocal(), torch.ones_like
    ),
    "symmetric_kl": FGenerator(
        "symmetric_kl",
        lambda u: (u - 1.0) * u.log(),
        lambda u: u.log() + 1.0 - u.reciprocal(),
        lambda r: r + 1.0,
    ),
    "js": FGenerator(
        "js",
        lambda u: 0.5 * (torch.xlogy(u, u) - (u + 1.0) * (torch.log1p(u) - _LOG2)),
        lambda u: 0.5 * (u.log() - torch.log1p(u) + _LOG2),
        lambda r: 0.5 * r / (1.0 + r),
    ),
    "hellinger2": FGenerator(
        "hellinger2",
        lambda u: (u.sqrt() - 1.0).square(),
        lambda u: 1.0 - u.rsqrt(),
        lambda r: 0.5 * r.sqrt(),
    ),
    "total_variation": FGenerator(
        "total_variation",
        lambda u: 0.5 * (u - 1.0).abs(),
        lambda u: 0.5 * torch.sign(u - 1.0),
        torch.zeros_like,
    ),
    "pearson_chi2": FGenerator(
        "pearson_chi2",
        lambda u: (u - 1.0).square(),
        lambda u: 2.0 * (u - 1.0),
        lambda r: 2.0 * r.square(),
    ),
    "neyman_chi2": FGenerator(
        "neyman_chi2",
        lambda u: (1.0 - u).square() / u,
        lambda u: 1.0 - u.square().reciprocal(),
        lambda r: 2.0 / r,
    ),
}


def generator(name: str, alpha: float | None = None) -> FGenerator:
    """The f-divergence generator of ``name`` (``"alpha"`` needs ``alpha``); see the table in
    the module docstring.  Renyi is not an f-divergence and has none."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key == "alpha":
        if alpha is None:
            raise ValueError("the alpha generator needs alpha, e.g. generator('alpha', alpha=0.5)")
        return _alpha_generator(alpha)
    if key not in _GENERATORS:
        raise KeyError(
            f"no f-divergence generator for {name!r}; valid names are "
            f"{sorted([*_GENERATORS, 'alpha'])}"
        )
    return _GENERATORS[key]


# --------------------------------------------------------------------------------------------
# sample-based estimators


def kl_estimate(
    logp: Tensor,
    logq: Tensor,
    kind: Literal["k1", "k2", "k3"] = "k3",
    clip: float | None = None,
) -> Tensor:
    """Per-sample estimators of ``KL(p||q)`` from log-probabilities of samples ``x ~ p``.

    With ``delta = log p(x) - log q(x)`` (Schulman 2020, "Approximating KL divergence"):

    * ``k1 = delta``: unbiased for the value; as a loss its gradient has zero mean, so use it as a
      reward penalty.
    * ``k2 = delta^2 / 2``: biased value, but its gradient is the REINFORCE gradient of
      ``KL(p||q)`` on-policy.
    * ``k3 = exp(-delta) - 1 + delta``: unbiased, non-negative and low variance (used by GRPO).

    Args:
        logp, logq: log-probabilities of the same samples under ``p`` (the sampler) and ``q``.
        kind: which estimator.
        clip: if given, ``delta`` is clamped to ``[-clip, clip]`` first (e.g. 20), which keeps
            ``k3`` finite when the policies drift apart.

    Returns:
        One estimate per sample (float32, or float64 for float64 input).
    """
    if logp.shape != logq.shape:
        raise ValueError(
            f"logp and logq must have the same shape, got {tuple(logp.shape)} and "
            f"{tuple(logq.shape)}"
        )
    dtype = torch.promote_types(_compute_dtype(logp), _compute_dtype(logq))
    delta = logp.to(dtype) - logq.to(dtype)
    if clip is not None:
        delta = delta.clamp(-clip, clip)
    if kind == "k1":
        return delta
    if kind == "k2":
        return 0.5 * delta.square()
    if kind == "k3":
        return torch.expm1(-delta) + delta
    raise ValueError(f"kind must be 'k1', 'k2' or 'k3', got {kind!r}")
