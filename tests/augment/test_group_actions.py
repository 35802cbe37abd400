"""Whole-group augmentation: group elements from geozoo.groups samplers act on images like the
matching operations, identity stays identity, and non-planar groups are refused."""

from __future__ import annotations

import math

import pytest
import torch

from geozoo.augment import GroupAction, GroupSpace, augmentation_space, get_operation
from geozoo.groups import SL, Affine, get_group


def _images() -> torch.Tensor:
    return torch.rand(4, 2, 12, 12, generator=torch.Generator().manual_seed(0))


def test_identity_element_is_the_identity() -> None:
    x = _images()
    action = GroupAction("gl2")
    assert (action(x, torch.eye(2).expand(4, 2, 2)) - x).abs().max() < 1e-5
    assert (action(x, torch.eye(3).expand(4, 3, 3)) - x).abs().max() < 1e-5


def test_rotation_elements_act_like_the_rotate_operation() -> None:
    x = _images()
    angle = torch.tensor([10.0, -25.0, 40.0, 90.0])
    rad = torch.deg2rad(angle)
    rotations = torch.stack(
        [torch.cos(rad), -torch.sin(rad), torch.sin(rad), torch.cos(rad)], -1
    ).reshape(4, 2, 2)
    by_group = GroupAction("so2")(x, rotations)
    op = get_operation("rotate", maximum=90.0)
    by_op = op(x, angle.abs() / 90.0, angle.sign())
    assert torch.allclose(by_group, by_op, atol=1e-5)


def test_translations_are_in_half_sides() -> None:
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 2] = 1.0
    g = torch.eye(3).unsqueeze(0)
    g[0, 0, 2] = 0.5  # half of half the side: two pixels right
    assert torch.allclose(GroupAction("so2")(x, g), torch.roll(x, 2, dims=3), atol=1e-5)


@pytest.mark.parametrize("group", ["so2", "gl2", "sl2", "rs2", "c4", Affine(SL(2), 0.2)])
def test_group_space_samples_from_the_group(group) -> None:
    space = GroupSpace(group)
    params = space.sample(64, torch.Generator().manual_seed(0))
    elements = space.elements(params)
    value = group if isinstance(group, Affine) else get_group(group)
    linear = elements[:, :2, :2].double()
    if isinstance(value, Affine):
        assert bool(value.contains(elements.double(), atol=1e-4).all())
    elif value.order is not None:  # finite: every draw is one of the elements
        distance = (linear[:, None] - value.elements()[None]).abs().amax((2, 3)).amin(1)
        assert distance.max() < 1e-5
    else:
        assert bool(value.contains(linear, atol=1e-4).all())
    x = _images()
    out = space.apply(x, params[:4])
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    bins = space.bins(params)
    assert bins.min() >= 0 and bins.max() < space.num_bins


def test_so2_visits_every_angle_bin() -> None:
    space = GroupSpace("so2", angle_bins=8, scale_bins=1)
    counts = torch.bincount(space.bins(space.sample(4000, torch.Generator().manual_seed(1))))
    assert len(counts) == 8 and counts.min() > 400  # Haar: uniform angles
    assert math.isclose(float(counts.sum()), 4000)


def test_bad_groups_are_reported() -> None:
    with pytest.raises(ValueError, match="R\\^2"):
        GroupAction("so3")
    with pytest.raises(ValueError, match="own translations"):
        GroupAction(Affine(SL(2)), translation=0.1)
    with pytest.raises(ValueError, match="unknown"):
        GroupAction("not_a_group")
    with pytest.raises(ValueError, match="either operations"):
        augmentation_space(operations=["rotate"], group="so2")
    with pytest.raises(ValueError, match=r"\(N, 2, 2\) or \(N, 3, 3\)"):
        GroupAction("so2")(_images(), torch.eye(2).expand(3, 2, 2))
