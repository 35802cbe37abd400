"""Nash mirror prox: converges to the exact regularised equilibrium, faster than mirror descent."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import root

from geozoo.objectives.nash import (
    PreferenceGame,
    mirror_descent_step,
    mirror_prox_step,
    proximal_loss,
    solve,
)

CYCLIC = 0.5 + 0.5 * torch.tensor([[0.0, 1.0, -1.0], [-1.0, 0.0, 1.0], [1.0, -1.0, 0.0]])
REFERENCE = torch.tensor([0.6, 0.3, 0.1])


def _exact_equilibrium(game: PreferenceGame) -> torch.Tensor:
    """Solve pi = softmax(log ref + P pi / beta) with scipy (an independent solver)."""
    p, log_ref = game.preference.numpy(), game.log_reference.numpy()

    def residual(free: np.ndarray) -> np.ndarray:  # logits with z_0 = 0 fixed (the gauge)
        z = np.concatenate([[0.0], free])
        pi = np.exp(z - z.max())
        pi /= pi.sum()
        target = log_ref + p @ pi / game.beta
        return z[1:] - (target[1:] - target[0])

    sol = root(residual, log_ref[1:] - log_ref[0], tol=1e-14)
    assert sol.success
    return torch.softmax(torch.tensor(np.concatenate([[0.0], sol.x])), -1)


def test_two_response_game_has_the_closed_form_equilibrium():
    # with two responses P(y1 > pi) - P(y2 > pi) = p - 1/2 for every pi: pi* is explicit
    p, beta = 0.8, 0.25
    f64 = {"dtype": torch.float64}
    game = PreferenceGame(
        torch.tensor([[0.5, p], [1 - p, 0.5]], **f64), torch.tensor([0.3, 0.7], **f64), beta
    )
    logit = math.log(0.3 / 0.7) + (p - 0.5) / beta
    star = torch.tensor([1 / (1 + math.exp(-logit)), 1 / (1 + math.exp(logit))], **f64)
    assert torch.allclose(_exact_equilibrium(game), star, atol=1e-12)
    assert abs(game.gap(star).item()) < 1e-12
    log_pi, _ = solve(game, eta=1.0, iterations=60)
    assert torch.allclose(log_pi.exp(), star, atol=1e-10)


@pytest.mark.parametrize("beta", [0.05, 0.2])
def test_mirror_prox_converges_to_the_exact_regularised_equilibrium(beta):
    game = PreferenceGame(CYCLIC, REFERENCE, beta)
    star = _exact_equilibrium(game)
    assert game.gap(star).item() < 1e-12
    # the equilibrium is a best response to itself and beats no profile by more than the gap
    assert torch.allclose(game.best_response(star), star, atol=1e-12)
    init = torch.tensor([0.1, 0.1, 0.8]).log()
    log_pi, gaps = solve(game, eta=1.0, iterations=200, init=init)
    assert torch.allclose(log_pi.exp(), star, atol=1e-8)
    assert (gaps >= -1e-12).all() and gaps[-1] < 1e-12


def test_last_iterate_faster_than_mirror_descent_at_equal_cost():
    game = PreferenceGame(CYCLIC, REFERENCE, 0.05)
    star = _exact_equilibrium(game)
    init = torch.tensor([0.1, 0.1, 0.8]).log()
    for eta in (1.0, 2.0):
        prox, _ = solve(game, eta, iterations=100, init=init)
        # mirror descent gets the same number of preference evaluations (two per prox step)
        descent, _ = solve(game, eta, iterations=200, method="mirror_descent", init=init)
        err_prox = (prox.exp() - star).abs().max().item()
        err_descent = (descent.exp() - star).abs().max().item()
        assert err_prox < 1e-2 * err_descent, (eta, err_prox, err_descent)
        assert game.gap(prox.exp()) < 1e-2 * game.gap(descent.exp())


def test_gap_matches_its_definition_by_brute_force():
    game = PreferenceGame(CYCLIC, REFERENCE, 0.3)
    pi = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    # max_a payoff(a, pi) is attained at the best response; min_b payoff(pi, b) at the
    # best response of the other player, which by symmetry is best_response(pi) too
    br = game.best_response(pi)
    direct = game.payoff(br, pi) - game.payoff(pi, br)
    assert torch.isclose(game.gap(pi), direct)
    grid = torch.distributions.Dirichlet(torch.ones(3, dtype=torch.float64)).sample((2000,))
    assert (game.payoff(grid, pi.expand(2000, 3)) <= game.payoff(br, pi) + 1e-12).all()


def test_proximal_loss_minimiser_is_the_closed_form_step():
    game = PreferenceGame(CYCLIC, REFERENCE, 0.2)
    anchor = torch.tensor([0.1, 0.1, 0.8], dtype=torch.float64).log()
    target = mirror_descent_step(anchor, game, 0.5)
    logits = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [logits], max_iter=200, tolerance_grad=1e-12, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = proximal_loss(logits, anchor, anchor.exp(), game, 0.5)
        loss.backward()
        return loss

    opt.step(closure)
    assert torch.allclose(torch.log_softmax(logits, -1), target, atol=1e-6)


def test_batched_contexts_and_extreme_logits():
    prefs = torch.stack([CYCLIC, CYCLIC.mT.contiguous()])
    game = PreferenceGame(prefs, REFERENCE.expand(2, 3), 0.1)
    log_pi = mirror_prox_step(torch.tensor([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]]), game, 1.0)
    assert log_pi.shape == (2, 3) and torch.isfinite(log_pi).all()
    logits = torch.tensor([1e4, -1e4, 0.0], requires_grad=True)
    loss = proximal_loss(logits, torch.tensor([-1e4, 0.0, 1e4]), REFERENCE, game, 1.0)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all()


def test_bad_games_are_refused():
    with pytest.raises(ValueError, match="P \\+ P\\^T = 1"):
        PreferenceGame(torch.full((3, 3), 0.7), REFERENCE, 0.1)
    with pytest.raises(ValueError, match="shape"):
        PreferenceGame(torch.ones(3), REFERENCE, 0.1)
    with pytest.raises(ValueError, match="positive probabilities"):
        PreferenceGame(CYCLIC, torch.tensor([1.0, 0.0, 0.0]), 0.1)
    with pytest.raises(ValueError, match="beta"):
        PreferenceGame(CYCLIC, REFERENCE, 0.0)
    with pytest.raises(ValueError, match="eta"):
        mirror_prox_step(REFERENCE.log(), PreferenceGame(CYCLIC, REFERENCE, 0.1), -1.0)
    with pytest.raises(ValueError, match="method"):
        solve(PreferenceGame(CYCLIC, REFERENCE, 0.1), 1.0, 3, method="extragradient")
