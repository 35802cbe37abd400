"""The Metropolis-Hastings sampler (Hounie, Chamon & Ribeiro, ICML 2023): its stationary law is
loss-proportional (chi-square at a fixed seed), higher-loss proposals are always accepted at
T = 1, a chain step is one batched forward pass without gradient, and batch-norm statistics
are left alone."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare
from torch import Tensor, nn

from geozoo.augment import (
    AugmentationSpace,
    MetropolisHastingsAugmenter,
    OperationSpace,
    acceptance_probability,
    metropolis_hastings,
)

LOSSES = torch.tensor([0.2, 0.5, 1.0, 2.0, 3.3])  # fixed loss of each of five transformations


class FixedLossSpace(AugmentationSpace):
    """Five transformations that leave images alone; which one is the parameter."""

    num_params = 1
    bin_shape = (5,)

    def sample(self, num, generator=None, device=None) -> Tensor:
        return torch.randint(5, (num, 1), generator=generator).float().to(device)

    def apply(self, images: Tensor, params: Tensor) -> Tensor:
        return images

    def bins(self, params: Tensor) -> Tensor:
        return params[:, 0].long()


def _stationary_counts(temperature: float, chains: int = 20_000, length: int = 40) -> Tensor:
    space = FixedLossSpace()
    generator = torch.Generator().manual_seed(0)
    result = metropolis_hastings(
        lambda n: space.sample(n, generator),
        lambda params: LOSSES[params[:, 0].long()],
        chains,
        chain_length=length,
        temperature=temperature,
        generator=generator,
    )
    return torch.bincount(space.bins(result.params), minlength=5)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_stationary_law_is_loss_proportional(temperature: float) -> None:
    counts = _stationary_counts(temperature).double()
    target = LOSSES.double() ** (1 / temperature)
    expected = target / target.sum() * counts.sum()
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 0.01
    # and the test has power: the uniform proposal law itself is far off
    uniform = torch.full((5,), float(counts.sum()) / 5.0, dtype=torch.float64)
    assert chisquare(counts.numpy(), uniform.numpy()).pvalue < 1e-12


def test_higher_loss_proposals_are_always_accepted_at_temperature_one() -> None:
    g = torch.Generator().manual_seed(0)
    current = torch.rand(1000, generator=g) * 3
    higher = current + torch.rand(1000, generator=g) * 2 + 1e-4
    assert torch.equal(acceptance_probability(current, higher), torch.ones(1000))
    lower = current * 0.5
    assert torch.allclose(acceptance_probability(current, lower), torch.full((1000,), 0.5))
    root = torch.full((1000,), 0.5**0.5)
    assert torch.allclose(acceptance_probability(current, lower, 2.0), root)
    # in a chain whose every proposal is worse than the last, every proposal is taken
    calls = iter(range(100))
    result = metropolis_hastings(
        lambda n: torch.zeros(n, 1),
        lambda params: torch.full((len(params),), 1.0 + next(calls)),
        num=50,
        chain_length=6,
        generator=g,
    )
    assert torch.equal(result.accepted, torch.full((50,), 5)) and result.acceptance_rate == 1.0


class CountingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 10)
        self.batches: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.batches.append(x.shape[0])
        return self.head(self.norm(self.conv(x)).mean((2, 3)))


def test_each_chain_step_is_one_batched_forward_without_gradient() -> None:
    net = CountingNet().train()
    x, y = torch.rand(12, 1, 8, 8), torch.randint(10, (12,))
    sampler = MetropolisHastingsAugmenter(OperationSpace(["rotate", "contrast"]), chain_length=3)
    clean = nn.functional.cross_entropy(net(x), y)  # a training step's graph, built first
    net.batches.clear()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    augmented, result = sampler(net, x, y, torch.Generator().manual_seed(0))
    clean.backward()  # still differentiable: the sampler modified nothing it saved
    assert net.batches == [12, 12, 12]
    assert not augmented.requires_grad and augmented.shape == x.shape
    for key, value in net.state_dict().items():  # running statistics untouched
        assert torch.equal(value, before[key]), key
    assert torch.allclose(augmented, sampler.space.apply(x, result.params))
    # the reported losses are those of the kept transformations
    with torch.no_grad():
        net.batches.clear()
        recomputed = nn.functional.cross_entropy(net(augmented), y, reduction="none")
    assert torch.allclose(result.losses, recomputed, atol=1e-5)


def test_chain_of_length_one_is_the_proposal() -> None:
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    space = OperationSpace(["rotate", "shear_x"], levels=7)
    result = metropolis_hastings(lambda n: space.sample(n, g1), lambda p: p[:, 1], 9, 1)
    assert torch.equal(result.params, space.sample(9, g2)) and result.steps == 0


def test_bad_arguments_are_reported() -> None:
    space = OperationSpace(["rotate"])
    with pytest.raises(ValueError, match="chain_length"):
        MetropolisHastingsAugmenter(space, chain_length=0)
    with pytest.raises(ValueError, match="temperature"):
        MetropolisHastingsAugmenter(space, temperature=0.0)
    with pytest.raises(TypeError, match="AugmentationSpace"):
        MetropolisHastingsAugmenter(["rotate"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one target per image"):
        MetropolisHastingsAugmenter(space)(CountingNet(), torch.rand(4, 1, 8, 8), torch.zeros(3))
