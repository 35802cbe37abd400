"""Projectors onto equivariant maps: idempotent, symmetric, and with image exactly the maps that
commute with random group elements (float64 brute force from sampled elements)."""

from __future__ import annotations

import pytest
import torch

from geozoo.groups.projection import (
    EquivariantProjector,
    block_projector,
    equivariant_projector,
    null_space,
    sparse_projector,
)
from geozoo.groups.representations import Scalar, Vector, get_group, tensor

CASES = [
    ("o3", tensor(2) + Vector, 2 * Scalar + 2 * Vector),
    ("so3", Vector, Vector + tensor(2)),
    ("o2_z", tensor(2), Scalar + Vector),
    ("so2_y", 2 * Vector, Vector + Scalar),
    ("scaling", Scalar + tensor(2), 2 * Scalar + Vector),
    ("so3_scaling", tensor(2), Vector + tensor(2)),
    ("s4", Vector + Scalar, tensor(2)),
    ("trivial", Vector, Scalar + Vector),
]


def _commuting_maps(group, rep_out, rep_in, samples: int = 6) -> torch.Tensor:
    """Brute force: basis of {W : rho_out(g) W = W rho_in(g)} for random sampled g."""
    g = group.sample(samples, torch.Generator().manual_seed(123), torch.float64)
    r_out, r_in = rep_out.rho(g), rep_in.rho(g)
    n_out, n_in = r_out.shape[-1], r_in.shape[-1]
    eye_out, eye_in = torch.eye(n_out, dtype=torch.float64), torch.eye(n_in, dtype=torch.float64)
    rows = [
        torch.kron(a, eye_in) - torch.kron(eye_out, b.T.contiguous()) for a, b in zip(r_out, r_in)
    ]
    return null_space(torch.cat(rows), rtol=1e-10)


@pytest.mark.parametrize(("name", "rep_out", "rep_in"), CASES)
def test_projector_is_an_orthogonal_projection(name, rep_out, rep_in) -> None:
    p = EquivariantProjector(get_group(name), rep_out, rep_in).matrix()
    torch.testing.assert_close(p @ p, p, rtol=0, atol=1e-12)
    torch.testing.assert_close(p, p.T, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("name", "rep_out", "rep_in"), CASES)
def test_image_is_the_commuting_maps(name, rep_out, rep_in) -> None:
    group = get_group(name)
    projector = EquivariantProjector(group, rep_out, rep_in)
    p = projector.matrix()
    reference = _commuting_maps(group, rep_out, rep_in)
    # same dimension, and every commuting map is fixed by P (so image(P) = commuting maps)
    assert round(float(torch.trace(p))) == reference.shape[1] == projector.basis_size
    torch.testing.assert_close(p @ reference, reference, rtol=0, atol=1e-9)
    # projected random weights commute with fresh random group elements
    w = projector(torch.randn(*projector.shape, dtype=torch.float64))
    g = group.sample(5, torch.Generator().manual_seed(7), torch.float64)
    torch.testing.assert_close(rep_out.rho(g) @ w, w @ rep_in.rho(g), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("name", "rank_out", "rank_in", "dim"),
    [
        ("o3", 2, 2, 3),  # identity, transpose, trace
        ("so3", 1, 2, 1),  # the Levi-Civita contraction
        ("o3", 1, 2, 0),  # ... which a reflection removes
        ("o2_z", 1, 1, 2),  # in-plane identity and e_z e_z^T
        ("so2_z", 1, 1, 3),  # plus the in-plane rotation by 90 degrees
        ("s4", 2, 2, 15),  # Bell number B_4
        ("scaling", 2, 1, 0),  # ranks must agree
        ("trivial", 2, 1, 27),
    ],
)
def test_known_dimensions(name, rank_out, rank_in, dim) -> None:
    p = block_projector(get_group(name), rank_out, rank_in)
    assert round(float(torch.trace(p))) == dim


def test_bias_projection_and_cache() -> None:
    group = get_group("o2_z")
    projector = equivariant_projector(group, tensor(2) + Vector, Scalar)
    assert projector is equivariant_projector(group, tensor(2) + Vector, Scalar)
    b = projector.project_bias(torch.randn(12, dtype=torch.float64))
    g = group.sample(4, torch.Generator().manual_seed(0), torch.float64)
    torch.testing.assert_close((tensor(2) + Vector).act(g, b.expand(4, 12)), b.expand(4, 12))
    # invariant vectors: a e_z component, identity / e_z e_z^T in the rank-2 part
    assert projector.basis_size == 3


def test_sparse_projector_matches_dense() -> None:
    group, rep_out, rep_in = get_group("o3"), tensor(2) + 2 * Scalar, Vector + Scalar
    dense = EquivariantProjector(group, rep_out, rep_in).matrix()
    torch.testing.assert_close(sparse_projector(group, rep_out, rep_in).to_dense(), dense)


def test_shape_error_names_the_expected_shape() -> None:
    projector = equivariant_projector(get_group("o3"), Vector, Scalar)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 1\)"):
        projector(torch.zeros(3, 2))
