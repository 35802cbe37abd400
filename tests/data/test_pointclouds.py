"""Synthetic point-cloud data: Tetris shapes against a brute-force congruence check, inertia."""

from __future__ import annotations

import itertools

import torch

from geozoo.data.pointclouds import (
    TETRIS_MIRROR,
    InertiaDataModule,
    TetrisDataModule,
    inertia_dataset,
    inertia_tensor,
    tetris_dataset,
    tetris_shapes,
)


def _cube_rotations() -> list[torch.Tensor]:
    """The 24 proper rotations of the cube (signed permutation matrices with det +1)."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product([-1, 1], repeat=3):
            m = torch.zeros(3, 3, dtype=torch.float64)
            for row, (col, sign) in enumerate(zip(perm, signs)):
                m[row, col] = sign
            if torch.linalg.det(m) > 0:
                out.append(m)
    return out


def _canonical(points: torch.Tensor) -> set[tuple[int, ...]]:
    voxels = torch.round(points - points.min(0).values).long()
    return {tuple(v.tolist()) for v in voxels}


def _congruent(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Brute force: is b a proper rotation (cube group) plus translation of a?"""
    target = _canonical(b)
    return any(_canonical(a @ r.T) == target for r in _cube_rotations())


def test_shapes_are_distinct_and_mirrors_are_as_declared():
    shapes = tetris_shapes(torch.float64)
    assert shapes.shape == (8, 4, 3)
    assert torch.allclose(shapes.mean(1), torch.zeros(8, 3, dtype=torch.float64))
    for i, j in itertools.combinations(range(8), 2):
        assert not _congruent(shapes[i], shapes[j]), (i, j)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    for c in range(8):
        assert _congruent(shapes[c] @ mirror.T, shapes[TETRIS_MIRROR[c]]), c
    # exactly one chiral pair: its members are not their own mirror images
    assert not _congruent(shapes[0] @ mirror.T, shapes[0])


def test_tetris_dataset_labels_follow_reflections():
    positions, labels = tetris_dataset(5, seed=3, group="o3", dtype=torch.float64)
    shapes = tetris_shapes(torch.float64)
    assert positions.shape == (40, 4, 3) and labels.shape == (40,)
    for cloud, label in zip(positions, labels):
        # recover the orthogonal map by Procrustes onto the labelled shape (points reordered)
        target = shapes[label]
        centred = cloud - cloud.mean(0)
        found = False
        for perm in itertools.permutations(range(4)):
            a = target[list(perm)]
            u, _, vh = torch.linalg.svd(a.T @ centred)
            r = (u @ vh).T
            if torch.allclose(a @ r.T, centred, atol=1e-9):
                found = bool(torch.linalg.det(r) > 0) or TETRIS_MIRROR[label] == label
                break
        assert found, int(label)
    assert set(labels.tolist()) == set(range(8))
    same = tetris_dataset(5, seed=3, group="o3", dtype=torch.float64)
    assert torch.equal(same[0], positions)


def test_inertia_data_is_about_the_centre_of_mass():
    positions, masses, inertia = inertia_dataset(6, seed=0, dtype=torch.float64)
    shift = torch.tensor([5.0, -2.0, 1.0], dtype=torch.float64)
    # parallel-axis theorem: about the origin I_o = I_cm + M (|c|^2 Id - c c^T)
    centre = (masses[..., None] * positions).sum(1) / masses.sum(1, keepdim=True)
    total = masses.sum(1)[:, None, None]
    eye = torch.eye(3, dtype=torch.float64)
    parallel = total * (
        (centre**2).sum(-1)[:, None, None] * eye - centre[:, :, None] * centre[:, None, :]
    )
    assert torch.allclose(inertia_tensor(positions, masses), inertia + parallel, atol=1e-9)
    moved = inertia_dataset(6, seed=0, dtype=torch.float64)
    assert torch.equal(moved[2], inertia)
    assert not torch.allclose(
        inertia_tensor(positions + shift, masses), inertia_tensor(positions, masses)
    )


def test_datamodules_batches():
    dm = TetrisDataModule(train_copies=2, val_copies=1, test_copies=2, batch_size=4)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 4, 3) and y.dtype == torch.long
    assert len(dm.test_dataloader()[0].dataset) == 16
    im = InertiaDataModule(train_size=8, val_size=4, test_size=4, batch_size=4)
    im.setup("fit")
    (p, m), t = next(iter(im.train_dataloader()))
    assert p.shape == (4, 5, 3) and m.shape == (4, 5) and t.shape == (4, 3, 3)
    (p, m), t = next(iter(im.test_dataloader()[0]))
    centre = (m[..., None] * p).sum(1) / m.sum(1, keepdim=True)
    assert torch.allclose(inertia_tensor(p - centre[:, None], m), t, atol=1e-4)
