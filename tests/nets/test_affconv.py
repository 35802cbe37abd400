"""The affine group-convolution zoo networks: invariance, export/reload, published checkpoints."""

from __future__ import annotations

import pytest
import torch

from geozoo.testing import assert_equivariant, rot90
from geozoo.zoo import create_model
from geozoo.zoo.hub import has_checkpoint
from geozoo.zoo.weights import load_config, load_verified_state_dict, save_checkpoint

NAMES = ["affconv_gl2_mnist", "affconv_sl2_mnist"]


def _digits(n: int = 4, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 40, 40)
    x[:, :, 8:32, 8:32] = torch.rand(n, 1, 24, 24, generator=gen)
    return x


@pytest.mark.parametrize("name", NAMES)
def test_full_circle_variant_invariant_to_quarter_turns(name):
    torch.manual_seed(0)
    model = create_model(name, rotations=8, max_angle=None)  # grid closed under quarter turns
    # exact by construction: the float64 budget, not the default for float32 weights
    assert_equivariant(model, _digits(), [rot90(k) for k in (1, 2, 3)], tolerance=1e-9)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shift", [(9, 0), (-7, 10), (3, -10)])
def test_logits_invariant_to_shifts_of_a_digit_sized_blob(name, shift):
    """The moment canonicalisation moves the centroid to the centre: any integer shift that
    keeps the content inside the frame gives the same logits, up to rounding."""
    torch.manual_seed(0)
    model = create_model(name).double().eval()
    x = torch.zeros(3, 1, 40, 40, dtype=torch.float64)
    x[:, :, 10:30, 10:30] = torch.rand(3, 1, 20, 20, dtype=torch.float64)
    moved = torch.roll(x, shift, (-2, -1))
    with torch.no_grad():
        torch.testing.assert_close(model(moved), model(x), rtol=0, atol=1e-9)


@pytest.mark.parametrize("shift", [(4, 0), (-4, 4), (0, -4)])
def test_trunk_alone_invariant_to_stride_shifts(shift):
    """Without canonicalisation: zero background, bias-free layers and zero padding make
    content moved by a multiple of the pooling stride (4) give the same logits as long as it
    and its receptive field (about 26 px) stay inside the frame."""
    torch.manual_seed(0)
    model = create_model("affconv_gl2_mnist", canonicalize=None, canvas=None).double().eval()
    x = torch.zeros(3, 1, 40, 40, dtype=torch.float64)
    x[:, :, 16:22, 16:22] = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    moved = torch.roll(x, shift, (-2, -1))
    with torch.no_grad():
        torch.testing.assert_close(model(moved), model(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_export_and_reload_gives_identical_logits(name, tmp_path):
    torch.manual_seed(1)
    model = create_model(name).eval()
    config = save_checkpoint(model, tmp_path, {"name": name})
    fresh = create_model(name).eval()
    fresh.load_state_dict(
        load_verified_state_dict(tmp_path / "model.safetensors", config["weights"]["sha256"])
    )
    x = _digits(3, 2)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    assert set(model.state_dict()) == set(model.train().state_dict())  # no train/eval keys


def test_training_and_eval_modes():
    torch.manual_seed(2)
    model = create_model("affconv_gl2_mnist")
    x = _digits(4, 3)
    model.train()
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # deterministic evaluation grid


def test_bad_input_gives_clear_error():
    model = create_model("affconv_sl2_mnist")
    with pytest.raises(ValueError, match=r"\(N, 1, 40, 40\)"):
        model(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="canonicalize must be"):
        create_model("affconv_sl2_mnist", canonicalize="affine")


@pytest.mark.parametrize("name", [*NAMES, "cnn_affaug_mnist"])
def test_published_checkpoint(name):
    if not has_checkpoint(name):
        pytest.skip(f"{name} has no published checkpoint yet")
    model = create_model(name, pretrained=True).eval()
    config = load_config(f"models/{name}")
    assert config["weights"]["num_params"] == sum(p.numel() for p in model.parameters())
    x = _digits(2, 4)
    with torch.no_grad():
        again = create_model(name, pretrained=True).eval()
        assert torch.equal(model(x), again(x))


@pytest.mark.parametrize("shift", [(9, 0), (-7, 10)])
def test_smaller_canvas_keeps_shift_invariance_and_shrinks_the_trunk(shift):
    """``canvas`` resamples the moment pose onto a smaller grid: the trunk sees 28 x 28 maps
    and integer shifts of the input still leave the logits unchanged."""
    torch.manual_seed(0)
    model = create_model("affconv_gl2_mnist", canvas=(28, 28)).double().eval()
    x = torch.zeros(3, 1, 40, 40, dtype=torch.float64)
    x[:, :, 10:30, 10:30] = torch.rand(3, 1, 20, 20, dtype=torch.float64)
    assert model.canonicalize(x).shape == (3, 1, 28, 28)
    moved = torch.roll(x, shift, (-2, -1))
    with torch.no_grad():
        torch.testing.assert_close(model(moved), model(x), rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"canonicalize": "translation"}, "'translation'"), ({"group": "sl2"}, "'sl2'")],
)
def test_canvas_needs_a_pose_that_fixes_the_spread(kwargs, named):
    """A smaller canvas could crop a digit whose spread the pose leaves free (translation only,
    or SL(2)'s area-keeping pose)."""
    with pytest.raises(ValueError, match=f"canvas=\\(28, 28\\) needs a pose that fixes.*{named}"):
        create_model("affconv_gl2_mnist", canvas=(28, 28), **kwargs)


def test_turning_canonicalization_off_names_the_default_canvas():
    """The entry's builder puts the digit on a 28x28 canvas by default: a user who turns the
    pose off is told which canvas the builder chose and how to drop it."""
    with pytest.raises(ValueError, match=r"canvas=\(28, 28\) .*canonicalize=None.*canvas=None"):
        create_model("affconv_gl2_mnist", canonicalize=None)
    create_model("affconv_gl2_mnist", canonicalize=None, canvas=None)
