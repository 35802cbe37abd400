"""Policies: cached sampling against teacher forcing, temperature, top-k and padding."""

from __future__ import annotations

import pytest
import torch

from geozoo.rl import ClassifierPolicy, DigitSumPolicy, draw, response_mask


def _policy(**kwargs) -> DigitSumPolicy:
    torch.manual_seed(0)
    defaults = {"dim": 32, "heads": 2, "layers": 2, "encoder_widths": (4, 8), "encoder": None}
    return DigitSumPolicy(**{**defaults, **kwargs})


def _images(b: int = 3, digits: int = 2) -> torch.Tensor:
    return torch.rand(b, 1, 28, 28 * digits, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_cached_sampling_log_probs_equal_teacher_forcing(temperature):
    policy = _policy()
    x = _images()
    sample = policy.sample(x, 5, temperature, generator=torch.Generator().manual_seed(2))
    assert sample.responses.shape == (15, 3) and torch.equal(
        sample.group, torch.arange(3).repeat_interleave(5)
    )
    forced = policy.log_probs(x, sample.responses, sample.group, temperature)
    torch.testing.assert_close(sample.logp, forced, atol=1e-5, rtol=1e-5)
    assert torch.equal(sample.mask, response_mask(sample.responses, policy.EOS))
    # after end-of-sequence: padding, no log-prob, no entropy
    assert bool((sample.responses[~sample.mask] == policy.PAD).all())
    assert bool((sample.logp[~sample.mask] == 0).all())
    assert bool((sample.entropy[~sample.mask] == 0).all())


def test_sampling_carries_the_gradient_and_top1_is_greedy():
    policy = _policy()
    x = _images()
    sample = policy.sample(x, 2)
    sample.logp.sum().backward()
    assert policy.head.weight.grad is not None and policy.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in policy.backbone.parameters())  # frozen encoder
    greedy = policy(x).argmax(-1)
    top1 = policy.sample(x, 1, top_k=1).responses
    mask = response_mask(top1, policy.EOS)
    assert torch.equal(top1[mask], greedy[mask])


def test_temperature_and_top_k_of_draw():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(4000, 1)
    token, logp, entropy = draw(logits, 0.5, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(token.tolist()) == {0, 1}
    expected = (logits / 0.5).log_softmax(-1)
    torch.testing.assert_close(logp, expected.gather(-1, token[:, None])[:, 0])
    torch.testing.assert_close(entropy, -(expected.exp() * expected).sum(-1))
    share = float((token == 0).float().mean())
    assert share == pytest.approx(1 / (1 + torch.e**-2), abs=0.03)  # renormalised over the top 2
    with pytest.raises(ValueError, match="temperature"):
        draw(logits, 0.0)


def test_classifier_policy():
    torch.manual_seed(0)
    policy = ClassifierPolicy(torch.nn.Linear(5, 7))
    x = torch.randn(4, 5)
    sample = policy.sample(x, 3, temperature=2.0)
    assert sample.responses.shape == (12, 1) and bool(sample.mask.all())
    forced = policy.log_probs(x, sample.responses, sample.group, 2.0)
    torch.testing.assert_close(sample.logp, forced)


def test_digit_sum_policy_checks():
    with pytest.raises(ValueError, match="max_length"):
        DigitSumPolicy(num_digits=3, max_length=2, encoder=None)
    with pytest.raises(ValueError, match="28"):
        _policy()(torch.rand(2, 1, 28, 28))


def test_frozen_encoder_keeps_its_batch_norm_statistics():
    policy = _policy()
    before = {k: v.clone() for k, v in policy.backbone.state_dict().items()}
    policy.sample(_images(), 2)  # a freshly built policy, never put in train() or eval()
    policy.train()
    policy.log_probs(_images(), torch.full((3, 1), policy.EOS))
    assert not policy.backbone.training
    for key, value in policy.backbone.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_pretrained_encoder_keeps_the_entrys_architecture_and_pooling():
    """The zoo encoder is built as published (cnn_mnist pools by max), and each slot's features
    are pooled the way the entry's classifier pools them."""
    from geozoo import create_model

    policy = DigitSumPolicy(encoder="cnn_mnist")
    entry = create_model("cnn_mnist", pretrained=True).eval()
    assert isinstance(entry.head[0], torch.nn.AdaptiveMaxPool2d)
    assert type(policy.backbone.head[0]) is type(entry.head[0])
    images = _images(1, 2)
    first = images[..., :28]
    with torch.no_grad():
        pooled = entry.head[0](entry.features((first - entry.mean) / entry.std)).flatten(1)
        assert torch.allclose(policy.encode(images)[:, 0], policy.slot_proj(pooled), atol=1e-5)


def test_unfrozen_encoder_trains():
    policy = _policy(freeze_encoder=False)
    policy.encode(_images()).sum().backward()
    grads = [p.grad for p in policy.backbone.features.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_encoder_architecture_is_recorded_and_checked():
    """The published arguments rebuild the encoder's pooling and padding without fetching the
    entry; asking a pretrained entry for another pooling is refused."""
    from geozoo.rl.zoo_entry import _publish

    policy = DigitSumPolicy(encoder="cnn_mnist")
    arguments = _publish(policy).arguments
    assert arguments["encoder_global_pool"] == "max"
    rebuilt = DigitSumPolicy(encoder="cnn_mnist", **arguments)
    rebuilt.load_state_dict(policy.state_dict())
    images = _images()
    assert torch.equal(rebuilt.eval().encode(images), policy.eval().encode(images))
    with pytest.raises(ValueError, match="encoder_global_pool='avg', but the entry 'cnn_mnist'"):
        DigitSumPolicy(encoder="cnn_mnist", encoder_global_pool="avg")
