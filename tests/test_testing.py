"""Tests of geozoo.testing against functions whose symmetry is known by construction."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from geozoo.data.pointclouds import inertia_tensor
from geozoo.testing import (
    Transform,
    affine,
    assert_equivariant,
    compose,
    conjugate,
    d4_elements,
    disc_mask,
    equivariance_error,
    fiber_transform,
    flip,
    identity,
    irreps_transform,
    permute_points,
    random_orthogonal_3d,
    random_rotation_3d,
    rot90,
    rotate,
    rotation_3d,
    translate,
    translate_points,
)


def symmetric_conv(channels_in: int = 2, channels_out: int = 3) -> nn.Conv2d:
    """A conv whose kernels are averaged over D4, hence D4-equivariant (trivial fibers)."""
    # symmetrise in float64 so that the float32 weights are exactly symmetric after rounding
    conv = nn.Conv2d(channels_in, channels_out, 5, padding=2, bias=True).double()
    with torch.no_grad():
        w = conv.weight
        orbit = [torch.rot90(w, k, (-2, -1)) for k in range(4)]
        orbit += [torch.flip(o, (-1,)) for o in orbit]
        conv.weight.copy_(torch.stack(orbit).mean(0))
    return conv.float()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(4, 2, 12, 12, generator=torch.Generator().manual_seed(0))


def test_d4_symmetric_conv_is_equivariant_and_pooled_invariant(images):
    torch.manual_seed(0)
    conv = symmetric_conv()
    result = assert_equivariant(conv, images, d4_elements(), d4_elements())
    assert result.dtype == torch.float64 and result.max < 1e-12
    pooled = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert_equivariant(pooled, images, d4_elements(), tolerance=1e-9)  # exact in float64
    # float32 stays within the float32 default tolerance
    r32 = assert_equivariant(pooled, images, d4_elements(), dtype=torch.float32)
    assert r32.dtype == torch.float32 and r32.max > 0


def test_generic_conv_fails_with_a_useful_message(images):
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 5, padding=2)
    with pytest.raises(AssertionError, match=r"not equivariant: .*rot90\(k="):
        assert_equivariant(conv, images, [rot90(1), rot90(2)], [rot90(1), rot90(2)])
    # a plain conv is translation equivariant with circular padding
    circ = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")
    assert_equivariant(circ, images, translate(3, -2), translate(3, -2))
    with pytest.raises(AssertionError):
        assert_equivariant(circ, images, translate(3, -2), identity())


def test_relative_error_closed_form():
    x = torch.randn(5, 7)
    scale = identity()
    doubled = compose(scale)  # identity too
    assert doubled(x).equal(x)
    double_out = type(scale)(lambda y: 2 * y, "double")
    # |x - 2x| / |2x| = 1/2 for every sample
    result = equivariance_error(lambda y: y, x, identity(), double_out)
    assert result.max == pytest.approx(0.5, abs=1e-15)
    assert result.mean == pytest.approx(0.5, abs=1e-15)
    with pytest.raises(ValueError, match="2 input transforms but 1 output"):
        equivariance_error(lambda y: y, x, [identity(), identity()], [identity()])


def test_module_is_not_modified_and_dtype_fallback(images):
    conv = symmetric_conv().train()
    assert_equivariant(conv, images, rot90(1), rot90(1))
    assert conv.training and conv.weight.dtype == torch.float32

    class Float32Only(nn.Module):
        def forward(self, x):
            return x.sum((-2, -1)) @ torch.ones(2, 2)  # float32 constant: fails in float64

    result = equivariance_error(Float32Only(), images, rot90(1))
    assert result.dtype == torch.float32 and result.max < 1e-6


def test_image_transforms_orientation_and_group_structure(images):
    # rot90(1) four times is the identity, flips are involutions, D4 elements are distinct
    r = rot90(1)
    assert r(r(r(r(images)))).equal(images)
    assert flip("vertical")(flip("vertical")(images)).equal(images)
    outputs = [t(images) for t in d4_elements()]
    assert all(not a.equal(b) for i, a in enumerate(outputs) for b in outputs[i + 1 :])
    assert all(not o.equal(images) for o in outputs)
    # resampled rotation by 90 degrees agrees with rot90 (same orientation) inside the disc
    smooth = torch.nn.functional.avg_pool2d(images, 3, 1, 1)
    mask = disc_mask(12, margin=1.5)
    diff = (rotate(90.0)(smooth) - rot90(1)(smooth)) * mask
    assert diff.abs().max() < 1e-5
    # an affine identity map is the identity
    assert torch.allclose(affine([[1, 0], [0, 1]])(images), images, atol=1e-6)
    # zero-filled translation by (1, 0) equals circular roll except in the first column
    a, b = translate(1, 0, circular=False)(images), translate(1, 0)(images)
    assert a[..., 1:].equal(b[..., 1:]) and (a[..., 0] == 0).all()


def test_resampled_rotation_budget_for_invariant_model():
    torch.manual_seed(1)
    model = nn.Sequential(symmetric_conv(1, 4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 33), torch.linspace(-1, 1, 33), indexing="ij")
    blob = torch.exp(-((xx - 0.2) ** 2 + (yy + 0.1) ** 2) / 0.05)[None, None]
    exact = equivariance_error(model, blob, rot90(1))
    continuous = equivariance_error(model, blob, rotate(30.0))
    assert exact.max < 1e-12
    assert 1e-12 < continuous.max < 0.05  # interpolation error, measured not zero


def test_fiber_transform_regular_representation():
    # a "lifting" layer: the 4 rotated copies of one kernel; rotating the input rotates the maps
    # and cyclically shifts the 4 channels (the regular representation of C4)
    torch.manual_seed(2)
    kernel = torch.randn(1, 1, 3, 3, dtype=torch.float64)
    weight = torch.cat([torch.rot90(kernel, k, (-2, -1)) for k in range(4)])
    lift = nn.Conv2d(1, 4, 3, padding=1, bias=False).double()
    lift.weight.data.copy_(weight)
    shift = torch.roll(torch.eye(4, dtype=torch.float64), 1, 0)  # channel k -> k + 1
    x = torch.randn(3, 1, 9, 9, dtype=torch.float64)
    assert_equivariant(lift, x, rot90(1), fiber_transform(rot90(1), shift))
    with pytest.raises(AssertionError):
        assert_equivariant(lift, x, rot90(1), fiber_transform(rot90(1), shift.T))
    with pytest.raises(ValueError, match="representation has size 4"):
        fiber_transform(rot90(1), shift)(torch.zeros(1, 3, 2, 2))


def test_haar_samples_are_in_the_right_component():
    for seed in range(5):
        r = random_rotation_3d(seed).matrix
        assert torch.allclose(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
        assert torch.linalg.det(r) == pytest.approx(1.0, abs=1e-12)
        q = random_orthogonal_3d(seed, improper=True).matrix
        assert torch.linalg.det(q) == pytest.approx(-1.0, abs=1e-12)
    dets = [float(torch.linalg.det(random_orthogonal_3d(s).matrix)) for s in range(40)]
    assert min(dets) < 0 < max(dets)
    with pytest.raises(ValueError, match="orthogonal"):
        rotation_3d(torch.ones(3, 3))


def test_point_cloud_transforms():
    gen = torch.Generator().manual_seed(3)
    points = torch.randn(6, 5, 3, generator=gen, dtype=torch.float64)
    masses = torch.rand(6, 5, generator=gen, dtype=torch.float64) + 0.5

    def centred_inertia(p):
        return inertia_tensor(p - p.mean(-2, keepdim=True), masses)

    for seed in range(3):
        g = random_orthogonal_3d(seed)
        shift = translate_points([1.0, -2.0, 0.5])
        assert_equivariant(centred_inertia, points, compose(shift, g), conjugate(g))
        # invariants: pairwise distances, sorted
        assert_equivariant(
            lambda p: torch.cdist(p, p).flatten(1).sort(1).values, points, compose(g, shift)
        )
    perm = permute_points([4, 2, 0, 1, 3])
    assert_equivariant(lambda p: p - p.mean(-2, keepdim=True), points, perm, perm)
    # an anisotropic map is not rotation equivariant
    g = random_rotation_3d(0)
    with pytest.raises(AssertionError):
        assert_equivariant(lambda p: p * torch.tensor([1.0, 2.0, 3.0], dtype=p.dtype), points, g, g)


def test_irreps_transform_matches_spherical_harmonics_and_cross_products():
    pytest.importorskip("e3nn")
    from e3nn import o3

    # spherical harmonics are the defining example of irreps-valued equivariant functions
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(10, 3, dtype=torch.float64, generator=gen)
    b = torch.randn(10, 3, dtype=torch.float64, generator=gen)
    irreps = "0e + 1o + 2e + 3o"
    for seed in range(3):
        g = random_orthogonal_3d(seed, improper=seed % 2 == 0)
        assert_equivariant(
            lambda p: o3.spherical_harmonics(irreps, p, normalize=False),
            a,
            g,
            irreps_transform(irreps, g),
        )
        # the cross product of two vectors is a pseudo-vector (1e): it picks up det R
        cross = torch.linalg.cross(
            o3.spherical_harmonics("1o", g(a), False), o3.spherical_harmonics("1o", g(b), False)
        )
        expected = irreps_transform("1e", g)(
            torch.linalg.cross(
                o3.spherical_harmonics("1o", a, False), o3.spherical_harmonics("1o", b, False)
            )
        )
        assert torch.allclose(cross, expected, atol=1e-12)
        flipped = irreps_transform("1o", g)(
            torch.linalg.cross(
                o3.spherical_harmonics("1o", a, False), o3.spherical_harmonics("1o", b, False)
            )
        )
        if seed % 2 == 0:  # improper: 1o and 1e differ by a sign
            assert torch.allclose(flipped, -expected, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Transform.matrix: the declared group element agrees with what the transform does
# --------------------------------------------------------------------------------------------

SIZE = 15
CENTRE = torch.tensor([(SIZE - 1) / 2, (SIZE - 1) / 2], dtype=torch.float64)


def _delta_at(xy: tuple[int, int]) -> torch.Tensor:
    image = torch.zeros(1, 1, SIZE, SIZE, dtype=torch.float64)
    image[..., xy[1], xy[0]] = 1.0  # (x, y) = (column, row)
    return image


def _where(image: torch.Tensor) -> torch.Tensor:
    """(x, y) of an image's centre of mass."""
    weights = image[0, 0]
    rows, cols = torch.meshgrid(
        torch.arange(SIZE, dtype=torch.float64),
        torch.arange(SIZE, dtype=torch.float64),
        indexing="ij",
    )
    total = weights.sum()
    return torch.stack([(weights * cols).sum() / total, (weights * rows).sum() / total])


def _predicted(transform, point: torch.Tensor) -> torch.Tensor:
    """Where ``transform.matrix`` (and ``translation``) sends a pixel: A (p - c) + c + t."""
    moved = transform.matrix @ (point - CENTRE) + CENTRE
    return moved if transform.translation is None else moved + transform.translation


EXACT_IMAGE_TRANSFORMS = [
    *[rot90(k) for k in range(-1, 5)],
    flip("horizontal"),
    flip("vertical"),
    *d4_elements(),
    translate(3, -2),
    compose(translate(1, 2), rot90(1)),
    compose(rot90(1), translate(1, 2)),
]


@pytest.mark.parametrize("transform", EXACT_IMAGE_TRANSFORMS, ids=lambda t: t.name)
def test_image_transform_matrix_moves_pixels_like_the_transform(transform):
    """Pixel-exact transforms: a single bright pixel lands where the matrix says."""
    assert transform.matrix is not None and transform.matrix.dtype == torch.float64
    for xy in [(9, 4), (3, 5), (7, 12)]:
        point = torch.tensor(xy, dtype=torch.float64)
        torch.testing.assert_close(_where(transform(_delta_at(xy))), _predicted(transform, point))


@pytest.mark.parametrize(
    "transform",
    [
        rotate(30.0),
        rotate(-115.0),
        affine([[1.1, 0.3], [-0.2, 0.9]], (1.0, -0.5)),
        compose(affine([[0.9, 0.0], [0.0, 1.2]]), rotate(45.0)),
    ],
    ids=lambda t: t.name,
)
def test_resampled_transform_matrix_moves_blobs_like_the_transform(transform):
    """Resampled transforms: the centre of mass of a smooth blob follows the matrix (bilinear
    interpolation keeps it to a few hundredths of a pixel)."""
    rows, cols = torch.meshgrid(
        torch.arange(SIZE, dtype=torch.float64),
        torch.arange(SIZE, dtype=torch.float64),
        indexing="ij",
    )
    for xy in [(9.3, 5.2), (5.0, 8.6)]:
        blob = torch.exp(-((cols - xy[0]) ** 2 + (rows - xy[1]) ** 2) / 2.0)[None, None]
        point = torch.tensor(xy, dtype=torch.float64)
        moved = _where(transform(blob))
        assert float((moved - _predicted(transform, point)).abs().max()) < 0.05


def test_point_transform_matrices_act_on_coordinates():
    gen = torch.Generator().manual_seed(5)
    points = torch.randn(4, 6, 3, generator=gen, dtype=torch.float64)
    shift = translate_points([0.5, -1.0, 2.0])
    for transform in [
        rotation_3d(torch.diag(torch.tensor([1.0, -1.0, 1.0]))),
        random_rotation_3d(1),
        random_orthogonal_3d(2, improper=True),
        shift,
        compose(shift, random_rotation_3d(3)),
    ]:
        expected = points @ transform.matrix.T
        if transform.translation is not None:
            expected = expected + transform.translation
        torch.testing.assert_close(transform(points), expected)
    perm = permute_points([2, 0, 1, 5, 4, 3])
    torch.testing.assert_close(perm(points), perm.matrix @ points)  # acts on the point axis
    g = random_orthogonal_3d(4)
    tensors = torch.randn(4, 3, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(conjugate(g)(tensors), g.matrix @ tensors @ g.matrix.T)
    assert torch.equal(conjugate(g).matrix, g.matrix)
    if importlib.util.find_spec("e3nn") is not None:
        assert torch.equal(irreps_transform("1o", g).matrix, g.matrix)
    assert torch.equal(fiber_transform(rot90(1), torch.eye(4)).matrix, rot90(1).matrix)


def test_transform_without_a_matrix_and_bad_matrices():
    plain = Transform(lambda x: 2 * x, "double")
    assert plain.matrix is None and plain.translation is None and plain(torch.ones(2))[0] == 2
    assert compose(plain, rot90(1)).matrix is None  # unknown element: none declared
    assert compose(rot90(1), rotation_3d(torch.eye(3))).matrix is None  # different spaces
    with pytest.raises(ValueError, match="square"):
        Transform(lambda x: x, "bad", matrix=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="translation needs a matrix"):
        Transform(lambda x: x, "bad", translation=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"carrying a \(3, 3\) matrix"):
        conjugate(plain)
