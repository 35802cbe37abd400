"""Batched image operations with one magnitude per example, the transformation set of automatic
data augmentation (Hounie, Chamon & Ribeiro, "Automatic Data Augmentation via Invariance-Constrained
Learning", ICML 2023, Sec. 5; the TrivialAugment / RandAugment list of operations).

Every operation takes float images ``(N, C, H, W)`` in ``[0, 1]`` on any device, a magnitude per
example in ``[0, 1]`` and, for the operations with a direction (rotations, shears, translations,
scalings and the enhancers), a sign ``+-1`` per example. Magnitude 0 is the identity; magnitude 1
is the operation's ``maximum`` (e.g. 30 degrees for ``rotate``); outputs stay in ``[0, 1]``.

* geometric (one batched ``grid_sample`` for the whole batch, :func:`geozoo.data.transforms.
  affine_warp` about the image centre, zero padding): ``rotate``, ``shear_x``, ``shear_y``,
  ``translate_x``, ``translate_y`` (fractions of the image side), ``scale`` (isotropic),
  ``scale_x``, ``scale_y`` (log-symmetric factors ``maximum^(+-m)``);
* photometric, as PIL's ``ImageEnhance`` / ``ImageOps`` on float tensors: ``brightness``,
  ``contrast``, ``sharpness``, ``color`` (RGB only) blend with a degenerate image by a factor
  ``1 + sign * m * maximum``; ``autocontrast`` and ``equalize`` blend the image towards its
  autocontrasted / equalized version by ``m``; ``solarize`` inverts the pixels above
  ``1 - m * maximum``; ``posterize`` keeps ``8 - round(m * maximum)`` bits.

:data:`OPERATIONS` maps each name to its :class:`Operation`, callable as
``op(images, magnitudes, signs=None)``; :meth:`Operation.with_maximum` gives the same operation
with another range. :func:`apply_operations` applies a different operation to each example (all
geometric ones in a single warp).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from geozoo.data.transforms import affine_warp

__all__ = [
    "OPERATIONS",
    "Operation",
    "apply_operations",
    "check_images",
    "check_magnitudes",
    "get_operation",
]

#: Linear part (N, 2, 2) and translation (N, 2) in pixels of a geometric operation, from the
#: signed strength per example and the image's (height, width).
AffineMap = Callable[[Tensor, int, int], tuple[Tensor, Tensor]]


def check_images(images: Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is a floating ``(N, C, H, W)`` tensor."""
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected float images of shape (N, C, H, W), got {shape}")


def check_magnitudes(magnitudes: Tensor, num: int, label: str = "magnitudes") -> Tensor:
    """``magnitudes`` as a float tensor of shape ``(num,)`` with values in ``[0, 1]``."""
    magnitudes = torch.as_tensor(magnitudes)
    if magnitudes.dim() == 0:
        magnitudes = magnitudes.expand(num)
    if magnitudes.shape != (num,):
        raise ValueError(
            f"{label} must have one value per image, shape ({num},), got {tuple(magnitudes.shape)}"
        )
    magnitudes = magnitudes.float() if not magnitudes.is_floating_point() else magnitudes
    if not bool(((magnitudes >= 0) & (magnitudes <= 1)).all()):
        bad = magnitudes[~((magnitudes >= 0) & (magnitudes <= 1))]
        raise ValueError(f"{label} must lie in [0, 1], got values such as {float(bad[0])}")
    return magnitudes


def _check_signs(signs: Tensor | None, num: int) -> Tensor | None:
    if signs is None:
        return None
    signs = torch.as_tensor(signs)
    if signs.dim() == 0:
        signs = signs.expand(num)
    if signs.shape != (num,) or not bool((signs.abs() == 1).all()):
        raise ValueError(f"signs must be +1 or -1, one per image (shape ({num},)), got {signs}")
    return signs


@dataclass(frozen=True)
class Operation:
    """One operation of the augmentation space.

    Attributes:
        name: its key in :data:`OPERATIONS`.
        maximum: the strength at magnitude 1 (degrees, shear factor, fraction of the side, scale
            factor, enhancement amount, or bits removed).
        signed: whether a sign per example chooses the direction (``strength = sign * m *
            maximum``); unsigned operations ignore signs.
        geometric: whether the operation is an affine warp (:meth:`affine`).
        rgb_only: whether it needs 3 channels.
    """

    name: str
    maximum: float
    signed: bool
    geometric: bool
    rgb_only: bool
    _affine: AffineMap | None = None
    _pixels: Callable[[Tensor, Tensor], Tensor] | None = None

    def with_maximum(self, maximum: float) -> Operation:
        """The same operation with another strength at magnitude 1."""
        if not isinstance(maximum, int | float) or not math.isfinite(maximum) or maximum < 0:
            raise ValueError(
                f"the maximum of {self.name} must be a finite number >= 0, got {maximum}"
            )
        if self.name == "posterize" and maximum > 7:
            raise ValueError(f"posterize removes at most 7 of 8 bits, got maximum={maximum}")
        if self.name == "solarize" and maximum > 1:
            raise ValueError(f"solarize thresholds lie in [0, 1], got maximum={maximum}")
        return replace(self, maximum=float(maximum))

    def strength(self, magnitudes: Tensor, signs: Tensor | None = None) -> Tensor:
        """``m * maximum``, times the sign for signed operations."""
        value = magnitudes * self.maximum
        return value * signs.to(value) if self.signed and signs is not None else value

    def affine(self, strength: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        """Linear part ``(N, 2, 2)`` and translation ``(N, 2)`` (pixels, x then y) of a geometric
        operation at the given signed strengths."""
        if self._affine is None:
            raise TypeError(f"{self.name} is not a geometric operation")
        return self._affine(strength, height, width)

    def apply(self, images: Tensor, strength: Tensor) -> Tensor:
        """The operation at already-scaled strengths (no checks)."""
        if self._affine is not None:
            matrix, shift = self._affine(strength, images.shape[-2], images.shape[-1])
            return affine_warp(images, matrix, shift)
        return self._pixels(images, strength)  # type: ignore[misc]

    def __call__(self, images: Tensor, magnitudes: Tensor, signs: Tensor | None = None) -> Tensor:
        """Apply to ``images`` (N, C, H, W) with one magnitude in [0, 1] (and sign) per image."""
        check_images(images)
        if self.rgb_only and images.shape[1] != 3:
            raise ValueError(f"{self.name} needs RGB images (3 channels), got {images.shape[1]}")
        magnitudes = check_magnitudes(magnitudes, images.shape[0]).to(images.device)
        signs = _check_signs(signs, images.shape[0])
        signs = None if signs is None else signs.to(images.device)
        return self.apply(images, self.strength(magnitudes.to(images.dtype), signs))


# ----------------------------------------------------------------------------- geometric
def _zeros(strength: Tensor) -> Tensor:
    return torch.zeros(strength.shape[0], 2, dtype=strength.dtype, device=strength.device)


def _matrix(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
    return torch.stack([a, b, c, d], -1).reshape(-1, 2, 2)


def _rotate(strength: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    angle = torch.deg2rad(strength)
    cos, sin = torch.cos(angle), torch.sin(angle)
    return _matrix(cos, -sin, sin, cos), _zeros(strength)


def _shear(axis: int) -> AffineMap:
    def affine(strength: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        one, zero = torch.ones_like(strength), torch.zeros_like(strength)
        if axis == 0:
            return _matrix(one, strength, zero, one), _zeros(strength)
        return _matrix(one, zero, strength, one), _zeros(strength)

    return affine


def _translate(axis: int) -> AffineMap:
    def affine(strength: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        eye = torch.eye(2, dtype=strength.dtype, device=strength.device).expand(len(strength), 2, 2)
        shift = _zeros(strength)
        shift[:, axis] = strength * (width if axis == 0 else height)
        return eye, shift

    return affine


def _scale(axes: tuple[int, ...]) -> AffineMap:
    def affine(strength: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        factor = torch.exp(strength)  # strength = +-m log(maximum)
        one, zero = torch.ones_like(strength), torch.zeros_like(strength)
        sx = factor if 0 in axes else one
        sy = factor if 1 in axes else one
        return _matrix(sx, zero, zero, sy), _zeros(strength)

    return affine


@dataclass(frozen=True)
class _ScaleOperation(Operation):
    """Scalings by ``maximum^(sign * m)``: log-symmetric, identity at ``m = 0``."""

    def strength(self, magnitudes: Tensor, signs: Tensor | None = None) -> Tensor:
        value = magnitudes * math.log(max(self.maximum, 1e-12))
        return value * signs.to(value) if signs is not None else value

    def with_maximum(self, maximum: float) -> Operation:
        if not isinstance(maximum, int | float) or not maximum >= 1 or not math.isfinite(maximum):
            raise ValueError(f"the maximum factor of {self.name} must be >= 1, got {maximum}")
        return replace(self, maximum=float(maximum))


# ----------------------------------------------------------------------------- photometric
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")


def _grayscale(images: Tensor) -> Tensor:
    if images.shape[1] == 3:
        weights = torch.tensor(_LUMA, dtype=images.dtype, device=images.device)
        return (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
    return images.mean(1, keepdim=True)


def _blend(
    reference: Callable[[Tensor], Tensor], towards: bool
) -> Callable[[Tensor, Tensor], Tensor]:
    """``x + alpha (reference(x) - x)``: with ``alpha = -strength`` this is PIL's enhancer
    ``ref + (1 + strength)(x - ref)``; with ``towards``, ``alpha = strength`` moves towards it."""

    def pixels(images: Tensor, strength: Tensor) -> Tensor:
        alpha = (strength if towards else -strength).view(-1, 1, 1, 1)
        return (images + alpha * (reference(images) - images)).clamp(0.0, 1.0)

    return pixels


def _black(images: Tensor) -> Tensor:
    return torch.zeros_like(images)


def _mean_gray(images: Tensor) -> Tensor:
    return _grayscale(images).mean((2, 3), keepdim=True).expand_as(images)


def _gray(images: Tensor) -> Tensor:
    return _grayscale(images).expand_as(images)


def _smooth(images: Tensor) -> Tensor:
    """PIL's SMOOTH filter (3x3, centre 5, others 1, /13) inside, the border pixels kept."""
    c = images.shape[1]
    kernel = torch.ones(3, 3, dtype=images.dtype, device=images.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    smooth = F.conv2d(images, kernel, padding=1, groups=c)
    out = images.clone()
    out[..., 1:-1, 1:-1] = smooth[..., 1:-1, 1:-1]
    return out


def _autocontrast(images: Tensor) -> Tensor:
    """Each channel of each image stretched to [0, 1] (constant channels kept)."""
    low = images.amin((2, 3), keepdim=True)
    high = images.amax((2, 3), keepdim=True)
    span = high - low
    stretched = (images - low) / span.clamp_min(1e-12)
    return torch.where(span > 0, stretched, images)


def _equalize(images: Tensor) -> Tensor:
    """Histogram equalization of each channel of each image over 256 levels, batched, with
    PIL's ``ImageOps.equalize`` table: ``step = (count - count of the top level) // 255`` and
    level ``v -> (step // 2 + #pixels below v) // step`` (channels with one level kept)."""
    n, c, h, w = images.shape
    levels = (images.clamp(0, 1) * 255).round().long().reshape(n * c, h * w)
    hist = torch.zeros(n * c, 256, dtype=torch.float64, device=images.device)
    hist.scatter_add_(1, levels, torch.ones_like(levels, dtype=torch.float64))
    top = hist.gather(1, levels.amax(1, keepdim=True))
    step = torch.div(h * w - top, 255, rounding_mode="floor")
    below = hist.cumsum(1) - hist
    table = torch.div(
        torch.div(step, 2, rounding_mode="floor") + below, step.clamp_min(1), rounding_mode="floor"
    )
    out = (table.clamp(max=255) / 255).gather(1, levels).to(images.dtype)
    out = torch.where(step > 0, out, images.reshape(n * c, h * w))
    return out.reshape(n, c, h, w)


def _solarize(images: Tensor, strength: Tensor) -> Tensor:
    threshold = (1.0 - strength).view(-1, 1, 1, 1)
    return torch.where(images > threshold, 1.0 - images, images)


def _posterize(images: Tensor, strength: Tensor) -> Tensor:
    removed = strength.round().view(-1, 1, 1, 1)
    step = torch.pow(2.0, removed)
    levels = (images.clamp(0, 1) * 255).round()
    kept = torch.floor(levels / step) * step / 255.0
    return torch.where(removed > 0, kept, images)


def _geometric(name: str, maximum: float, affine: AffineMap) -> Operation:
    return Operation(name, maximum, True, True, False, _affine=affine)


def _scaling(name: str, maximum: float, axes: tuple[int, ...]) -> Operation:
    return _ScaleOperation(name, maximum, True, True, False, _affine=_scale(axes))


def _photometric(
    name: str,
    maximum: float,
    pixels: Callable[[Tensor, Tensor], Tensor],
    signed: bool = False,
    rgb_only: bool = False,
) -> Operation:
    return Operation(name, maximum, signed, False, rgb_only, _pixels=pixels)


#: name -> :class:`Operation` with its default range (AutoAugment's ranges, Cubuk et al. 2019,
#: for the enhancers, shears and rotations; translations as fractions of the side).
OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        _geometric("rotate", 30.0, _rotate),
        _geometric("shear_x", 0.3, _shear(0)),
        _geometric("shear_y", 0.3, _shear(1)),
        _geometric("translate_x", 0.3, _translate(0)),
        _geometric("translate_y", 0.3, _translate(1)),
        _scaling("scale", 1.5, (0, 1)),
        _scaling("scale_x", 1.5, (0,)),
        _scaling("scale_y", 1.5, (1,)),
        _photometric("brightness", 0.9, _blend(_black, towards=False), signed=True),
        _photometric("contrast", 0.9, _blend(_mean_gray, towards=False), signed=True),
        _photometric("sharpness", 0.9, _blend(_smooth, towards=False), signed=True),
        _photometric("color", 0.9, _blend(_gray, towards=False), signed=True, rgb_only=True),
        _photometric("solarize", 1.0, _solarize),
        _photometric("posterize", 4.0, _posterize),
        _photometric("autocontrast", 1.0, _blend(_autocontrast, towards=True)),
        _photometric("equalize", 1.0, _blend(_equalize, towards=True)),
    )
}


def get_operation(name: str | Operation, maximum: float | None = None) -> Operation:
    """The operation called ``name`` (or ``name`` itself), optionally with another maximum."""
    if isinstance(name, Operation):
        op = name
    elif name in OPERATIONS:
        op = OPERATIONS[name]
    else:
        raise ValueError(f"unknown operation {name!r}: expected one of {sorted(OPERATIONS)}")
    return op if maximum is None else op.with_maximum(maximum)


def apply_operations(
    images: Tensor,
    operations: Sequence[Operation],
    indices: Tensor,
    magnitudes: Tensor,
    signs: Tensor | None = None,
) -> Tensor:
    """Apply ``operations[indices[i]]`` at ``magnitudes[i]`` (and ``signs[i]``) to image ``i``.

    All geometric operations of the batch share one affine warp (one ``grid_sample``); each
    photometric operation present runs once on its examples.
    """
    check_images(images)
    n = images.shape[0]
    magnitudes = check_magnitudes(magnitudes, n).to(images.device, images.dtype)
    signs = _check_signs(signs, n)
    indices = torch.as_tensor(indices, device=images.device).long()
    if indices.shape != (n,) or bool(((indices < 0) | (indices >= len(operations))).any()):
        raise ValueError(
            f"indices must be one operation index in [0, {len(operations)}) per image, got "
            f"{indices.tolist()}"
        )
    if signs is None:
        signs = torch.ones(n, dtype=images.dtype, device=images.device)
    signs = signs.to(images.device, images.dtype)
    out = images.clone()
    present = indices.unique().tolist()
    warped = [k for k in present if operations[k].geometric]
    if warped:
        h, w = images.shape[-2:]
        matrix = torch.eye(2, dtype=images.dtype, device=images.device).repeat(n, 1, 1)
        shift = torch.zeros(n, 2, dtype=images.dtype, device=images.device)
        for k in warped:
            rows = (indices == k).nonzero().flatten()
            strength = operations[k].strength(magnitudes[rows], signs[rows])
            matrix[rows], shift[rows] = operations[k].affine(strength, h, w)
        rows = torch.isin(indices, torch.tensor(warped, device=indices.device)).nonzero().flatten()
        out[rows] = affine_warp(images[rows], matrix[rows], shift[rows])
    for k in present:
        op = operations[k]
        if op.geometric:
            continue
        if op.rgb_only and images.shape[1] != 3:
            raise ValueError(f"{op.name} needs RGB images (3 channels), got {images.shape[1]}")
        rows = (indices == k).nonzero().flatten()
        out[rows] = op.apply(images[rows], op.strength(magnitudes[rows], signs[rows]))
    return out
