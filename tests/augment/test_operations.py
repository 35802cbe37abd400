"""Batched augmentation operations: identity at magnitude 0, valid range at the maximum, PIL as an
independent reference for the photometric ones, exact pixel moves for the geometric ones, one
grid_sample per batch, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from geozoo.augment import OPERATIONS, OperationSpace, apply_operations, get_operation

NAMES = sorted(OPERATIONS)


def _images(channels: int = 3, n: int = 6, size: int = 16, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return ((torch.rand(n, channels, size, size, generator=g) * 255).round() / 255).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_magnitude_zero_is_the_identity(name: str, dtype: torch.dtype) -> None:
    x = _images(dtype=dtype)
    op = OPERATIONS[name]
    for sign in (1.0, -1.0):
        y = op(x, torch.zeros(len(x)), torch.full((len(x),), sign))
        # geometric ops resample on the identity grid: exact up to interpolation rounding
        tolerance = (1e-5 if dtype == torch.float32 else 1e-12) if op.geometric else 0.0
        assert y.dtype == dtype and y.shape == x.shape
        assert (y - x).abs().max() <= tolerance, name


@pytest.mark.parametrize("name", NAMES)
def test_maximum_stays_in_the_value_range(name: str) -> None:
    x = _images()
    x[0] = 1.0  # extreme images too
    x[1] = 0.0
    op = OPERATIONS[name]
    for sign in (1.0, -1.0):
        y = op(x, torch.ones(len(x)), torch.full((len(x),), sign))
        assert y.min() >= 0.0 and y.max() <= 1.0, name
        assert torch.isfinite(y).all()
    if name not in ("autocontrast", "equalize"):  # these leave an already-stretched image alone
        assert (op(x, torch.ones(len(x))) - x).abs().max() > 1e-3, f"{name} did nothing at max"


def _pil(image: torch.Tensor) -> Image.Image:
    array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)


def _from_pil(image: Image.Image) -> torch.Tensor:
    array = np.array(image, dtype=np.float32) / 255
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)


ENHANCERS = {
    "brightness": ImageEnhance.Brightness,
    "contrast": ImageEnhance.Contrast,
    "sharpness": ImageEnhance.Sharpness,
    "color": ImageEnhance.Color,
}


@pytest.mark.parametrize("name", sorted(ENHANCERS))
def test_enhancers_match_pil(name: str) -> None:
    x = _images(n=4)
    magnitudes = torch.tensor([0.2, 0.5, 1.0, 0.7])
    signs = torch.tensor([1.0, -1.0, -1.0, 1.0])
    ours = OPERATIONS[name](x, magnitudes, signs)
    for i in range(len(x)):
        factor = 1.0 + float(signs[i] * magnitudes[i]) * OPERATIONS[name].maximum
        reference = _from_pil(ENHANCERS[name](_pil(x[i])).enhance(factor))
        # PIL rounds to bytes (and rounds the mean grey of contrast): within 1.5 levels
        assert (ours[i] - reference).abs().max() <= 1.5 / 255, name


@pytest.mark.parametrize("channels", [1, 3])
def test_histogram_operations_match_pil(channels: int) -> None:
    x = _images(channels=channels, n=3) * 0.6 + 0.1  # room to stretch
    x = (x * 255).round() / 255
    one = torch.ones(len(x))
    equalized = OPERATIONS["equalize"](x, one)
    stretched = OPERATIONS["autocontrast"](x, one)
    posterized = get_operation("posterize", maximum=5)(x, one)  # keep 3 bits
    solarized = OPERATIONS["solarize"](x, torch.full((len(x),), 0.5))
    for i in range(len(x)):
        image = _pil(x[i])
        assert torch.allclose(equalized[i], _from_pil(ImageOps.equalize(image)), atol=1e-6)
        # PIL truncates the stretched levels, we do not
        assert (stretched[i] - _from_pil(ImageOps.autocontrast(image))).abs().max() <= 1 / 255
        assert torch.allclose(posterized[i], _from_pil(ImageOps.posterize(image, 3)), atol=1e-6)
        # threshold 1 - 0.5: levels above 127.5, i.e. PIL's threshold 128
        assert torch.allclose(solarized[i], _from_pil(ImageOps.solarize(image, 128)), atol=1e-6)


def test_geometric_operations_move_pixels_exactly() -> None:
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 1, 4] = 1.0  # above the centre
    one = torch.ones(1)
    # positive angles turn clockwise on screen (y points down), as geozoo.data.transforms
    rotated = get_operation("rotate", maximum=90)(x, one)
    assert torch.allclose(rotated, torch.rot90(x, -1, (2, 3)), atol=1e-5)
    moved = get_operation("translate_x", maximum=2 / 9)(x, one)  # two pixels right
    assert torch.allclose(moved, torch.roll(x, 2, dims=3), atol=1e-5)
    moved = get_operation("translate_y", maximum=3 / 9)(x, one)  # three pixels down
    assert torch.allclose(moved, torch.roll(x, 3, dims=2), atol=1e-5)
    gone = get_operation("translate_y", maximum=3 / 9)(x, one, -one)  # up and out of the frame
    assert gone.abs().max() < 1e-5  # zero padding
    y = torch.zeros(1, 1, 9, 9)
    y[0, 0, 2, 4] = 1.0  # two pixels above the centre
    shrunk = get_operation("scale", maximum=2.0)(y, one, -one)  # factor 1/2: one pixel above
    expected = torch.zeros_like(y)
    expected[0, 0, 3, 4] = 1.0
    assert torch.allclose(shrunk, expected, atol=1e-5)
    sheared = get_operation("shear_x", maximum=1.0)(x, one)  # x += y (y = -3 from the centre)
    assert torch.allclose(sheared, torch.roll(x, -3, dims=3), atol=1e-5)


def test_scalings_are_log_symmetric() -> None:
    x = _images(n=2)
    half = torch.full((2,), 0.5)
    op = get_operation("scale_x", maximum=4.0)
    bigger = op(op(x, half, torch.ones(2)), half, -torch.ones(2))  # x2 then x1/2
    centre = slice(5, 11)
    assert (bigger[..., centre, centre] - x[..., centre, centre]).abs().max() < 0.35
    matrix, _ = op.affine(op.strength(half, -torch.ones(2)), 16, 16)
    assert torch.allclose(matrix[:, 0, 0], torch.full((2,), 0.5))


def test_mixed_batch_equals_one_call_per_example_and_warps_once(monkeypatch) -> None:
    x = _images(channels=3, n=len(NAMES))
    space = OperationSpace(NAMES, levels=4)
    params = space.sample(len(x), torch.Generator().manual_seed(3))
    params[:, 0] = torch.arange(len(NAMES))  # every operation once
    calls = []
    original = torch.nn.functional.grid_sample
    monkeypatch.setattr(
        torch.nn.functional,
        "grid_sample",
        lambda *a, **k: calls.append(a[0].shape[0]) or original(*a, **k),
    )
    batched = space.apply(x, params)
    geometric = sum(OPERATIONS[n].geometric for n in NAMES)
    assert calls == [geometric]  # one grid_sample for all geometric examples
    for i, name in enumerate(NAMES):
        single = OPERATIONS[name](x[i : i + 1], params[i : i + 1, 1], params[i : i + 1, 2])
        assert torch.allclose(batched[i : i + 1], single, atol=1e-6), name


def test_bad_input_is_reported() -> None:
    x = _images(n=2)
    op = OPERATIONS["rotate"]
    with pytest.raises(ValueError, match="unknown operation 'blur'"):
        get_operation("blur")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        op(x, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        op(x, torch.tensor([-0.1, 0.5]))
    with pytest.raises(ValueError, match=r"one value per image, shape \(2,\)"):
        op(x, torch.ones(3))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        op(x[0], torch.ones(3))
    with pytest.raises(ValueError, match="signs must be"):
        op(x, torch.ones(2), torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="RGB"):
        OPERATIONS["color"](x[:, :1], torch.ones(2))
    with pytest.raises(ValueError, match="at most 7"):
        get_operation("posterize", maximum=8)
    with pytest.raises(ValueError, match="indices"):
        apply_operations(x, [op], torch.tensor([0, 1]), torch.ones(2))
    with pytest.raises(ValueError, match="not in"):
        OperationSpace(["rotate"], maximum={"shear_x": 0.1})
    with pytest.raises(ValueError, match="levels"):
        OperationSpace(["rotate"], levels=0)
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        OperationSpace(["rotate"]).apply(x, torch.zeros(2, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_operations_run_on_the_images_device() -> None:
    x = _images(n=len(NAMES))
    space = OperationSpace(NAMES, levels=4)
    params = space.sample(len(x), torch.Generator().manual_seed(0))
    on_gpu = space.apply(x.cuda(), params.cuda())
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), space.apply(x, params), atol=1e-4)
