"""Verifiers and the digit-sum prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geozoo.rl import ClassificationBandit, DigitSumDataModule, DigitSumEnvironment, compose_digits

E, P = 10, 12


@pytest.mark.parametrize(
    ("tokens", "value", "well_formed"),
    [
        ([1, 6, E], 16, True),
        ([0, E, P], 0, True),
        ([7, E, P], 7, True),
        ([0, 5, E], -1, False),  # leading zero
        ([1, 6, 7], -1, False),  # no end-of-sequence
        ([E, P, P], -1, False),  # empty
        ([1, E, 3], 1, True),  # tokens after end-of-sequence are ignored
    ],
)
def test_digit_sum_decode(tokens, value, well_formed):
    env = DigitSumEnvironment(format_reward=0.25)
    got, ok = env.decode(torch.tensor([tokens]))
    assert int(got) == value and bool(ok) == well_formed
    reward = float(env.reward(torch.tensor([value if well_formed else 3]), torch.tensor([tokens])))
    assert reward == (1.25 if well_formed else 0.0)


def test_answer_tokens_are_correct():
    env = DigitSumEnvironment()
    sums = torch.arange(0, 28)
    tokens = env.answer_tokens(sums, 3)
    assert bool(env.correct(sums, tokens).all())
    assert not bool(env.correct(sums + 1, tokens).any())
    with pytest.raises(ValueError, match="tokens"):
        env.answer_tokens(torch.tensor([100]), 3)


def test_classification_bandit():
    env = ClassificationBandit()
    labels = torch.tensor([1, 2, 3])
    assert torch.equal(env.reward(labels, torch.tensor([[1], [0], [3]])), torch.tensor([1.0, 0, 1]))
    assert torch.equal(env.answer_tokens(labels, 1), labels[:, None])


def test_compose_digits_sums_the_labels():
    images = np.stack([np.full((28, 28), i * 20, dtype=np.uint8) for i in range(10)])
    labels = np.arange(10)
    pictures, sums = compose_digits(images, labels, 50, 3, seed=0)
    assert pictures.shape == (50, 1, 28, 84)
    digits = (pictures[:, 0, 0, ::28] * 255 / 20).round().long()  # each slot's constant value
    assert torch.equal(digits.sum(-1), sums)


def test_digit_sum_data_module():
    dm = DigitSumDataModule(
        train_prompts=40, val_prompts=8, test_prompts=12, labelled_fraction=0.25
    )
    dm.setup()
    images, sums, labelled = dm.datasets["train"][:]
    assert images.shape == (40, 1, 28, 56) and int(labelled.sum()) == 10
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert int(sums.max()) <= 18 and len(dm.datasets["test_clean"]) == 12
    with pytest.raises(ValueError, match="labelled_fraction"):
        DigitSumDataModule(labelled_fraction=1.5)
