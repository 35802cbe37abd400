"""KL-DRO instance reweighting: closed form, limits, the wrapper around per-sample objectives."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from geozoo.objectives import KLDRO, CrossEntropy, Objective, ObjectiveOutput, StepContext
from geozoo.objectives.dro import kl_dro_loss, kl_dro_weights


def _ctx(outputs: torch.Tensor, targets: torch.Tensor) -> StepContext:
    return StepContext(inputs=outputs, targets=targets, outputs=outputs, network=nn.Identity())


def test_weights_are_the_softmax_closed_form_and_maximise_the_regularised_objective():
    losses = torch.tensor([0.3, 1.2, 0.7, 2.0], dtype=torch.float64)
    r = 0.5
    w = kl_dro_weights(losses, r)
    expected = [math.exp(v / r) for v in losses.tolist()]
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float64) / sum(expected))

    def inner(weights: torch.Tensor) -> torch.Tensor:  # sum w l - r sum w log(n w)
        return (weights * losses).sum() - r * (weights * (len(losses) * weights).log()).sum()

    best = inner(w)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):  # no point of the simplex does better
        other = torch.distributions.Dirichlet(torch.ones(4, dtype=torch.float64)).sample()
        other = 0.5 * other + 0.5 * torch.rand(4, generator=gen, dtype=torch.float64).softmax(0)
        assert inner(other) <= best + 1e-12
    # the optimal value is the log-sum-exp r log(mean exp(l / r))
    assert torch.isclose(best, r * (torch.logsumexp(losses / r, 0) - math.log(4)))


def test_gradient_is_danskins_weighted_gradient():
    losses = torch.tensor([0.3, 1.2, 0.7], requires_grad=True)
    kl_dro_loss(losses, 0.7).backward()
    assert torch.allclose(losses.grad, kl_dro_weights(losses, 0.7))
    value = losses.detach().clone().requires_grad_(True)
    (0.7 * (torch.logsumexp(value / 0.7, 0) - math.log(3))).backward()
    assert torch.allclose(losses.grad, value.grad, atol=1e-6)


def test_limits_uniform_and_max():
    losses = torch.tensor([0.1, 2.0, 0.5, 1.0])
    assert torch.allclose(kl_dro_weights(losses, 1e6), torch.full((4,), 0.25), atol=1e-5)
    assert torch.equal(kl_dro_weights(losses, math.inf), torch.full((4,), 0.25))
    assert torch.allclose(kl_dro_loss(losses, math.inf), losses.mean())
    assert torch.allclose(kl_dro_weights(losses, 1e-3), torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert torch.allclose(kl_dro_loss(losses, 1e-3), losses.max())
    assert torch.equal(kl_dro_loss(losses, 0.0), losses.max())
    tied = torch.tensor([1.0, 3.0, 3.0])
    assert torch.allclose(kl_dro_weights(tied, 0.0), torch.tensor([0.0, 0.5, 0.5]))
    # the weighted mean lies between the mean and the max, and grows as r falls
    values = [kl_dro_loss(losses, r).item() for r in (10.0, 1.0, 0.1)]
    assert losses.mean().item() <= values[0] <= values[1] <= values[2] <= losses.max().item()


def test_finite_on_extreme_and_low_precision_losses():
    losses = torch.tensor([1e4, -1e4, 0.0, 3e4], dtype=torch.bfloat16, requires_grad=True)
    out = kl_dro_loss(losses, 1e-3)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(losses.grad).all()


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "1"])
def test_bad_temperature(bad):
    with pytest.raises(ValueError, match="temperature r"):
        kl_dro_weights(torch.ones(3), bad)


def test_wrapper_around_a_loss_module_matches_the_functional_form():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 4, generator=gen)
    targets = torch.randint(0, 4, (6,), generator=gen)
    dro = KLDRO(nn.CrossEntropyLoss(reduction="none"), r=0.5)
    out = dro(_ctx(logits, targets))
    per_sample = nn.functional.cross_entropy(logits, targets, reduction="none")
    assert torch.allclose(out.loss, kl_dro_loss(per_sample, 0.5))
    assert 1.0 <= out.logs["effective_samples"] <= 6.0


def test_wrapper_around_a_per_sample_objective_and_refusal_of_reduced_ones():
    class PerSampleSquare(Objective):
        def forward(self, ctx: StepContext) -> ObjectiveOutput:
            return ObjectiveOutput((ctx.outputs - ctx.targets).square().sum(-1), {"n": 1.0})

    x, y = torch.randn(5, 2), torch.zeros(5, 2)
    out = KLDRO(PerSampleSquare(), r=math.inf)(_ctx(x, y))
    assert torch.allclose(out.loss, x.square().sum(-1).mean())
    assert "inner/n" in out.logs
    with pytest.raises(ValueError, match=r"one loss per sample.*CrossEntropy"):
        KLDRO(CrossEntropy())(_ctx(torch.randn(3, 4), torch.tensor([0, 1, 2])))
    with pytest.raises(TypeError, match="loss callable"):
        KLDRO(3.0)
