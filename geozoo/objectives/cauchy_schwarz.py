"""Cauchy-Schwarz divergence between sample sets, and its conditional form (CS-IB).

The Cauchy-Schwarz divergence of two densities is
``D_CS(p||q) = -2 log int p q + log int p^2 + log int q^2`` (Principe 2010, "Information
theoretic learning", Eq. 2.75).  With Gaussian kernel density estimates from samples
``x_1..x_m ~ p`` and ``y_1..y_n ~ q`` the integrals become kernel sums, and the normalisers
``1/m^2``, ``1/n^2`` and ``1/(mn)`` cancel:

    D_CS = log sum K_xx + log sum K_yy - 2 log sum K_xy,   K(a, b) = exp(-|a - b|^2 / (2 sigma^2))

(Yu et al. 2024, "Cauchy-Schwarz divergence information bottleneck for regression", Eq. 7).
Each ``log sum`` is a ``logsumexp`` over the flattened kernel exponent, so kernels far below
the float range do not underflow to ``log 0``.

:func:`conditional_cauchy_schwarz` is the estimator of ``D_CS(p(y|x) || q(y_hat|x))`` used as the
prediction term of CS-IB (Yu et al. 2024, Eq. 18, natural logarithm instead of base 2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["cauchy_schwarz", "conditional_cauchy_schwarz", "gaussian_log_kernel"]


def _as_points(x: Tensor, name: str) -> Tensor:
    if x.ndim == 1:
        return x.unsqueeze(-1)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N,) or (N, D), got {tuple(x.shape)}")
    return x


def _check_sigma(sigma: float) -> None:
    if not (isinstance(sigma, int | float) and sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")


def gaussian_log_kernel(a: Tensor, b: Tensor, sigma: float) -> Tensor:
    """``log K(a_i, b_j) = -|a_i - b_j|^2 / (2 sigma^2)``, shape ``(len(a), len(b))``."""
    _check_sigma(sigma)
    a, b = _as_points(a, "a"), _as_points(b, "b")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"points have different dimensions: {a.shape[-1]} and {b.shape[-1]}")
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    a, b = a.to(dtype), b.to(dtype)
    sq = (a.unsqueeze(1) - b.unsqueeze(0)).square().sum(-1)  # exact, no |a|^2+|b|^2-2ab cancel
    return -sq / (2.0 * sigma**2)


def cauchy_schwarz(x: Tensor, y: Tensor, sigma: float = 1.0) -> Tensor:
    """Cauchy-Schwarz divergence between the sample sets ``x (m, D)`` and ``y (n, D)``.

    Symmetric, non-negative, zero when the two sets are equal, invariant to a common
    translation or rotation of both sets.

    Args:
        x, y: samples (``(N,)`` is read as ``(N, 1)``).
        sigma: Gaussian kernel width.

    Returns:
        A scalar (float32 at least).
    """
    lxx = torch.logsumexp(gaussian_log_kernel(x, x, sigma).flatten(), 0)
    lyy = torch.logsumexp(gaussian_log_kernel(y, y, sigma).flatten(), 0)
    lxy = torch.logsumexp(gaussian_log_kernel(x, y, sigma).flatten(), 0)
    return lxx + lyy - 2.0 * lxy


def conditional_cauchy_schwarz(x: Tensor, y: Tensor, y_hat: Tensor, sigma: float = 1.0) -> Tensor:
    """Conditional CS divergence ``D_CS(p(y|x) || q(y_hat|x))`` from paired samples.

    With ``K = K(x_i, x_j)``, ``L1 = K(y_i, y_j)``, ``L2 = K(y_hat_i, y_hat_j)`` and
    ``L21 = K(y_hat_i, y_j)``, and ``T(L) = sum_j [sum_i K_ji L_ji / (sum_i K_ji)^2]``:

        D = log T(L1) + log T(L2) - 2 log T(L21)     (Yu et al. 2024, Eq. 18)

    All sums are taken as ``logsumexp``.  Used as the CS-IB prediction loss for regression
    (``y_hat`` the network's predictions); zero when ``y_hat == y``.

    Args:
        x: inputs ``(N, D_x)``; y: targets ``(N, D_y)``; y_hat: predictions like ``y``.
        sigma: one kernel width for all three spaces (the paper's code uses 1).
    """
    x, y, y_hat = _as_points(x, "x"), _as_points(y, "y"), _as_points(y_hat, "y_hat")
    if not (x.shape[0] == y.shape[0] == y_hat.shape[0]):
        raise ValueError(
            f"x, y and y_hat must have the same number of samples, got {x.shape[0]}, "
            f"{y.shape[0]} and {y_hat.shape[0]}"
        )
    if y.shape != y_hat.shape:
        raise ValueError(
            f"y and y_hat must have the same shape, got {tuple(y.shape)} and {tuple(y_hat.shape)}"
        )
    log_k = gaussian_log_kernel(x, x, sigma)  # symmetric: K_ji = K_ij
    log_norm = 2.0 * torch.logsumexp(log_k, dim=1)  # log (sum_i K_ji)^2, per j

    def log_term(log_l: Tensor) -> Tensor:
        return torch.logsumexp(torch.logsumexp(log_k + log_l, dim=1) - log_norm, dim=0)

    t1 = log_term(gaussian_log_kernel(y, y, sigma))
    t2 = log_term(gaussian_log_kernel(y_hat, y_hat, sigma))
    # row j of L21 pairs y_hat_j with y_i: K(y_hat_j, y_i)
    t21 = log_term(gaussian_log_kernel(y_hat, y, sigma))
    return t1 + t2 - 2.0 * t21
