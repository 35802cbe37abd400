"""Model soups: identical ingredients give the model back, weights average, mismatches fail."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geozoo.zoo.soup import ModelSoup, model_soup, soup_state_dict


def _net(seed: int, hidden: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(3, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 2)
    )


def test_soup_of_identical_models_is_the_model():
    net = _net(0)
    net.train()
    net(torch.randn(16, 3))  # non-trivial running statistics
    soup = model_soup([net, net, net])
    x = torch.randn(5, 3)
    net.eval()
    assert torch.equal(soup(x), net(x))
    assert not soup.training and not any(p.requires_grad for p in soup.parameters())
    assert all(p.requires_grad for p in net.parameters())  # the ingredients are untouched


def test_soup_is_the_weighted_average_of_the_weights():
    a, b = _net(0), _net(1)
    soup = model_soup([a, b.state_dict()], weights=[3.0, 1.0], frozen=False)
    for (key, value), va, vb in zip(
        soup.state_dict().items(), a.state_dict().values(), b.state_dict().values(), strict=True
    ):
        if key.endswith("num_batches_tracked"):
            assert torch.equal(value, va)
        else:
            assert torch.allclose(value, 0.75 * va + 0.25 * vb), key
    assert all(p.requires_grad for p in soup.parameters())
    uniform = soup_state_dict([a.state_dict(), b.state_dict()])
    assert torch.allclose(uniform["0.weight"], (a[0].weight + b[0].weight) / 2)


def test_model_soup_module_for_yaml():
    a, b = _net(0), _net(1)
    soup = ModelSoup([a, b]).train()
    assert not soup.module.training
    x = torch.randn(4, 3)
    assert torch.equal(soup(x), model_soup([a, b])(x))
    with pytest.raises(AttributeError):
        _ = soup.no_such_attribute


class _Policy(nn.Linear):
    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).log_softmax(-1)


def test_model_soup_module_keeps_the_policy_interface():
    torch.manual_seed(0)
    a, b = _Policy(3, 4), _Policy(3, 4)
    soup = ModelSoup([a, b])
    x = torch.randn(2, 3)
    expected = nn.functional.linear(x, (a.weight + b.weight) / 2, (a.bias + b.bias) / 2)
    assert torch.allclose(soup.log_probs(x), expected.log_softmax(-1))


def test_mismatched_architectures_are_refused_by_name():
    with pytest.raises(ValueError, match=r"different architectures.*'0.weight' is \(8, 3\)"):
        model_soup([_net(0), _net(1, hidden=6)])
    with pytest.raises(ValueError, match=r"different architectures.*classes"):
        model_soup([nn.Linear(3, 2), nn.Bilinear(3, 3, 2)])
    with pytest.raises(ValueError, match="entries only in model 0"):
        soup_state_dict([{"a": torch.ones(2), "b": torch.ones(1)}, {"a": torch.ones(2)}])
    with pytest.raises(ValueError, match="float64"):
        soup_state_dict([{"a": torch.ones(2)}, {"a": torch.ones(2, dtype=torch.float64)}])


def test_bad_weights_and_inputs():
    with pytest.raises(ValueError, match="one per model"):
        model_soup([_net(0), _net(1)], weights=[1.0])
    with pytest.raises(ValueError, match="non-negative"):
        model_soup([_net(0), _net(1)], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="non-negative"):
        model_soup([_net(0), _net(1)], weights=[0.0, float("nan")])
    with pytest.raises(TypeError, match="list of models"):
        model_soup(_net(0))
    with pytest.raises(ValueError, match="at least one model as a module"):
        model_soup([_net(0).state_dict()])
    with pytest.raises(TypeError, match="soup ingredient 1"):
        model_soup([_net(0), 3])
