"""LightningDataModules and dataset sources (real download + offline fallback)."""

from geozoo.data.base import InMemoryDataModule
from geozoo.data.cifar import CIFAR10DataModule
from geozoo.data.faces import FaceImageFolderDataModule, SyntheticFacesDataModule, read_lfw_pairs
from geozoo.data.mnist import MNISTDataModule
from geozoo.data.mnist_sources import MNISTNotFoundError, resolve_mnist
from geozoo.data.pointclouds import InertiaDataModule, TetrisDataModule
from geozoo.data.symmetry_tasks import (
    CosineSimilarityDataModule,
    ModifiedInertiaDataModule,
    MotionForecastingDataModule,
)
from geozoo.data.transforms import (
    AFFINE_RANGES,
    affine_warp,
    affnist_style,
    pad_to,
    random_rotation,
)

__all__ = [
    "AFFINE_RANGES",
    "CIFAR10DataModule",
    "CosineSimilarityDataModule",
    "FaceImageFolderDataModule",
    "InMemoryDataModule",
    "InertiaDataModule",
    "MNISTDataModule",
    "MNISTNotFoundError",
    "ModifiedInertiaDataModule",
    "MotionForecastingDataModule",
    "SyntheticFacesDataModule",
    "TetrisDataModule",
    "affine_warp",
    "affnist_style",
    "pad_to",
    "random_rotation",
    "read_lfw_pairs",
    "resolve_mnist",
]
