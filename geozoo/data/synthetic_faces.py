"""Procedural faces that need no download: identities are parameter vectors, images render them.

A head is a vertical cylinder seen from the front; the face's features (eyes, brows, nose,
mouth, hairline) are drawn in the cylinder's own coordinates, so a yaw rotation moves them
sideways and compresses the far side while the silhouette stays put, and the nose, which stands
out of the surface, moves further than the eyes. Each identity is left-right symmetric up to a
small per-identity asymmetry (one eye and brow higher, the mouth off centre, eyes of unequal
size); each image adds a random yaw, a light direction (Lambertian shading of the cylinder), an
expression (smile, open mouth, raised brows, possibly lopsided), a small misalignment and pixel
noise. Everything is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["FaceRendering", "render_faces", "sample_identities"]

#: Identity parameters: name -> (low, high) of the uniform prior.
IDENTITY_PRIOR: dict[str, tuple[float, float]] = {
    "face_width": (0.62, 0.80),
    "face_height": (0.82, 0.95),
    "eye_spacing": (0.22, 0.34),
    "eye_height": (-0.22, -0.06),
    "eye_radius": (0.06, 0.10),
    "brow_gap": (0.10, 0.19),
    "brow_tilt": (-0.35, 0.35),
    "brow_thickness": (0.025, 0.055),
    "nose_length": (0.16, 0.30),
    "nose_width": (0.05, 0.11),
    "mouth_height": (0.38, 0.56),
    "mouth_width": (0.16, 0.32),
    "mouth_thickness": (0.025, 0.05),
    "hairline": (-0.78, -0.45),
    "skin_tone": (0.0, 1.0),
    "skin_warmth": (-1.0, 1.0),
    "hair_tone": (0.0, 1.0),
    # per-identity asymmetries (small): left-minus-right offsets and ratios
    "eye_asymmetry": (-0.03, 0.03),
    "brow_asymmetry": (-0.035, 0.035),
    "mouth_offset": (-0.03, 0.03),
    "eye_size_asymmetry": (-0.12, 0.12),
}
NOSE_DEPTH = 0.35
DARK_SKIN, LIGHT_SKIN = (
    torch.tensor(c)[:, None, None] for c in ((0.36, 0.24, 0.16), (0.96, 0.80, 0.68))
)
DARK_HAIR, FAIR_HAIR = (
    torch.tensor(c)[:, None, None] for c in ((0.05, 0.04, 0.03), (0.85, 0.70, 0.40))
)


def sample_identities(count: int, generator: torch.Generator) -> Tensor:
    """``count`` identities, ``(count, len(IDENTITY_PRIOR))``, uniform in :data:`IDENTITY_PRIOR`."""
    low, high = torch.tensor(list(IDENTITY_PRIOR.values()), dtype=torch.float64).T
    return (
        low + (high - low) * torch.rand(count, len(low), generator=generator, dtype=torch.float64)
    ).float()


@dataclass(frozen=True)
class FaceRendering:
    """Per-image conditions: each a ``(N,)`` tensor.

    Attributes:
        yaw: head rotation about the vertical axis, radians (positive turns features to +x).
        light: light direction in the horizontal plane, radians from the viewing direction.
        smile: mouth curvature, 0 neutral to 1 broad smile.
        open_mouth: 0 closed to 1 open.
        brow_raise: 0 to 1.
        lopsided: -1 to 1, how much more one side of the smile and brows moves than the other.
        shift_x, shift_y: misalignment in image units (the image spans [-1, 1]).
        noise: standard deviation of the Gaussian pixel noise.
    """

    yaw: Tensor
    light: Tensor
    smile: Tensor
    open_mouth: Tensor
    brow_raise: Tensor
    lopsided: Tensor
    shift_x: Tensor
    shift_y: Tensor
    noise: Tensor

    @staticmethod
    def neutral(count: int) -> FaceRendering:
        """Frontal, front-lit, neutral, aligned and noise-free."""
        zero = torch.zeros(count)
        return FaceRendering(zero, zero, zero, zero, zero, zero, zero, zero, zero)

    @staticmethod
    def sample(
        count: int,
        generator: torch.Generator,
        max_yaw: float = 0.6,
        max_light: float = 0.9,
        max_shift: float = 0.04,
        noise: float = 0.03,
    ) -> FaceRendering:
        """Random conditions: yaw ``N(0, max_yaw / 2)`` clipped to ``+-max_yaw`` (so most
        faces are near frontal), light uniform in ``+-max_light``, expressions uniform."""

        def uniform(low: float, high: float) -> Tensor:
            return low + (high - low) * torch.rand(count, generator=generator)

        yaw = (torch.randn(count, generator=generator) * max_yaw / 2).clamp(-max_yaw, max_yaw)
        return FaceRendering(
            yaw=yaw,
            light=uniform(-max_light, max_light),
            smile=uniform(0.0, 1.0),
            open_mouth=uniform(0.0, 1.0) ** 2,
            brow_raise=uniform(0.0, 1.0),
            lopsided=uniform(-1.0, 1.0) * 0.5,
            shift_x=uniform(-max_shift, max_shift),
            shift_y=uniform(-max_shift, max_shift),
            noise=torch.full((count,), float(noise)),
        )


def _soft(distance: Tensor, softness: float) -> Tensor:
    """A mask that is 1 inside (``distance < 0``) and 0 outside, blurred over ``softness``."""
    return torch.sigmoid(-distance / softness)


def _ellipse(u: Tensor, v: Tensor, cu: Tensor, cv: Tensor, ru: Tensor, rv: Tensor) -> Tensor:
    """Signed-ish distance to an axis-aligned ellipse (negative inside), in units of ``rv``."""
    return (((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2).sqrt().sub(1.0) * rv


def render_faces(
    identities: Tensor,
    conditions: FaceRendering,
    size: int = 32,
    channels: int = 3,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Render one face per row of ``identities`` under ``conditions``.

    Returns ``(images, landmarks)``: float images in [0, 1] of shape ``(N, channels, size,
    size)`` (``channels`` 3 for colour, 1 for luminance) and the image coordinates (x, y in
    [-1, 1]) of the left eye, the right eye and the nose tip, ``(N, 3, 2)``. ``generator``
    draws the backgrounds and the noise (default: a fresh one seeded with 0).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if generator is None:  # backgrounds and noise never come from the global RNG
        generator = torch.Generator().manual_seed(0)
    p = {name: identities[:, i, None, None] for i, name in enumerate(IDENTITY_PRIOR)}
    c = {name: getattr(conditions, name)[:, None, None] for name in FaceRendering.__annotations__}
    n = len(identities)
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    x = x[None] - c["shift_x"]
    y = y[None] - c["shift_y"]
    soft = 1.5 / size
    radius = p["face_width"]
    # cylinder: psi is the surface angle seen from the camera, phi the face's own angle
    psi = torch.asin((x / radius).clamp(-1, 1))
    phi = psi - c["yaw"]
    u = radius * torch.sin(phi)  # face coordinate across, in image units at yaw 0
    v = y
    side = torch.where(u < 0, 1.0, -1.0)  # +1 on the image's left half of the face

    head = _soft(_ellipse(x, y, 0.0, 0.0, radius, p["face_height"]), soft)
    hair_head = _soft(_ellipse(x, y + 0.04, 0.0, 0.0, radius + 0.05, p["face_height"] + 0.06), soft)
    hair = hair_head * (1 - head) + head * _soft(
        y - (p["hairline"] + 0.06 * (u / radius) ** 2), soft
    )
    shade = 0.35 + 0.65 * torch.cos(psi - c["light"]).clamp_min(0.0)

    # skin from dark to light brown, warmer or cooler; hair from black to blond
    skin = torch.lerp(DARK_SKIN, LIGHT_SKIN, p["skin_tone"][:, None])
    skin = skin + 0.05 * p["skin_warmth"][:, None] * torch.tensor([1.0, 0.0, -1.0])[:, None, None]
    hair_colour = torch.lerp(DARK_HAIR, FAIR_HAIR, p["hair_tone"][:, None])
    background = 0.3 + 0.4 * torch.rand(n, 1, 1, 1, generator=generator).expand(n, 3, 1, 1)
    image = background.expand(n, 3, size, size).clone()
    image = torch.lerp(image, skin, head[:, None])

    def paint(mask: Tensor, level: float | Tensor) -> None:
        nonlocal image
        image = torch.lerp(image, torch.as_tensor(level) * skin, mask[:, None].clamp(0, 1))

    lop = c["lopsided"] * side
    for s in (1.0, -1.0):  # the image's left (s=+1) and right features
        eye_u = -s * p["eye_spacing"]
        eye_v = p["eye_height"] + s * 0.5 * p["eye_asymmetry"]
        eye_r = p["eye_radius"] * (1 + s * 0.5 * p["eye_size_asymmetry"])
        paint(_soft(_ellipse(u, v, eye_u, eye_v, 1.4 * eye_r, eye_r), soft), 0.12)
        brow_v = (
            eye_v
            - p["brow_gap"]
            + s * 0.5 * p["brow_asymmetry"]
            - 0.05 * c["brow_raise"] * (1 + s * c["lopsided"])
            + p["brow_tilt"] * (u - eye_u).abs() * 0.5
        )
        brow = _soft((v - brow_v).abs() - p["brow_thickness"], soft) * _soft(
            (u - eye_u).abs() - 1.7 * p["eye_radius"], soft
        )
        paint(brow, 0.25)
    # nose: stands out by NOSE_DEPTH, so under yaw it drifts further than the eyes
    nose_u = NOSE_DEPTH * torch.sin(c["yaw"])
    tip_v = p["eye_height"] + p["nose_length"]
    ridge = torch.exp(-(((u - nose_u) / p["nose_width"]) ** 2)) * _soft(
        (v - 0.5 * (p["eye_height"] + tip_v)).abs() - 0.5 * p["nose_length"], soft
    )
    paint(0.6 * ridge, 0.6)
    for s in (1.0, -1.0):
        nostril = _ellipse(
            u, v, nose_u - s * 0.6 * p["nose_width"], tip_v, 0.4 * p["nose_width"], 0.025
        )
        paint(_soft(nostril, soft), 0.3)
    # mouth: a curve whose corners rise with the smile (more on one side when lopsided)
    mouth_u = p["mouth_offset"]
    across = ((u - mouth_u) / p["mouth_width"]).clamp(-1, 1)
    lift = 0.09 * c["smile"] * (1 + lop) * across**2
    centre_v = p["mouth_height"] - lift
    thickness = p["mouth_thickness"] * (1 + 2.5 * c["open_mouth"] * (1 - across**2))
    mouth = _soft((v - centre_v).abs() - thickness, soft) * _soft(
        ((u - mouth_u) / p["mouth_width"]).abs() - 1.0, soft / 0.2
    )
    paint(mouth, 0.3)

    image = image * (0.4 + 0.6 * shade[:, None]) * head[:, None] + image * (1 - head[:, None])
    image = torch.lerp(image, hair_colour.expand(n, 3, size, size), hair[:, None].clamp(0, 1))
    noise = torch.randn(image.shape, generator=generator) * c["noise"][:, None]
    image = (image + noise).clamp(0.0, 1.0)
    if channels == 1:
        image = (image * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(
            1, keepdim=True
        )

    def to_image(face_u: Tensor, face_v: Tensor) -> Tensor:
        r = identities[:, 0]
        image_x = r * torch.sin(torch.asin((face_u / r).clamp(-1, 1)) + conditions.yaw)
        return torch.stack([image_x + conditions.shift_x, face_v + conditions.shift_y], dim=-1)

    q = {name: identities[:, i] for i, name in enumerate(IDENTITY_PRIOR)}
    landmarks = torch.stack(
        [
            to_image(-q["eye_spacing"], q["eye_height"] + 0.5 * q["eye_asymmetry"]),
            to_image(q["eye_spacing"], q["eye_height"] - 0.5 * q["eye_asymmetry"]),
            to_image(NOSE_DEPTH * torch.sin(conditions.yaw), q["eye_height"] + q["nose_length"]),
        ],
        dim=1,
    )
    return image, landmarks
