"""Whole-group augmentation: elements of a Lie group of :mod:`geozoo.groups` acting on images.

Instead of a list of operations the augmentation space can be a group acting on the plane, e.g.
SO(2), GL+(2), SL(2), the rotation-scalings, or an affine group ``R^2 x| H``: a transformation is
an element ``g`` drawn from the group's own sampler (Haar on the rotations, the documented
log-normal / log-uniform law on the positive factors, uniform translations), so the Metropolis-
Hastings sampler of :mod:`geozoo.augment.mcmc` searches the group itself (Hounie, Chamon & Ribeiro,
ICML 2023, pose augmentation as invariance to a set of transformations; here that set is a group).

``g`` acts on pixel coordinates centred on the image, in units of half the image side (the
normalised coordinates of ``grid_sample``), by ``p -> A p + t``, through one batched warp
(:func:`geozoo.data.transforms.affine_warp`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from geozoo.augment.operations import check_images
from geozoo.augment.spaces import AugmentationSpace
from geozoo.data.transforms import affine_warp
from geozoo.groups import Affine, MatrixGroup, get_group

__all__ = ["GroupAction", "GroupSpace"]


class GroupAction:
    """A group of 2 x 2 matrices (or an affine group over one) acting on images.

    Args:
        group: a :func:`geozoo.groups.get_group` name (``"so2"``, ``"gl2"``, ``"sl2"``,
            ``"rs2"``, ``"c4"``, ...), a :class:`~geozoo.groups.MatrixGroup` of 2 x 2 matrices,
            or a :class:`~geozoo.groups.Affine` group of the plane.
        translation: with a linear group, also translate uniformly in ``[-t, t]^2`` (fractions
            of half the image side), i.e. act by the affine group ``R^2 x| H``.
    """

    def __init__(self, group: str | MatrixGroup | Affine, translation: float = 0.0) -> None:
        if not isinstance(group, Affine):
            group = get_group(group)
        if group.n != 2:
            raise ValueError(f"images are planar: expected a group acting on R^2, got {group!r}")
        if (
            not isinstance(translation, int | float)
            or not math.isfinite(translation)
            or translation < 0
        ):
            raise ValueError(f"translation must be a finite number >= 0, got {translation!r}")
        if isinstance(group, Affine) and translation:
            raise ValueError("an Affine group samples its own translations: leave translation=0")
        self.group = group
        self.translation = float(translation)

    def __repr__(self) -> str:
        return f"GroupAction({self.group!r}, translation={self.translation})"

    @property
    def name(self) -> str:
        return getattr(self.group, "name", repr(self.group))

    def sample(
        self, num: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> Tensor:
        """``num`` elements as homogeneous ``(num, 3, 3)`` float32 matrices ``[[A, t], [0, 1]]``."""
        if isinstance(self.group, Affine):
            return self.group.sample(num, generator, dtype=torch.float32, device=device)
        linear = self.group.sample(num, generator, dtype=torch.float32)
        shift = (2 * torch.rand(num, 2, generator=generator) - 1) * self.translation
        g = torch.zeros(num, 3, 3)
        g[:, :2, :2], g[:, :2, 2], g[:, 2, 2] = linear, shift, 1.0
        return g.to(device)

    def __call__(self, images: Tensor, elements: Tensor) -> Tensor:
        """Move image ``i`` by ``elements[i]`` (``(N, 2, 2)`` linear or ``(N, 3, 3)`` affine)."""
        check_images(images)
        n, h, w = images.shape[0], images.shape[-2], images.shape[-1]
        if elements.shape not in ((n, 2, 2), (n, 3, 3)):
            raise ValueError(
                f"expected one group element per image, (N, 2, 2) or (N, 3, 3) with N={n}, got "
                f"{tuple(elements.shape)}"
            )
        elements = elements.to(images)
        shift = None
        if elements.shape[-1] == 3:
            half = torch.tensor([w / 2.0, h / 2.0], dtype=images.dtype, device=images.device)
            shift = elements[:, :2, 2] * half
        # normalised units are anisotropic on non-square images: conjugate A into pixel units
        scale = torch.diag(
            torch.tensor([w / 2.0, h / 2.0], dtype=images.dtype, device=images.device)
        )
        matrix = scale @ elements[:, :2, :2] @ torch.linalg.inv(scale)
        return affine_warp(images, matrix, shift)


class GroupSpace(AugmentationSpace):
    """The augmentation space of a :class:`GroupAction`: parameters are the 6 entries of
    ``[A | t]``; the visit histogram bins the rotation angle of the polar factor of ``A``
    (``angle_bins`` bins over [-180, 180) degrees) and ``log |det A|`` (``scale_bins`` bins over
    ``[-log 4, log 4]``, clamped).

    Args:
        group, translation: as for :class:`GroupAction`.
        angle_bins, scale_bins: histogram resolution.
    """

    num_params = 6

    def __init__(
        self,
        group: str | MatrixGroup | Affine,
        translation: float = 0.0,
        angle_bins: int = 12,
        scale_bins: int = 5,
    ) -> None:
        self.action = GroupAction(group, translation)
        self.bin_shape = (angle_bins, scale_bins)

    def __repr__(self) -> str:
        return f"GroupSpace({self.action.group!r}, translation={self.action.translation})"

    def sample(
        self, num: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> Tensor:
        return self.action.sample(num, generator, device)[:, :2, :].reshape(num, 6)

    def elements(self, params: Tensor) -> Tensor:
        """Homogeneous ``(N, 3, 3)`` matrices from parameter rows."""
        g = torch.zeros(params.shape[0], 3, 3, dtype=params.dtype, device=params.device)
        g[:, :2, :] = params.reshape(-1, 2, 3)
        g[:, 2, 2] = 1.0
        return g

    def apply(self, images: Tensor, params: Tensor) -> Tensor:
        self.check_params(images, params)
        return self.action(images, self.elements(params.to(images.device)))

    def bins(self, params: Tensor) -> Tensor:
        a = params.reshape(-1, 2, 3)[:, :, :2].double()
        u, _, vh = torch.linalg.svd(a)
        rotation = u @ vh  # the orthogonal polar factor
        angle = torch.atan2(rotation[:, 1, 0], rotation[:, 0, 0])
        angles, scales = self.bin_shape
        angle_bin = ((angle + math.pi) / (2 * math.pi) * angles).floor().long().clamp(0, angles - 1)
        log_det = torch.linalg.det(a).abs().clamp_min(1e-12).log()
        limit = math.log(4.0)
        scale_bin = ((log_det + limit) / (2 * limit) * scales).floor().long().clamp(0, scales - 1)
        return (angle_bin * scales + scale_bin).to(params.device)
