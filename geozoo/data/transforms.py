"""Seeded geometric transforms of image batches: affNIST-style affine copies, rotated MNIST,
and the general affine warp they share.

All functions take float images of shape (N, C, H, W) and return a new tensor; randomness comes
from an explicit seed so that a test set is the same on every machine.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "AFFINE_RANGES",
    "affine_matrices",
    "affine_warp",
    "affnist_style",
    "pad_to",
    "random_jitter",
    "random_rotation",
]


def pad_to(images: Tensor, size: int) -> Tensor:
    """Zero-pad (N, C, H, W) images symmetrically to ``size`` x ``size``."""
    h, w = images.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"cannot pad images of size {h}x{w} to the smaller size {size}")
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(images, (left, size - w - left, top, size - h - top))


def affine_matrices(rotation: Tensor, shear: Tensor, scale_x: Tensor, scale_y: Tensor) -> Tensor:
    """Linear parts ``A = R(rotation) @ Shear(shear) @ diag(scale_x, scale_y)``, shape (N, 2, 2).

    ``rotation`` is in radians and acts counter-clockwise in (x, y) pixel coordinates with y
    pointing down (so it looks clockwise on screen); ``shear`` is the x-shear factor.
    """
    cos, sin = torch.cos(rotation), torch.sin(rotation)
    zeros, ones = torch.zeros_like(shear), torch.ones_like(shear)
    rot = torch.stack([cos, -sin, sin, cos], -1).reshape(-1, 2, 2)
    shr = torch.stack([ones, shear, zeros, ones], -1).reshape(-1, 2, 2)
    scl = torch.stack([scale_x, zeros, zeros, scale_y], -1).reshape(-1, 2, 2)
    return rot @ shr @ scl


def affine_warp(images: Tensor, matrix: Tensor, translation: Tensor | None = None) -> Tensor:
    """Warp images by the affine map ``p -> A (p - c) + c + t`` about the image centre ``c``.

    Args:
        images: (N, C, H, W) float images.
        matrix: (N, 2, 2) or (2, 2) linear parts ``A`` acting on (x, y) pixel coordinates.
        translation: (N, 2) or (2,) shifts ``t`` in pixels (x, y); default zero.

    Bilinear resampling with zero padding; the output pixel at ``q`` takes the input value at
    ``A^{-1} (q - c - t) + c``.
    """
    n, _, h, w = images.shape
    matrix = matrix.to(images).expand(n, 2, 2)
    translation = (
        torch.zeros(n, 2).to(images) if translation is None else translation.to(images).expand(n, 2)
    )
    inverse = torch.linalg.inv(matrix)
    # normalised coordinates (align_corners=False): pixel u -> (2u + 1) / size - 1
    to_norm = torch.diag(torch.tensor([2.0 / w, 2.0 / h])).to(images)
    theta_linear = to_norm @ inverse @ torch.linalg.inv(to_norm)
    theta_shift = -(theta_linear @ (to_norm @ translation.unsqueeze(-1))).squeeze(-1)
    theta = torch.cat([theta_linear, theta_shift.unsqueeze(-1)], dim=-1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)


def _random_linear(
    n: int,
    gen: torch.Generator,
    max_rotation_deg: float,
    max_shear: float,
    scale_range: tuple[float, float],
) -> Tensor:
    """(N, 2, 2) random linear parts: rotation, x-shear and independent x/y scales, uniform in
    their ranges, drawn from ``gen`` in that order."""
    rotation = torch.deg2rad(_uniform(n, -max_rotation_deg, max_rotation_deg, gen))
    shear = _uniform(n, -max_shear, max_shear, gen)
    scale_x = _uniform(n, *scale_range, gen)
    scale_y = _uniform(n, *scale_range, gen)
    return affine_matrices(rotation, shear, scale_x, scale_y)


AFFINE_RANGES: dict[str, dict[str, Any]] = {
    "affnist": {"max_rotation_deg": 20.0, "max_shear": 0.2, "scale_range": (0.8, 1.2)},
    "wide": {"max_rotation_deg": 45.0, "max_shear": 0.4, "scale_range": (0.6, 1.5)},
}
"""Named ranges of :func:`affnist_style`: ``"affnist"`` follows affNIST (Tieleman, 2013);
``"wide"`` reaches well beyond it (rotation +-45 degrees, shear +-0.4, scale 0.6-1.5)."""


def affnist_style(
    images: Tensor,
    seed: int,
    max_rotation_deg: float | None = None,
    max_shear: float | None = None,
    scale_range: tuple[float, float] | None = None,
    frame: int = 40,
    ranges: str = "affnist",
) -> Tensor:
    """An affNIST-style copy of 28x28 digits (Tieleman, 2013): pad to ``frame`` x ``frame``, then a
    random rotation within +-``max_rotation_deg``, x-shear within +-``max_shear``, independent x/y
    scales in ``scale_range``, and a random translation that keeps the whole digit in the frame.

    Args:
        images: (N, C, 28, 28) (or already padded (N, C, frame, frame)) floats in [0, 1].
        seed: the same seed gives the same transforms.
        max_rotation_deg, max_shear, scale_range: override the named ``ranges``.
        ranges: a key of :data:`AFFINE_RANGES`: ``"affnist"`` (+-20 degrees, shear +-0.2, scale
            0.8-1.2) or ``"wide"`` (+-45 degrees, shear +-0.4, scale 0.6-1.5).

    Returns:
        (N, C, frame, frame) images.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    if ranges not in AFFINE_RANGES:
        raise ValueError(f"ranges must be one of {sorted(AFFINE_RANGES)}, got {ranges!r}")
    named = AFFINE_RANGES[ranges]
    gen = _generator(seed)
    n = images.shape[0]
    padded = pad_to(images, frame)
    matrix = _random_linear(
        n,
        gen,
        named["max_rotation_deg"] if max_rotation_deg is None else max_rotation_deg,
        named["max_shear"] if max_shear is None else max_shear,
        named["scale_range"] if scale_range is None else scale_range,
    )
    centred = affine_warp(padded, matrix)
    translation = _translation_inside_frame(centred, gen)
    shifted = affine_warp(centred, torch.eye(2, dtype=torch.float64), translation)
    return shifted.clamp_(0.0, 1.0)


def random_jitter(
    images: Tensor,
    seed: int,
    max_rotation_deg: float = 10.0,
    max_shear: float = 0.1,
    scale_range: tuple[float, float] = (0.9, 1.1),
    max_shift: float = 2.0,
) -> Tensor:
    """Small random affine distortions in the images' own frame, for training-time augmentation
    (the elastic/affine jitter of Simard et al., 2003, without the elastic part): a rotation
    within +-``max_rotation_deg``, an x-shear within +-``max_shear``, independent x/y scales in
    ``scale_range`` and a shift of up to +-``max_shift`` pixels per axis, about the image centre.

    Unlike :func:`affnist_style` the frame is kept and the shift is not bounded by the ink, so a
    digit may be cut at the border when ``max_shift`` exceeds its margin (MNIST: about 4 pixels).
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    if max_rotation_deg < 0 or max_shear < 0 or max_shift < 0:
        raise ValueError(
            "max_rotation_deg, max_shear and max_shift must be >= 0, got "
            f"{max_rotation_deg}, {max_shear}, {max_shift}"
        )
    if not 0 < scale_range[0] <= scale_range[1]:
        raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
    gen = _generator(seed)
    n = images.shape[0]
    matrix = _random_linear(n, gen, max_rotation_deg, max_shear, scale_range)
    shift = torch.stack([_uniform(n, -max_shift, max_shift, gen) for _ in range(2)], -1)
    return affine_warp(images, matrix, shift).clamp_(0.0, 1.0)


def _translation_inside_frame(
    images: Tensor, gen: torch.Generator, threshold: float = 0.0
) -> Tensor:
    """Random integer shifts that keep every pixel above ``threshold`` inside the frame."""
    n, _, h, w = images.shape
    ink = images.amax(dim=1) > threshold  # (N, H, W)
    rows, cols = ink.any(dim=2), ink.any(dim=1)
    shifts = torch.zeros(n, 2, dtype=torch.float64)
    for i in range(n):
        r, c = rows[i].nonzero().flatten(), cols[i].nonzero().flatten()
        if len(r) == 0:
            continue
        low_x, high_x = -int(c.min()), w - 1 - int(c.max())
        low_y, high_y = -int(r.min()), h - 1 - int(r.max())
        shifts[i, 0] = torch.randint(low_x, high_x + 1, (1,), generator=gen).item()
        shifts[i, 1] = torch.randint(low_y, high_y + 1, (1,), generator=gen).item()
    return shifts


def random_rotation(images: Tensor, seed: int, max_angle_deg: float = 360.0) -> Tensor:
    """Rotated-MNIST: rotate each image about its centre by an angle uniform in
    [0, ``max_angle_deg``) degrees (Larochelle et al., 2007)."""
    gen = _generator(seed)
    angle = torch.deg2rad(_uniform(images.shape[0], 0.0, max_angle_deg, gen))
    zeros, ones = torch.zeros_like(angle), torch.ones_like(angle)
    return affine_warp(images, affine_matrices(angle, zeros, ones, ones)).clamp_(0.0, 1.0)


def rotation_matrix(angle_rad: float | Tensor) -> Tensor:
    """The (2, 2) rotation by ``angle_rad`` in (x, y) pixel coordinates."""
    angle = torch.as_tensor(angle_rad, dtype=torch.float64)
    return torch.stack(
        [torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)]
    ).reshape(2, 2)
