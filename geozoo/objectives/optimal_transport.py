"""Entropic optimal transport (log-domain Sinkhorn) and the SinKD batch-wise distillation loss.

:func:`sinkhorn` solves, for every row ``k`` of a batch,

    min_P  <P, C_k> - epsilon H(P)   subject to   P 1 = p_k,  P^T 1 = q_k,  P >= 0

(Cuturi 2013, "Sinkhorn distances", Eq. 2) with the potential updates written in the log domain
(Peyre and Cuturi 2019, "Computational optimal transport", Remark 4.23), so that ``epsilon``
can be small (1e-3 and below for costs in [0, 1]) where ``exp(-C / epsilon)`` underflows and the
plain Sinkhorn iteration produces NaN.  It returns the transport cost ``<P, C>`` of the regularised
plan (without the entropy term, like POT's ``sinkhorn2``), the plan itself on request, the
number of iterations and the final marginal error.

:func:`sinkd_loss` is the batch-wise Sinkhorn loss of SinKD (Cui et al. 2024, "SinKD: Sinkhorn
distance minimization for knowledge distillation", Sec. 3.2): the B student and B teacher
output distributions are two point clouds on the simplex, the cost between student row ``i`` and
teacher row ``j`` is their L1 distance, and the loss is the Sinkhorn transport cost between the
two clouds.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

__all__ = ["SinkhornResult", "sinkd_loss", "sinkhorn"]


class SinkhornResult(NamedTuple):
    """What :func:`sinkhorn` returns.

    Attributes:
        cost: ``<P, C>`` per batch row, shape ``(B,)`` (or ``()`` for unbatched input).
        plan: the transport plan ``(B, n, m)`` when ``return_plan=True``, else ``None``.
        iterations: the number of (row, column) update pairs run.
        marginal_error: the largest L1 error of the plan's row sums against ``p`` over the
            batch, measured after the last column update (the column sums are then exact).
    """

    cost: Tensor
    plan: Tensor | None
    iterations: int
    marginal_error: float


def _safe_log(x: Tensor) -> Tensor:
    """``log x`` with ``log 0 = -inf`` and a zero (not NaN) gradient at the zeros."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).log(), -math.inf)


#: Largest spread ``(max C - min C) / epsilon`` for which the matrix-product form of the
#: log-sum-exp cannot underflow the dominant term of any sum (exp underflows near -745 in
#: float64 and -87 in float32; a margin is kept).
_MATMUL_SPREAD = {torch.float64: 600.0, torch.float32: 60.0}


def _matmul_lse(log_k: Tensor):
    """Row and column log-sum-exp against ``log_k`` through matrix products.

    ``log sum_j exp(log_k_ij + v_j) = r_i + w + log sum_j K_ij exp(v_j - w)`` with the row-shifted
    kernel ``K_ij = exp(log_k_ij - r_i)``, ``r_i = max_j log_k_ij`` and ``w = max_j v_j``.  The
    largest summand is at least ``exp(-spread)``, so nothing that matters underflows while the
    spread of ``log_k`` stays below :data:`_MATMUL_SPREAD`; one GEMM replaces ``n * m``
    exponentials per update.
    """
    r = log_k.amax(-1, keepdim=True)  # (B|1, n, 1)
    k_rows = (log_k - r).exp()
    col = log_k.amax(-2, keepdim=True)  # (B|1, 1, m)
    k_cols = (log_k - col).exp()
    r, col = r.squeeze(-1), col.squeeze(-2)

    def row_lse(v: Tensor) -> Tensor:
        w = v.amax(-1, keepdim=True).detach()
        w = torch.where(torch.isfinite(w), w, torch.zeros_like(w))
        s = torch.matmul(k_rows, (v - w).exp().unsqueeze(-1)).squeeze(-1)
        return r + w + s.log()

    def col_lse(u: Tensor) -> Tensor:
        w = u.amax(-1, keepdim=True).detach()
        w = torch.where(torch.isfinite(w), w, torch.zeros_like(w))
        s = torch.matmul((u - w).exp().unsqueeze(-2), k_cols).squeeze(-2)
        return col + w + s.log()

    return row_lse, col_lse


def _row_error(u: Tensor, lse_r: Tensor, a: Tensor) -> float:
    """Largest L1 error of the plan's row sums ``exp(u + lse_r)`` against ``a``."""
    return float(((u + lse_r).exp() - a).abs().sum(-1).max())


def _as_batch(x: Tensor, name: str) -> Tensor:
    if x.ndim == 1:
        return x.unsqueeze(0)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n,) or (B, n), got {tuple(x.shape)}")
    return x


def sinkhorn(
    p: Tensor,
    q: Tensor,
    cost: Tensor,
    epsilon: float = 0.1,
    iters: int = 1000,
    tol: float | None = 1e-6,
    check_every: int = 10,
    grad: Literal["autodiff", "last_step"] = "autodiff",
    return_plan: bool = False,
    backend: Literal["auto", "matmul", "logsumexp"] = "auto",
) -> SinkhornResult:
    """Batched log-domain Sinkhorn between histograms ``p`` and ``q`` for the cost ``cost``.

    Args:
        p: source marginals, shape ``(n,)`` or ``(B, n)``, non-negative; zeros are allowed.
        q: target marginals, shape ``(m,)`` or ``(B, m)`` with the same total mass per row.
        cost: ``(n, m)`` (shared) or ``(B, n, m)``.
        epsilon: entropic regularisation (in the units of ``cost``).
        iters: the maximum number of iterations.
        tol: stop once the L1 error of every row's plan marginal against ``p`` is below ``tol``
            (checked every ``check_every`` iterations); ``None`` runs exactly ``iters``.
        check_every: iterations between two checks of the stopping rule.
        grad: ``"autodiff"`` differentiates through every iteration (memory grows with the
            iterations: use it with a few tens of them, as SinKD does); ``"last_step"`` iterates
            without a graph and differentiates only the last update pair, starting from the
            converged potentials (cheap; the gradient of the converged plan up to the error of
            one step).
        return_plan: also return the plan ``(B, n, m)``.
        backend: how the log-sum-exps of the updates are evaluated.  ``"logsumexp"``: explicitly
            over ``(B, n, m)`` arrays, valid for any ``epsilon``.  ``"matmul"``: as matrix
            products with max-shifted kernels (about 10x faster), exact while
            ``(max C - min C) / epsilon`` stays below 600 in float64 (60 in float32).
            ``"auto"`` picks ``"matmul"`` when that holds.  The potentials are always kept in the
            log domain.

    Returns:
        A :class:`SinkhornResult`.  The computation runs in the promoted float dtype of the
        inputs (float32 at least).
    """
    if not (isinstance(epsilon, int | float) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
    if not (isinstance(iters, int) and iters >= 1):
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    if grad not in ("autodiff", "last_step"):
        raise ValueError(f"grad must be 'autodiff' or 'last_step', got {grad!r}")
    unbatched = p.ndim == 1 and q.ndim == 1 and cost.ndim == 2
    a, b = _as_batch(p, "p"), _as_batch(q, "q")
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), cost.dtype)
    dtype = torch.promote_types(dtype, torch.float32)
    a, b = a.to(dtype), b.to(dtype)
    c = cost.to(dtype)
    if c.ndim == 2:
        c = c.unsqueeze(0)
    if c.ndim != 3 or c.shape[-2] != a.shape[-1] or c.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"cost must have shape (n, m) or (B, n, m) with n={a.shape[-1]} (from p) and "
            f"m={b.shape[-1]} (from q), got {tuple(cost.shape)}"
        )
    batch = max(a.shape[0], b.shape[0], c.shape[0])
    for name, x in (("p", a), ("q", b), ("cost", c)):
        if x.shape[0] not in (1, batch):
            raise ValueError(f"batch sizes differ: {name} has {x.shape[0]} rows, expected {batch}")
    if bool((a < 0).any()) or bool((b < 0).any()):
        raise ValueError("sinkhorn marginals p and q must be non-negative")
    mass_a, mass_b = a.sum(-1), b.sum(-1)
    if not torch.allclose(mass_a.detach(), mass_b.detach(), rtol=1e-4, atol=1e-6):
        raise ValueError(
            "p and q must have the same total mass per row (balanced transport), got "
            f"{mass_a.detach().flatten()[:4].tolist()} and {mass_b.detach().flatten()[:4].tolist()}"
        )

    log_a, log_b = _safe_log(a), _safe_log(b)  # (B|1, n), (B|1, m)
    log_k = -c / epsilon  # (B|1, n, m): log of the Gibbs kernel
    if backend == "auto":
        spread = float((log_k.amax((-2, -1)) - log_k.amin((-2, -1))).max().detach())
        backend = "matmul" if spread <= _MATMUL_SPREAD[dtype] else "logsumexp"
    if backend == "matmul":
        row_lse, col_lse = _matmul_lse(log_k)
    elif backend == "logsumexp":

        def row_lse(v: Tensor) -> Tensor:
            return torch.logsumexp(log_k + v.unsqueeze(-2), dim=-1)

        def col_lse(u: Tensor) -> Tensor:
            return torch.logsumexp(log_k + u.unsqueeze(-1), dim=-2)

    else:
        raise ValueError(f"backend must be 'auto', 'matmul' or 'logsumexp', got {backend!r}")

    # scaled potentials u = f / epsilon, v = g / epsilon; each row update makes the row sums
    # exact, each column update the column sums.  The row sums of the current plan are
    # exp(u + row_lse(v)), which the next row update needs anyway: the check is free.
    done, error = 0, float("nan")
    track = grad == "autodiff" and torch.is_grad_enabled()
    with torch.set_grad_enabled(track):
        v = torch.zeros(batch, b.shape[-1], dtype=dtype, device=b.device)
        lse_r = row_lse(v)
        u = log_a - lse_r
        while done < iters:
            v = log_b - col_lse(u)
            done += 1
            lse_r = row_lse(v)
            if tol is not None and (done % check_every == 0 or done == iters):
                with torch.no_grad():
                    error = _row_error(u, lse_r, a)
                if error < tol:
                    break
            if done < iters:
                u = log_a - lse_r
    if grad == "last_step" and torch.is_grad_enabled():
        u = log_a - row_lse(v.detach())
        v = log_b - col_lse(u)
        lse_r = row_lse(v)
    if tol is None or math.isnan(error):
        with torch.no_grad():
            error = _row_error(u, lse_r, a)
    log_plan = log_k + u.unsqueeze(-1) + v.unsqueeze(-2)
    plan = log_plan.exp()
    value = (plan * c).sum((-2, -1))
    if unbatched:
        value = value.squeeze(0)
        plan = plan.squeeze(0)
    return SinkhornResult(value, plan if return_plan else None, done, error)


def sinkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 2.0,
    epsilon: float = 0.1,
    iters: int = 20,
    tol: float | None = None,
    scale_by_batch: bool = False,
) -> Tensor:
    """SinKD's batch-wise Sinkhorn distance between student and teacher outputs.

    ``p_s = softmax(s / T)``, ``p_t = softmax(t / T)`` (rows of a ``(B, C)`` batch); the cost
    ``W_ij = ||p_s,i - p_t,j||_1`` lies in [0, 2]; the plan between the two uniform clouds is
    found by :func:`sinkhorn` (log domain, ``iters`` iterations, differentiated through) and the
    loss is ``<P, W>`` (Cui et al. 2024, Eq. 9-11).

    Args:
        student_logits, teacher_logits: ``(B, C)`` logits; the teacher's are detached.
        temperature: softmax temperature (SinKD uses 2).
        epsilon: entropic regularisation (SinKD: 0.1).
        iters: Sinkhorn iterations (SinKD: 20).
        tol: optional early stop on the marginal error.
        scale_by_batch: multiply by ``B``, reproducing the released code's unnormalised
            marginals (every row and column of its plan sums to 1).

    Returns:
        A scalar loss.
    """
    if student_logits.ndim != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "sinkd_loss needs student and teacher logits of the same shape (B, C), got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    ps = torch.softmax(student_logits.to(dtype) / temperature, dim=-1)
    pt = torch.softmax(teacher_logits.detach().to(dtype) / temperature, dim=-1)
    cost = (ps.unsqueeze(1) - pt.unsqueeze(0)).abs().sum(-1)  # (B, B)
    batch = ps.shape[0]
    uniform = torch.full((batch,), 1.0 / batch, dtype=dtype, device=ps.device)
    result = sinkhorn(uniform, uniform, cost, epsilon=epsilon, iters=iters, tol=tol)
    return result.cost * batch if scale_by_batch else result.cost
