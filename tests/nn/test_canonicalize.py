import math

import pytest
import torch
import torch.nn.functional as F

from geozoo.groups import SL, GLPlus, RotationScaling
from geozoo.nn import MomentCanonicalization
from geozoo.nn.canonicalize import image_moments, moment_frames


def _blobs(size: int, matrix: torch.Tensor, shift=(0.0, 0.0)) -> torch.Tensor:
    """Two anisotropic Gaussian blobs, rendered analytically after moving the plane by
    ``p -> A p + t`` about the centre (no resampling error)."""
    c = (size - 1) / 2
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float64),
        torch.arange(size, dtype=torch.float64),
        indexing="ij",
    )
    p = torch.stack([xs - c - shift[0], ys - c - shift[1]], -1)
    q = p @ torch.linalg.inv(matrix).T  # the pre-image of every pixel
    blob1 = torch.exp(-0.5 * (((q[..., 0] + 3) / 2.0) ** 2 + ((q[..., 1] - 2) / 4.0) ** 2))
    blob2 = 0.6 * torch.exp(-0.5 * (((q[..., 0] - 4) / 3.0) ** 2 + ((q[..., 1] + 3) / 1.5) ** 2))
    return (blob1 + blob2)[None, None]


def test_image_moments_match_brute_force():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 2, 7, 9, generator=gen, dtype=torch.float64)
    centre, moments = image_moments(images)
    for img, c, s in zip(images, centre, moments):
        mass = img.sum(0)
        total = sum(mass[i, j] for i in range(7) for j in range(9))
        cx = sum(mass[i, j] * j for i in range(7) for j in range(9)) / total
        cy = sum(mass[i, j] * i for i in range(7) for j in range(9)) / total
        sxx = sum(mass[i, j] * (j - cx) ** 2 for i in range(7) for j in range(9)) / total
        sxy = sum(mass[i, j] * (j - cx) * (i - cy) for i in range(7) for j in range(9)) / total
        syy = sum(mass[i, j] * (i - cy) ** 2 for i in range(7) for j in range(9)) / total
        torch.testing.assert_close(c, torch.stack([cx, cy]))
        torch.testing.assert_close(s, torch.stack([sxx, sxy, sxy, syy]).view(2, 2))


def test_empty_image_gets_the_centre_and_passes_through():
    images = torch.zeros(2, 1, 8, 8)
    centre, moments = image_moments(images)
    torch.testing.assert_close(centre, torch.full((2, 2), 3.5, dtype=torch.float64))
    assert moments.abs().max() == 0
    out = MomentCanonicalization("full")(images)
    assert torch.isfinite(out).all() and out.abs().max() == 0


@pytest.mark.parametrize(
    ("positive", "group"),
    [
        ("full", GLPlus(2, pd_scale=0.4)),
        ("unit", SL(2, pd_scale=0.4)),
        ("scalar", RotationScaling(2)),
    ],
)
def test_frames_turn_group_elements_into_rotations(positive, group):
    """M(A S A^T) = A M(S) Q^T with Q a rotation, exactly when eps = 0."""
    gen = torch.Generator().manual_seed(1)
    a = group.sample(16, gen, torch.float64)
    root = torch.randn(16, 2, 2, generator=gen, dtype=torch.float64)
    s = root @ root.mT + 0.1 * torch.eye(2, dtype=torch.float64)
    m = moment_frames(s, positive, radius=3.0, eps=0.0)
    m_moved = moment_frames(a @ s @ a.mT, positive, radius=3.0, eps=0.0)
    q_t = torch.linalg.solve(a @ m, m_moved)
    eye = torch.eye(2, dtype=torch.float64).expand(16, 2, 2)
    torch.testing.assert_close(q_t.mT @ q_t, eye, atol=1e-10, rtol=0)
    torch.testing.assert_close(torch.linalg.det(q_t), torch.ones(16, dtype=torch.float64))


def test_whitened_image_has_isotropic_moments():
    matrix = torch.tensor([[1.3, 0.4], [-0.2, 0.8]], dtype=torch.float64)
    image = _blobs(64, matrix)
    out = MomentCanonicalization("full", radius=5.0, eps=0.0)(image)
    centre, moments = image_moments(out)
    torch.testing.assert_close(
        centre[0], torch.full((2,), 31.5, dtype=torch.float64), atol=0.02, rtol=0
    )
    torch.testing.assert_close(
        moments[0], 25.0 * torch.eye(2, dtype=torch.float64), atol=0.5, rtol=0
    )


def test_integer_shifts_give_the_same_canonical_image():
    image = torch.zeros(1, 1, 48, 48)
    image[..., 14:30, 16:28] = torch.rand(16, 12, generator=torch.Generator().manual_seed(0))
    moved = torch.roll(image, shifts=(5, -4), dims=(2, 3))  # the content stays inside the frame
    for positive in ("none", "scalar", "unit", "full"):
        canon = MomentCanonicalization(positive)
        torch.testing.assert_close(canon(moved), canon(image), atol=1e-5, rtol=0)


def test_affine_moves_leave_only_a_rotation():
    """The canonical image of an affinely moved input equals the canonical image of the
    original rotated by Q; without canonicalisation the images differ by far more."""
    angle = math.radians(15.0)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shear_scale = torch.tensor([[1.1, 0.2], [0.0, 0.85]])
    matrix = (rot @ shear_scale).double()
    original, moved = _blobs(64, torch.eye(2, dtype=torch.float64)), _blobs(64, matrix, (4.0, -3.0))
    canon = MomentCanonicalization("full", radius=6.0, eps=0.0)
    a, b = canon(original), canon(moved)
    _, s = image_moments(original)
    _, s_moved = image_moments(moved)
    q_t = torch.linalg.solve(
        matrix @ moment_frames(s, "full", 6.0, 0.0)[0], moment_frames(s_moved, "full", 6.0, 0.0)[0]
    )
    # b(q) = a(Q^T q): resample a at Q^T q about the centre
    theta = torch.cat([q_t, torch.zeros(2, 1, dtype=torch.float64)], 1)[None]
    a_rotated = F.grid_sample(
        a, F.affine_grid(theta, a.shape, align_corners=True), align_corners=True
    )
    error = (b - a_rotated).abs().max() / a.abs().max()
    baseline = (moved - original).abs().max() / original.abs().max()
    assert error < 0.05 and baseline > 0.5, (error, baseline)
    # ... and what is left is a rotation, up to the discretisation of the moments
    eye = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(q_t.mT @ q_t, eye, atol=0.02, rtol=0)
    assert abs(float(torch.linalg.det(q_t)) - 1) < 0.02


def test_unit_keeps_the_area_and_scalar_sets_the_spread():
    matrix = torch.tensor([[1.3, 0.4], [-0.2, 0.8]], dtype=torch.float64)
    image = _blobs(64, matrix)
    _, s = image_moments(image)
    for positive, expected_det in (("unit", float(torch.linalg.det(s[0]))), ("scalar", 6.0**4)):
        out = MomentCanonicalization(positive, radius=6.0, eps=0.0)(image)
        _, s_out = image_moments(out)
        assert abs(float(torch.linalg.det(s_out[0])) / expected_det - 1) < 0.05, positive
    _, s_unit = image_moments(MomentCanonicalization("unit", eps=0.0)(image))
    assert abs(float(s_unit[0, 0, 1])) < 0.05 * float(s_unit[0, 0, 0])  # isotropic


def test_degenerate_moments_stay_finite():
    line = torch.zeros(2, 1, 32, 32)
    line[0, 0, 8:24, 16] = 1.0  # a one-pixel-wide line
    line[1, 0, 16, 16] = 1.0  # a single pixel
    for positive in ("scalar", "unit", "full"):
        out = MomentCanonicalization(positive, eps=0.0)(line)
        assert torch.isfinite(out).all(), positive


def test_a_group_value_selects_its_positive_factor():
    assert MomentCanonicalization(SL(2)).positive == "unit"
    assert MomentCanonicalization(GLPlus(2)).positive == "full"
    centre, frame = MomentCanonicalization(RotationScaling(2)).pose(
        _blobs(32, torch.eye(2, dtype=torch.float64))
    )
    assert centre.shape == (1, 2) and frame.shape == (1, 2, 2)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="positive must be one of"):
        MomentCanonicalization("diagonal")
    with pytest.raises(ValueError, match="radius must be > 0"):
        MomentCanonicalization("full", radius=0.0)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        MomentCanonicalization("full", eps=-1.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        MomentCanonicalization("full")(torch.zeros(8, 8))
