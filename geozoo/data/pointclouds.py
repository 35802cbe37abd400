"""Synthetic 3D point-cloud tasks: inertia tensors of point masses and the 3D Tetris shapes."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from geozoo.data.base import InMemoryDataModule
from geozoo.groups import SO, MatrixGroup, Orthogonal, get_group

__all__ = [
    "TETRIS_MIRROR",
    "TETRIS_NAMES",
    "InertiaDataModule",
    "TetrisDataModule",
    "inertia_dataset",
    "inertia_tensor",
    "tetris_dataset",
    "tetris_shapes",
]


def inertia_tensor(positions: Tensor, masses: Tensor) -> Tensor:
    """Inertia tensor ``I = sum_i m_i (|x_i|^2 Id - x_i x_i^T)`` about the origin.

    Args:
        positions: (..., K, 3) point positions.
        masses: (..., K) point masses.

    Returns:
        (..., 3, 3) symmetric tensors; ``I(R x) = R I(x) R^T`` for every ``R`` in O(3).
    """
    if positions.shape[-1] != 3 or positions.shape[:-1] != masses.shape:
        raise ValueError(
            f"expected positions (..., K, 3) and masses (..., K), got {tuple(positions.shape)} "
            f"and {tuple(masses.shape)}"
        )
    squared = (positions**2).sum(-1)  # (..., K)
    eye = torch.eye(3, dtype=positions.dtype, device=positions.device)
    outer = positions.unsqueeze(-1) * positions.unsqueeze(-2)  # (..., K, 3, 3)
    return (masses[..., None, None] * (squared[..., None, None] * eye - outer)).sum(-3)


# --------------------------------------------------------------------------------------------
# 3D Tetris: 8 shapes of 4 unit voxels (the classic test of Thomas et al., 2018, "Tensor field
# networks", section 4.1). Classes 0 and 1 are mirror images of each other (a chiral pair).
# --------------------------------------------------------------------------------------------

TETRIS_NAMES = (
    "chiral_left",
    "chiral_right",
    "square",
    "line",
    "corner",
    "L",
    "T",
    "zigzag",
)

_TETRIS_VOXELS = (
    ((0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 1, 0)),
    ((0, 0, 0), (0, 0, 1), (1, 0, 0), (1, -1, 0)),
    ((0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)),
    ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)),
    ((0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)),
    ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0)),
    ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 1)),
    ((0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 0)),
)

#: Mirror image of each Tetris class (a reflection maps class c to ``TETRIS_MIRROR[c]``).
TETRIS_MIRROR = (1, 0, 2, 3, 4, 5, 6, 7)


def tetris_shapes(dtype: torch.dtype = torch.float32) -> Tensor:
    """The 8 Tetris shapes as voxel centres, shape (8, 4, 3), each centred at its centroid."""
    shapes = torch.tensor(_TETRIS_VOXELS, dtype=torch.float64)
    return (shapes - shapes.mean(1, keepdim=True)).to(dtype)


def _rigid_group(name: str) -> MatrixGroup:
    """O(3) or SO(3) from its name (:func:`geozoo.groups.get_group`); any other is rejected."""
    with contextlib.suppress(ValueError):
        group = get_group(name)
        if group in (Orthogonal(3), SO(3)):
            return group
    raise ValueError(f"group must be 'o3', 'so3' or 'none', got {name!r}")


def tetris_dataset(
    copies: int,
    seed: int,
    group: str = "o3",
    translation_scale: float = 2.0,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Randomly moved copies of the 8 Tetris shapes with their labels.

    Args:
        copies: copies of each shape (the result has ``8 * copies`` clouds).
        seed: seed of the rotations, translations and point orders.
        group: ``"o3"`` (rotations and reflections: a reflected chiral shape gets its mirror
            label), ``"so3"`` (rotations only) or ``"none"`` (shapes as defined).
        translation_scale: standard deviation of the random translation (voxel units).

    Returns:
        positions (8 * copies, 4, 3) and labels (8 * copies,), with each cloud's points in a
        random order.
    """
    moves = None if group == "none" else _rigid_group(group)
    gen = torch.Generator().manual_seed(int(seed))
    shapes = tetris_shapes(torch.float64)
    labels = torch.arange(8).repeat(copies)
    positions = shapes[labels]
    n = len(labels)
    if moves is not None:
        rotations = moves.sample(n, gen, torch.float64)
        positions = positions @ rotations.transpose(-1, -2)
        improper = torch.linalg.det(rotations) < 0
        mirror = torch.tensor(TETRIS_MIRROR)
        labels = torch.where(improper, mirror[labels], labels)
    positions = positions + translation_scale * torch.randn(
        n, 1, 3, generator=gen, dtype=torch.float64
    )
    order = torch.argsort(torch.rand(n, 4, generator=gen), dim=1)
    positions = torch.gather(positions, 1, order[..., None].expand(n, 4, 3))
    return positions.to(dtype), labels


class TetrisDataModule(InMemoryDataModule):
    """3D Tetris classification: train on moved copies, test on O(3)-moved and translated ones.

    Args:
        train_copies: copies of each shape per training epoch.
        val_copies, test_copies: copies of each shape in the validation and test sets.
        train_group: symmetry applied to training copies (``"none"``, ``"so3"`` or ``"o3"``);
            an equivariant network learns from ``"none"``.
        batch_size: batch size.
        seed: seed of the validation and test sets (training copies use ``seed + 1``).
    """

    test_set_names = ("o3",)

    def __init__(
        self,
        train_copies: int = 4,
        val_copies: int = 25,
        test_copies: int = 100,
        train_group: str = "none",
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=256, seed=seed)
        self.train_copies, self.val_copies, self.test_copies = train_copies, val_copies, test_copies
        self.train_group = train_group

    def build_datasets(self) -> dict[str, Dataset]:
        return {
            "train": TensorDataset(
                *tetris_dataset(self.train_copies, self.seed + 1, self.train_group)
            ),
            "val": TensorDataset(*tetris_dataset(self.val_copies, self.seed + 2, "o3")),
            "test_o3": TensorDataset(*tetris_dataset(self.test_copies, self.seed, "o3")),
        }


# --------------------------------------------------------------------------------------------
# Inertia tensors of random point masses: an equivariant (l=0 + l=2) regression target.
# --------------------------------------------------------------------------------------------


def inertia_dataset(
    size: int, seed: int, points: int = 5, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor, Tensor]:
    """Random point masses and their inertia tensors about the centre of mass.

    Positions are standard normal (then randomly translated by N(0, 2^2) so that only relative
    positions carry information), masses uniform in [0.5, 1.5].

    Returns:
        positions (size, points, 3), masses (size, points), inertia (size, 3, 3).
    """
    gen = torch.Generator().manual_seed(int(seed))
    positions = torch.randn(size, points, 3, generator=gen, dtype=torch.float64)
    masses = 0.5 + torch.rand(size, points, generator=gen, dtype=torch.float64)
    positions = positions + 2.0 * torch.randn(size, 1, 3, generator=gen, dtype=torch.float64)
    centre = (masses[..., None] * positions).sum(1, keepdim=True) / masses.sum(1)[:, None, None]
    inertia = inertia_tensor(positions - centre, masses)
    return positions.to(dtype), masses.to(dtype), inertia.to(dtype)


class _PairDataset(Dataset):
    """Items ``((positions, masses), target)`` for networks called as ``network(*inputs)``."""

    def __init__(self, positions: Tensor, masses: Tensor, targets: Tensor) -> None:
        self.positions, self.masses, self.targets = positions, masses, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[tuple[Tensor, Tensor], Tensor]:
        return (self.positions[index], self.masses[index]), self.targets[index]


class InertiaDataModule(InMemoryDataModule):
    """Regress the inertia tensor (about the centre of mass) of random point masses.

    Batches are ``((positions (B, K, 3), masses (B, K)), inertia (B, 3, 3))``; the test set is
    additionally moved by random O(3) elements (its targets transform as ``R I R^T``).

    Args:
        train_size, val_size, test_size: numbers of clouds.
        points: points per cloud.
        batch_size: batch size.
        seed: seed of the data.
    """

    test_set_names = ("o3",)

    def __init__(
        self,
        train_size: int = 2000,
        val_size: int = 200,
        test_size: int = 500,
        points: int = 5,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=256, seed=seed)
        self.sizes = (train_size, val_size, test_size)
        self.points = points

    def build_datasets(self) -> dict[str, Dataset]:
        train, val, test = self.sizes
        positions, masses, inertia = inertia_dataset(test, self.seed, self.points, torch.float64)
        generator = torch.Generator().manual_seed(self.seed + 3)
        rotations = Orthogonal(3).sample(test, generator, torch.float64)
        positions = positions @ rotations.transpose(-1, -2)
        inertia = rotations @ inertia @ rotations.transpose(-1, -2)
        return {
            "train": _PairDataset(*inertia_dataset(train, self.seed + 1, self.points)),
            "val": _PairDataset(*inertia_dataset(val, self.seed + 2, self.points)),
            "test_o3": _PairDataset(positions.float(), masses.float(), inertia.float()),
        }
