"""Best-of-N sampling and its exact KL divergence to the base policy.

Best-of-N draws ``N`` independent samples from a base policy ``pi_ref`` and keeps the one with
the highest reward.  Its distribution, for a finite label set with rewards ``r_y`` (Beirami et
al. 2024, "Theoretical guarantees on the best-of-n alignment policy"; ties split uniformly at
random among the tied samples), is

.. math::

    \\pi_{BoN}(y) = \\frac{F(r_y)^N - F^-(r_y)^N}{P_{ref}(r = r_y)} \\, \\pi_{ref}(y),
    \\qquad F(u) = P_{ref}(r \\le u), \\; F^-(u) = P_{ref}(r < u),

and ``KL(pi_BoN || pi_ref) = sum_y pi_BoN(y) log(pi_BoN(y) / pi_ref(y))``.  The classic formula
``log N - (N - 1) / N`` is exact when no two outcomes share a reward (a continuous reward
distribution); in general it is an upper bound (Beirami et al. 2024).  Yang et al. 2024
("Asymptotics of language model alignment") show best-of-N is asymptotically equivalent to the
KL-optimal tilt ``pi_ref e^{lambda r}``.

* :func:`select_best`: the index of the best of ``N`` candidates, ties broken uniformly.
* :func:`best_of_n`: draw ``N`` candidates from any sampler and keep the best by any reward.
* :func:`best_of_n_probs`, :func:`best_of_n_kl`: the exact distribution and KL above.
* :func:`best_of_n_kl_bound`: ``log N - (N - 1) / N``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "best_of_n",
    "best_of_n_kl",
    "best_of_n_kl_bound",
    "best_of_n_probs",
    "select_best",
]


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"N must be a positive integer, got {n!r}")
    return n


def best_of_n_kl_bound(n: int) -> float:
    """``log N - (N - 1) / N``: the KL of best-of-N to its base policy without reward ties
    (exact then), an upper bound otherwise."""
    n = _check_n(n)
    return math.log(n) - (n - 1) / n


def select_best(rewards: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The index of the highest reward along the last axis, ties broken uniformly at random.

    Args:
        rewards: ``(..., N)`` rewards of ``N`` candidates; NaN rewards are refused.
        generator: random generator for the tie-breaking.

    Returns:
        ``(...)`` long indices.
    """
    if not isinstance(rewards, Tensor) or rewards.ndim == 0 or rewards.shape[-1] == 0:
        raise ValueError(
            "rewards must be a tensor of shape (..., N) with N >= 1 candidates, got "
            f"{tuple(rewards.shape) if isinstance(rewards, Tensor) else type(rewards).__name__}"
        )
    if torch.isnan(rewards).any():
        raise ValueError("rewards contain NaN: best-of-N needs comparable rewards")
    at_max = rewards == rewards.amax(-1, keepdim=True)
    # a uniform key per candidate, -1 where the candidate is not a maximiser
    keys = torch.rand(rewards.shape, generator=generator, device=rewards.device)
    return torch.where(at_max, keys, keys.new_tensor(-1.0)).argmax(-1)


def best_of_n(
    sample: Callable[[], Tensor],
    reward: Callable[[Tensor], Tensor],
    n: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw ``n`` batches from ``sample`` and keep, per batch element, the best by ``reward``.

    Args:
        sample: ``sample()`` returns one batch of candidates, shape ``(B, ...)`` (e.g. a
            policy's sampled responses for ``B`` prompts, or sampled labels).
        reward: ``reward(candidates)`` returns ``(B,)`` rewards for one batch.
        n: the number of candidates per element.
        generator: random generator for the tie-breaking (the sampler has its own).

    Returns:
        ``(best, best_reward)``: the chosen candidates ``(B, ...)`` and their rewards ``(B,)``.
    """
    n = _check_n(n)
    candidates = [sample() for _ in range(n)]
    rewards = torch.stack([torch.as_tensor(reward(c)) for c in candidates], dim=-1)
    if rewards.ndim != 2 or rewards.shape[0] != candidates[0].shape[0]:
        raise ValueError(
            f"reward must return one value per batch element, shape ({candidates[0].shape[0]},), "
            f"got {tuple(rewards.shape[:-1])}"
        )
    index = select_best(rewards, generator)
    stacked = torch.stack(candidates, dim=1)  # (B, N, ...)
    rows = torch.arange(stacked.shape[0], device=stacked.device)
    return stacked[rows, index.to(stacked.device)], rewards[rows, index]


def best_of_n_probs(ref_probs: Tensor, rewards: Tensor, n: int) -> Tensor:
    """The exact best-of-``n`` distribution over a finite label set (ties split uniformly).

    Args:
        ref_probs: ``(..., C)`` base probabilities (non-negative, summing to 1 per row).
        rewards: ``(..., C)`` reward of each label (broadcast against ``ref_probs``).
        n: the number of samples.

    Returns:
        ``(..., C)`` probabilities, computed in float64 for float64 input, else float32.
    """
    n = _check_n(n)
    if ref_probs.ndim == 0 or ref_probs.shape[-1] == 0:
        raise ValueError(f"ref_probs must have shape (..., C) with C >= 1, got {ref_probs.shape}")
    dtype = torch.float64 if ref_probs.dtype == torch.float64 else torch.float32
    p = ref_probs.to(dtype)
    atol = max(1e-4, 10 * torch.finfo(ref_probs.dtype).eps)  # bf16/fp16 inputs round more
    if (p < 0).any() or not torch.allclose(p.sum(-1), p.new_ones(()), atol=atol):
        raise ValueError("ref_probs must be non-negative and sum to 1 over the last axis")
    p = p / p.sum(-1, keepdim=True)  # exactly normalised (inputs may be rounded)
    r = torch.broadcast_to(rewards.to(dtype), p.shape)
    # same[..., y, z] = 1 when labels y and z have the same reward, above[..] when r_z > r_y
    same = (r.unsqueeze(-1) == r.unsqueeze(-2)).to(dtype)
    above = (r.unsqueeze(-1) < r.unsqueeze(-2)).to(dtype)
    mass_equal = (same * p.unsqueeze(-2)).sum(-1)  # P(r = r_y)
    tail = (above * p.unsqueeze(-2)).sum(-1).clamp(0.0, 1.0)  # 1 - F(r_y)
    tail_equal = (tail + mass_equal).clamp(0.0, 1.0)  # 1 - F^-(r_y)
    # P(best reward = r_y) = F^n - (F^-)^n, written with the upper tails so that it stays
    # accurate when both are close to 1 (no cancellation of two powers near 1)
    log_f = n * torch.log1p(-tail)
    log_f_lower = n * torch.log1p(-tail_equal)
    level_mass = torch.where(
        tail_equal < 1.0,
        torch.exp(log_f_lower) * torch.expm1((log_f - log_f_lower).clamp_max(700.0)),
        torch.exp(log_f),
    )
    share = torch.where(mass_equal > 0, p / mass_equal.clamp_min(torch.finfo(dtype).tiny), 0.0)
    return level_mass * share


def best_of_n_kl(ref_probs: Tensor, rewards: Tensor, n: int) -> Tensor:
    """``KL(pi_BoN || pi_ref)`` for a finite label set, exact (see :func:`best_of_n_probs`).

    Returns one value per row (shape ``(...)``); it is at most :func:`best_of_n_kl_bound`.
    """
    bon = best_of_n_probs(ref_probs, rewards, n)
    p = ref_probs.to(bon.dtype)
    p = p / p.sum(-1, keepdim=True)
    log_ratio = torch.where(
        bon > 0,
        bon.clamp_min(torch.finfo(bon.dtype).tiny).log()
        - p.clamp_min(torch.finfo(bon.dtype).tiny).log(),
        0.0,
    )
    return (bon * log_ratio).sum(-1)
