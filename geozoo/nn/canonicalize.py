"""Moment canonicalisation of images for the affine groups ``R^2 x| H``.

A canonicalisation maps every input to a standard pose before an ordinary network sees it, so
the composition is invariant to the transformations the pose undoes (Kaba, Mondal, Zhang,
Bengio & Ravanbakhsh, "Equivariance with Learned Canonicalization Functions", ICML 2023). Here
the pose comes from the image's intensity moments and follows the polar decomposition
``g = R P`` of Mironenco & Forre (ICLR 2024) used by the group convolutions:

* the translation by the intensity centroid ``c = sum_p x(p) p / sum_p x(p)``;
* the positive-definite factor by the second central moments ``S = sum_p x(p) (p - c)(p - c)^T /
  sum_p x(p)``: the canonical image samples the input at ``c + M q`` for output offsets ``q``
  from the frame's centre, with ``M`` a function of ``S`` chosen per positive factor of ``H``.

If the input is moved by ``p -> A p + t`` (``A`` in ``H``, content inside the frame, continuous
images) then ``c -> A c + t`` and ``S -> A S A^T``, and the frames satisfy
``M(A S A^T) = A M(S) Q^T`` with ``Q`` a rotation: the canonical image of the moved input is the
canonical image of the original rotated by ``Q``. Translations and the positive factor are
undone exactly (up to resampling); the rotation factor is left to the network (for digits
``|Q|`` is about as large as the rotation part of ``A``). The frames, by positive factor:

* ``"none"`` (SO(2)): ``M = I``, the centroid only;
* ``"scalar"`` (rotation-scaling): ``M = (det S)^{1/4} / r I``, the mean spread becomes ``r``;
* ``"unit"`` (SL(2)): ``M = S^{1/2} / (det S)^{1/4}``, the covariance becomes isotropic at the
  same area (scale is kept, as SL(2) cannot change it);
* ``"full"`` (GL+(2)): ``M = S^{1/2} / r``, the covariance becomes ``r^2 I`` (whitening).

``S^{1/2}`` is the symmetric square root of ``S + eps I``; ``eps`` (pixels^2) keeps thin strokes
such as a ``1`` from being stretched without bound and costs a small residual positive factor
for them. With ``eps = 0`` the identity above holds exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geozoo.groups import PolarGroup
from geozoo.groups.linalg import sym_apply

__all__ = ["MomentCanonicalization", "image_moments", "moment_frames"]

_POSITIVE = ("none", "scalar", "unit", "full")


def image_moments(images: Tensor) -> tuple[Tensor, Tensor]:
    """Intensity centroids ``(N, 2)`` and second central moments ``(N, 2, 2)`` in pixel
    coordinates ``(x, y)`` (x = column, y = row), float64. The mass of a pixel is its channel
    sum clamped at zero, so images are expected on a zero background (not mean-subtracted); an
    all-zero image gets the frame's centre and zero moments."""
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    mass = images.detach().double().sum(1).clamp_min(0)  # (N, H, W)
    total = mass.sum((1, 2))
    empty = total <= 0
    weight = mass / torch.where(empty, 1.0, total)[:, None, None]
    weight[empty] = 1.0 / (h * w)
    ys = torch.arange(h, dtype=torch.float64, device=images.device)
    xs = torch.arange(w, dtype=torch.float64, device=images.device)
    col, row = weight.sum(1), weight.sum(2)  # (N, W), (N, H)
    centre = torch.stack([col @ xs, row @ ys], -1)
    dx = xs - centre[:, :1]  # (N, W)
    dy = ys - centre[:, 1:]  # (N, H)
    sxx = (col * dx**2).sum(1)
    syy = (row * dy**2).sum(1)
    sxy = torch.einsum("nhw,nh,nw->n", weight, dy, dx)
    moments = torch.stack([sxx, sxy, sxy, syy], -1).view(n, 2, 2)
    moments[empty] = 0.0
    return centre, moments


def moment_frames(moments: Tensor, positive: str, radius: float = 5.0, eps: float = 0.5) -> Tensor:
    """The linear parts ``M`` (see the module docstring) for second moments ``(..., 2, 2)``."""
    if positive not in _POSITIVE:
        raise ValueError(f"positive must be one of {_POSITIVE}, got {positive!r}")
    eye = torch.eye(2, dtype=moments.dtype, device=moments.device)
    if positive == "none":
        return eye.expand(moments.shape).clone()
    # a relative eigenvalue floor keeps degenerate moments (a one-pixel line, eps = 0) finite
    sqrt_s = sym_apply(moments + eps * eye, _floored_sqrt)
    root_det = torch.linalg.det(sqrt_s)[..., None, None]  # (det S)^{1/2}
    if positive == "scalar":
        return root_det.sqrt() / radius * eye
    return sqrt_s / radius if positive == "full" else sqrt_s / root_det.sqrt()


def _floored_sqrt(values: Tensor) -> Tensor:
    floor = (values.amax(-1, keepdim=True) * 1e-12).clamp_min(1e-30)
    return torch.maximum(values, floor).sqrt()


class MomentCanonicalization(nn.Module):
    """Resample images into their moment pose (module docstring): centroid to the frame's
    centre and, depending on ``positive``, the second moments normalised.

    Args:
        positive: the positive factor to undo: ``"none"``, ``"scalar"``, ``"unit"`` or
            ``"full"``, or a :class:`~geozoo.groups.PolarGroup` (its ``positive``: GL+(2) ->
            ``"full"``, SL(2) -> ``"unit"``, rotation-scaling -> ``"scalar"``, SO(2) ->
            ``"none"``).
        radius: target spread in pixels for ``"scalar"`` and ``"full"``.
        eps: regularisation of the second moments in pixels^2.
        size: ``(H', W')`` of the canonical image (default: the input's). The pose centres
            the content and, for ``"scalar"`` and ``"full"``, sets its spread to ``radius``
            pixels whatever the input's size, so a canvas just large enough for that spread
            (28 x 28 holds 99% of a whitened digit's mass for ``radius=5``) saves the layers
            after it work in proportion to its area.

    Input ``(N, C, H, W)`` and output ``(N, C, H', W')`` on a zero background; bilinear
    resampling with zero padding, so content moved outside the frame is lost. The pose is
    computed without gradient; the resampling passes gradients to the image. :meth:`pose`
    returns the pose ``(c, M)`` itself, for uses that need the group element rather than the
    canonical image.
    """

    def __init__(
        self,
        positive: str | PolarGroup = "full",
        radius: float = 5.0,
        eps: float = 0.5,
        size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(positive, PolarGroup):
            positive = positive.positive
        if positive not in _POSITIVE:
            raise ValueError(f"positive must be one of {_POSITIVE}, got {positive!r}")
        if radius <= 0:
            raise ValueError(f"radius must be > 0 pixels, got {radius}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0 pixels^2, got {eps}")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size must be (H, W) with positive sides or None, got {size}")
        self.positive, self.radius, self.eps = positive, float(radius), float(eps)
        self.size = None if size is None else (int(size[0]), int(size[1]))

    def extra_repr(self) -> str:
        size = "" if self.size is None else f", size={self.size}"
        return f"positive={self.positive!r}, radius={self.radius:g}, eps={self.eps:g}{size}"

    def pose(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Centroids ``c`` ``(N, 2)`` and frames ``M`` ``(N, 2, 2)`` in float64: the canonical
        image at offset ``q`` from the frame's centre is the input at ``c + M q``."""
        centre, moments = image_moments(images)
        return centre, moment_frames(moments, self.positive, self.radius, self.eps)

    def sampling_grid(self, images: Tensor) -> Tensor:
        """The ``grid_sample`` grid ``(N, H', W', 2)`` that reads ``c + M q`` for every output
        pixel ``q`` (offsets from the output frame's centre)."""
        centre, frame = self.pose(images)
        h, w = images.shape[-2:]
        out_h, out_w = self.size or (h, w)
        ys = torch.arange(out_h, dtype=torch.float64, device=images.device) - (out_h - 1) / 2
        xs = torch.arange(out_w, dtype=torch.float64, device=images.device) - (out_w - 1) / 2
        offsets = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (H, W, 2) as (x, y)
        points = torch.einsum("nab,hwb->nhwa", frame, offsets) + centre[:, None, None, :]
        scale = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], dtype=torch.float64)
        return (points * scale.to(points.device) - 1).to(images.dtype)

    def forward(self, images: Tensor) -> Tensor:
        grid = self.sampling_grid(images)
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
