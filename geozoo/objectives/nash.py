"""Nash learning from preferences by mirror prox (Nash-MP), on tabular or small policies.

A preference game (Munos et al. 2024, "Nash learning from human feedback") has a preference
matrix ``P[y, y'] = P(y > y')`` with ``P + P^T = 1`` and a reference policy ``pi_ref``; the
beta-regularised game is the symmetric two-player zero-sum game

.. math::

    \\max_\\pi \\min_{\\pi'} \\; P(\\pi \\succ \\pi') - \\beta KL(\\pi \\| \\pi_{ref})
    + \\beta KL(\\pi' \\| \\pi_{ref}),

whose unique Nash equilibrium is symmetric and solves the fixed point
``pi*(y) ∝ pi_ref(y) exp(P(y > pi*) / beta)``.  Nash-MP (Tiapkin et al. 2025, "Accelerating
Nash learning from human feedback via mirror prox") takes two proximal steps with step
size ``eta`` per iteration, both anchored at ``pi_k``:

.. math::

    \\pi_{k+1/2} = \\arg\\max_\\pi \\; \\eta P(\\pi \\succ \\pi_k)
        - \\eta\\beta KL(\\pi \\| \\pi_{ref}) - KL(\\pi \\| \\pi_k),

    \\pi_{k+1} = \\arg\\max_\\pi \\; \\eta P(\\pi \\succ \\pi_{k+1/2})
        - \\eta\\beta KL(\\pi \\| \\pi_{ref}) - KL(\\pi \\| \\pi_k),

each solved in closed form on the simplex:
``log pi ∝ (log pi_k + eta beta log pi_ref + eta P(. > pi_other)) / (1 + eta beta)``.
The extrapolation step is what makes the *last* iterate converge linearly (the paper's rate
for the KL to ``pi*`` is ``(1 + 2 beta)^(-N/2)`` at its step size) on games where plain mirror
descent (the same update with ``pi_other = pi_k``, one step) spirals around the equilibrium.

* :class:`PreferenceGame`: the matrix, the reference, beta; payoffs, best response and the
  duality gap (zero exactly at the regularised equilibrium).
* :func:`mirror_prox_step`, :func:`mirror_descent_step`, :func:`solve`: the tabular updates.
* :func:`proximal_loss`: the loss whose minimiser is one proximal step, for small parametric
  policies trained by gradient steps (the paper's practical variant approximates each step
  this way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "PreferenceGame",
    "mirror_descent_step",
    "mirror_prox_step",
    "proximal_loss",
    "solve",
]


def _matvec(matrix: Tensor, vector: Tensor) -> Tensor:
    return (matrix * vector.unsqueeze(-2)).sum(-1)


@dataclass
class PreferenceGame:
    """A beta-regularised preference game over ``n`` responses.

    Args:
        preference: ``(..., n, n)`` matrix with ``preference[y, z] = P(y > z)`` in ``[0, 1]`` and
            ``P + P^T = 1`` (so ``P(y > y) = 1/2``); leading axes are contexts (prompts).
        reference: ``(..., n)`` reference probabilities, positive, summing to 1.
        beta: the regularisation strength, positive.

    Values are computed in float64 (the game is small; the equilibrium checks are exact).
    """

    preference: Tensor
    reference: Tensor
    beta: float

    def __post_init__(self) -> None:
        p = torch.as_tensor(self.preference, dtype=torch.float64)
        ref = torch.as_tensor(self.reference, dtype=torch.float64)
        if p.ndim < 2 or p.shape[-1] != p.shape[-2] or p.shape[-1] < 1:
            raise ValueError(f"preference must have shape (..., n, n), got {tuple(p.shape)}")
        if ((p < 0) | (p > 1)).any() or not torch.allclose(p + p.mT, torch.ones_like(p)):
            raise ValueError(
                "preference must hold probabilities P(y > z) in [0, 1] with P + P^T = 1"
            )
        if ref.shape[-1] != p.shape[-1]:
            raise ValueError(
                f"reference has {ref.shape[-1]} responses but preference has {p.shape[-1]}"
            )
        if (ref <= 0).any() or not torch.allclose(ref.sum(-1), torch.ones((), dtype=torch.float64)):
            raise ValueError("reference must be positive probabilities that sum to 1")
        if not (isinstance(self.beta, int | float) and self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a positive finite number, got {self.beta!r}")
        self.preference, self.reference, self.beta = p, ref, float(self.beta)

    @property
    def log_reference(self) -> Tensor:
        return self.reference.log()

    def preference_against(self, pi_other: Tensor) -> Tensor:
        """``P(y > pi_other)`` for every response ``y``: ``P @ pi_other``."""
        return _matvec(self.preference, pi_other.to(torch.float64))

    def win_rate(self, pi: Tensor, pi_other: Tensor) -> Tensor:
        """``P(pi > pi_other) = pi^T P pi_other``."""
        return (pi.to(torch.float64) * self.preference_against(pi_other)).sum(-1)

    def kl_to_reference(self, pi: Tensor) -> Tensor:
        pi = pi.to(torch.float64)
        return torch.xlogy(pi, pi).sum(-1) - (pi * self.log_reference).sum(-1)

    def payoff(self, pi: Tensor, pi_other: Tensor) -> Tensor:
        """The regularised payoff of the max player:
        ``P(pi > pi') - beta KL(pi||ref) + beta KL(pi'||ref)``."""
        return (
            self.win_rate(pi, pi_other)
            - self.beta * self.kl_to_reference(pi)
            + self.beta * self.kl_to_reference(pi_other)
        )

    def best_response(self, pi_other: Tensor) -> Tensor:
        """``argmax_pi payoff(pi, pi_other) = softmax(log ref + P(. > pi_other) / beta)``."""
        logits = self.log_reference + self.preference_against(pi_other) / self.beta
        return torch.softmax(logits, -1)

    def gap(self, pi: Tensor) -> Tensor:
        """Duality gap of the symmetric profile ``(pi, pi)``, ``>= 0`` and ``0`` only at the
        regularised Nash equilibrium.

        ``max_a payoff(a, pi) - min_b payoff(pi, b)``, which with ``P^T = 1 - P`` is
        ``2 beta log E_ref exp(P(. > pi) / beta) - 1 + 2 beta KL(pi || ref)``.
        """
        lse = torch.logsumexp(self.log_reference + self.preference_against(pi) / self.beta, -1)
        return 2.0 * self.beta * lse - 1.0 + 2.0 * self.beta * self.kl_to_reference(pi)


def _check_eta(eta: float) -> float:
    if not (isinstance(eta, int | float) and eta > 0 and math.isfinite(eta)):
        raise ValueError(f"step size eta must be a positive finite number, got {eta!r}")
    return float(eta)


def _prox(log_anchor: Tensor, game: PreferenceGame, pi_other: Tensor, eta: float) -> Tensor:
    """Closed-form ``argmax_pi eta P(pi > pi_other) - eta beta KL(pi||ref) - KL(pi||anchor)``."""
    eb = eta * game.beta
    logits = (log_anchor + eb * game.log_reference + eta * game.preference_against(pi_other)) / (
        1.0 + eb
    )
    return torch.log_softmax(logits, -1)


def mirror_prox_step(log_pi: Tensor, game: PreferenceGame, eta: float) -> Tensor:
    """One Nash-MP iteration (two proximal steps from ``pi_k``); log-probabilities in and out."""
    eta = _check_eta(eta)
    log_pi = torch.log_softmax(log_pi.to(torch.float64), -1)
    log_half = _prox(log_pi, game, log_pi.exp(), eta)
    return _prox(log_pi, game, log_half.exp(), eta)


def mirror_descent_step(log_pi: Tensor, game: PreferenceGame, eta: float) -> Tensor:
    """One step of plain (regularised) mirror descent in self-play: the prox against
    ``pi_k`` itself.  The baseline Nash-MP improves on."""
    eta = _check_eta(eta)
    log_pi = torch.log_softmax(log_pi.to(torch.float64), -1)
    return _prox(log_pi, game, log_pi.exp(), eta)


def solve(
    game: PreferenceGame,
    eta: float,
    iterations: int,
    method: Literal["mirror_prox", "mirror_descent"] = "mirror_prox",
    init: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Run ``iterations`` tabular updates from ``init`` (default: the reference).

    Args:
        game: the regularised preference game.
        eta: step size.  Mirror prox is stable for ``eta`` up to about the inverse of the
            operator's Lipschitz constant (``1 / max |P - 1/2|`` for the simplex with KL);
            larger steps oscillate.  The paper's practical setting ties ``eta`` to ``beta``;
            here it is free.
        iterations: number of iterations (mirror prox evaluates the preference twice per
            iteration; compare it with ``2 * iterations`` mirror descent steps for equal cost).
        method: ``"mirror_prox"`` (Nash-MP) or ``"mirror_descent"``.
        init: ``(..., n)`` initial log-probabilities (normalised here).

    Returns:
        ``(log_pi, gaps)``: the last iterate's log-probabilities and the duality gap after each
        iteration, shape ``(iterations, ...)``.
    """
    steps = {"mirror_prox": mirror_prox_step, "mirror_descent": mirror_descent_step}
    if method not in steps:
        raise ValueError(f"method must be one of {sorted(steps)}, got {method!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
    log_pi = game.log_reference.clone() if init is None else init.to(torch.float64)
    if log_pi.shape[-1] != game.reference.shape[-1]:
        raise ValueError(
            f"init has {log_pi.shape[-1]} responses, the game {game.reference.shape[-1]}"
        )
    log_pi = torch.log_softmax(log_pi, -1)
    gaps = []
    for _ in range(iterations):
        log_pi = steps[method](log_pi, game, eta)
        gaps.append(game.gap(log_pi.exp()))
    history = torch.stack(gaps) if gaps else log_pi.new_zeros((0, *log_pi.shape[:-1]))
    return log_pi, history


def proximal_loss(
    logits: Tensor, log_anchor: Tensor, pi_other: Tensor, game: PreferenceGame, eta: float
) -> Tensor:
    """``-P(pi > pi_other) + beta KL(pi||ref) + KL(pi||anchor) / eta`` for ``pi = softmax(logits)``.

    Exact over the response set (no sampling).  Its minimiser over the simplex is the proximal
    step :func:`mirror_prox_step` takes in closed form; minimising it by a few gradient steps on
    a parametric policy's logits (the anchor and the opponent held fixed) is the practical
    Nash-MP.  Returns one value per context (shape ``(...)``); finite for logits of ``+-1e4``.
    """
    eta = _check_eta(eta)
    log_pi = torch.log_softmax(logits.to(torch.float64), -1)
    pi = log_pi.exp()
    anchor = torch.log_softmax(log_anchor.to(torch.float64), -1).detach()
    win = (pi * game.preference_against(pi_other.detach())).sum(-1)
    kl_ref = (pi * (log_pi - game.log_reference)).sum(-1)
    kl_anchor = (pi * (log_pi - anchor)).sum(-1)
    return -win + game.beta * kl_ref + kl_anchor / eta
