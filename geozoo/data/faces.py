"""Face recognition data: identity-labelled training images and verification pairs.

Training batches are ``(images, identity labels)`` (plus ``landmarks`` where the source has
them); validation and test batches are pairs ``((images_a, images_b), same_identity)`` of
identities never seen in training, in fold order (the k-fold protocol of
:class:`geozoo.metrics.VerificationAccuracy`).

* :class:`SyntheticFacesDataModule`: procedural faces (:mod:`geozoo.data.synthetic_faces`), no
  download.
* :class:`FaceImageFolderDataModule`: one folder per identity (the CASIA-WebFace / VGGFace2
  layout) of aligned crops, split by identity; optionally LFW's pairs as the test set.
* :func:`read_lfw_pairs`: LFW's ``pairs.txt`` (Huang et al. 2007), validated line by line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from geozoo.data.base import InMemoryDataModule
from geozoo.data.synthetic_faces import FaceRendering, render_faces, sample_identities

__all__ = [
    "FaceImageFolderDataModule",
    "FacePair",
    "PairDataset",
    "SyntheticFacesDataModule",
    "read_lfw_pairs",
    "sample_pairs",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff")


class PairDataset(Dataset):
    """Verification pairs over a set of images: item ``i`` is ``((images[a], images[b]), same)``.

    Args:
        images: anything indexable by an int giving one image tensor (a tensor, a dataset).
        pairs: ``(P, 2)`` indices into ``images``.
        same: ``(P,)`` booleans, whether each pair shows one identity.
    """

    def __init__(self, images: Any, pairs: Tensor, same: Tensor) -> None:
        if pairs.dim() != 2 or pairs.shape[1] != 2 or same.shape != (len(pairs),):
            raise ValueError(
                f"expected pairs (P, 2) and same (P,), got {tuple(pairs.shape)} and "
                f"{tuple(same.shape)}"
            )
        self.images, self.pairs, self.same = images, pairs.long(), same.bool()

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[tuple[Tensor, Tensor], Tensor]:
        a, b = self.pairs[index].tolist()
        return (self.images[a], self.images[b]), self.same[index]


def sample_pairs(
    labels: Tensor, pairs_per_fold: int, num_folds: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Random verification pairs among images with identity ``labels``, in fold order: each
    fold holds ``pairs_per_fold`` matched then ``pairs_per_fold`` mismatched pairs (as LFW).

    Returns ``(pairs (P, 2), same (P,))``.
    """
    by_identity = [torch.nonzero(labels == i)[:, 0] for i in labels.unique()]
    repeated = [members for members in by_identity if len(members) >= 2]
    if not repeated or len(by_identity) < 2:
        raise ValueError(
            "verification pairs need an identity with two images and two identities, got "
            f"{len(by_identity)} identities, {len(repeated)} with two or more images"
        )

    def pick(members: Tensor, count: int) -> Tensor:
        return members[torch.randperm(len(members), generator=generator)[:count]]

    pairs, same = [], []
    for _ in range(num_folds):
        for flag in (True, False):
            for _ in range(pairs_per_fold):
                if flag:
                    k = int(torch.randint(len(repeated), (1,), generator=generator))
                    pairs.append(pick(repeated[k], 2))
                else:
                    i, j = pick(torch.arange(len(by_identity)), 2).tolist()
                    pairs.append(
                        torch.stack([pick(by_identity[i], 1)[0], pick(by_identity[j], 1)[0]])
                    )
                same.append(flag)
    return torch.stack(pairs), torch.tensor(same)


class SyntheticFacesDataModule(InMemoryDataModule):
    """Procedural faces (:func:`geozoo.data.synthetic_faces.render_faces`), no download.

    ``num_identities`` training identities with ``images_per_identity`` images each; validation
    and test pairs come from ``val_identities`` and ``test_identities`` further identities
    (never trained on) with ``eval_images_per_identity`` images each, ``pairs_per_fold`` matched
    and as many mismatched pairs in each of ``num_folds`` folds. The faces depend only on
    ``data_seed`` (the same data for every training seed); ``seed`` shuffles training batches.
    The test set is named ``synthfaces``.

    Args:
        num_identities, images_per_identity: the training set.
        val_identities, test_identities, eval_images_per_identity: the held-out identities.
        pairs_per_fold, val_pairs_per_fold, num_folds: matched (and as many mismatched)
            pairs per fold of the test and the validation set, and the number of folds.
        image_size: side of the square images.
        channels: 3 (colour) or 1.
        max_yaw, max_light, max_shift, noise: rendering conditions (see
            :meth:`FaceRendering.sample`).
        landmarks: also return each training image's eye and nose coordinates (for SymFace's
            landmark frontalness): batches ``(images, labels, landmarks)``.
        batch_size, eval_batch_size, num_workers, seed: as in :class:`InMemoryDataModule`.
        data_seed: seed of the identities and images.
    """

    test_set_names = ("synthfaces",)

    def __init__(
        self,
        num_identities: int = 300,
        images_per_identity: int = 20,
        val_identities: int = 50,
        test_identities: int = 100,
        eval_images_per_identity: int = 10,
        pairs_per_fold: int = 300,
        val_pairs_per_fold: int = 100,
        num_folds: int = 10,
        image_size: int = 32,
        channels: int = 3,
        max_yaw: float = 0.6,
        max_light: float = 0.9,
        max_shift: float = 0.04,
        noise: float = 0.03,
        landmarks: bool = False,
        batch_size: int = 128,
        eval_batch_size: int | None = 500,
        num_workers: int = 0,
        seed: int = 0,
        data_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, seed)
        minimum = {
            "num_identities": (num_identities, 1),
            "images_per_identity": (images_per_identity, 1),
            "val_identities": (val_identities, 2),
            "test_identities": (test_identities, 2),
            "eval_images_per_identity": (eval_images_per_identity, 2),
        }
        for name, (value, least) in minimum.items():
            if value < least:
                why = " (verification pairs need two identities)" if "_identities" in name else ""
                raise ValueError(f"{name} must be at least {least}{why}, got {value}")
        self.num_identities = num_identities
        self.images_per_identity = images_per_identity
        self.val_identities = val_identities
        self.test_identities = test_identities
        self.eval_images_per_identity = eval_images_per_identity
        self.pairs_per_fold = pairs_per_fold
        self.val_pairs_per_fold = val_pairs_per_fold
        self.num_folds = num_folds
        self.image_size = image_size
        self.channels = channels
        self.conditions = {
            "max_yaw": max_yaw,
            "max_light": max_light,
            "max_shift": max_shift,
            "noise": noise,
        }
        self.landmarks = landmarks
        self.data_seed = data_seed

    def render(
        self, identities: Tensor, per_identity: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``per_identity`` random images of each identity: ``(images, labels, landmarks)``."""
        repeated = identities.repeat_interleave(per_identity, dim=0)
        conditions = FaceRendering.sample(len(repeated), generator, **self.conditions)
        images, landmarks = render_faces(
            repeated, conditions, self.image_size, self.channels, generator
        )
        labels = torch.arange(len(identities)).repeat_interleave(per_identity)
        return images, labels, landmarks

    def _pairs(self, identities: Tensor, per_fold: int, generator: torch.Generator) -> PairDataset:
        images, labels, _ = self.render(identities, self.eval_images_per_identity, generator)
        pairs, same = sample_pairs(labels, per_fold, self.num_folds, generator)
        return PairDataset(images, pairs, same)

    def build_datasets(self) -> dict[str, Dataset]:
        generator = torch.Generator().manual_seed(self.data_seed)
        total = self.num_identities + self.val_identities + self.test_identities
        identities = sample_identities(total, generator)
        train, val, test = identities.split(
            [self.num_identities, self.val_identities, self.test_identities]
        )
        images, labels, landmarks = self.render(train, self.images_per_identity, generator)
        train_set = (
            TensorDataset(images, labels, landmarks)
            if self.landmarks
            else TensorDataset(images, labels)
        )
        return {
            "train": train_set,
            "val": self._pairs(val, self.val_pairs_per_fold, generator),
            "test_synthfaces": self._pairs(test, self.pairs_per_fold, generator),
        }


# --------------------------------------------------------------------------- LFW pairs


@dataclass(frozen=True)
class FacePair:
    """One line of LFW's ``pairs.txt``: images ``index_a`` of ``name_a`` and ``index_b`` of
    ``name_b`` (1-based, as in ``NAME/NAME_0001.jpg``)."""

    name_a: str
    index_a: int
    name_b: str
    index_b: int

    @property
    def same(self) -> bool:
        return self.name_a == self.name_b


def _positive_int(text: str, what: str, where: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{where}: {what} must be a positive integer, got {text!r}")
    return int(text)


def read_lfw_pairs(path: str | Path) -> list[list[FacePair]]:
    """Read LFW's ``pairs.txt``: a header ``FOLDS N``, then per fold ``N`` matched lines
    ``name i j`` followed by ``N`` mismatched lines ``name_a i name_b j``.

    Returns the folds, each a list of :class:`FacePair` in file order. Every malformed line
    raises ``ValueError`` naming the file, the line number and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LFW pairs file {path} does not exist")
    lines = path.read_text().splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"{path}:1: expected a header 'FOLDS PAIRS_PER_CLASS', the file is empty")
    header = lines[0].split()
    if len(header) != 2:
        raise ValueError(
            f"{path}:1: expected a header 'FOLDS PAIRS_PER_CLASS' (two integers), got {lines[0]!r}"
        )
    folds_count = _positive_int(header[0], "the number of folds", f"{path}:1")
    per_class = _positive_int(header[1], "the number of pairs per class", f"{path}:1")
    body = [(number, line) for number, line in enumerate(lines[1:], start=2) if line.strip()]
    expected = 2 * folds_count * per_class
    if len(body) != expected:
        raise ValueError(
            f"{path}: the header promises {folds_count} folds x 2 x {per_class} = {expected} "
            f"pair lines, the file has {len(body)}"
        )
    folds: list[list[FacePair]] = []
    for k in range(folds_count):
        fold = []
        for position, (number, line) in enumerate(
            body[k * 2 * per_class : (k + 1) * 2 * per_class]
        ):
            where = f"{path}:{number}"
            fields = line.split()
            if position < per_class:
                if len(fields) != 3:
                    raise ValueError(
                        f"{where}: expected a matched pair 'NAME I J' (fold {k + 1}), got {line!r}"
                    )
                name, i, j = fields
                pair = FacePair(
                    name, _positive_int(i, "I", where), name, _positive_int(j, "J", where)
                )
            else:
                if len(fields) != 4:
                    raise ValueError(
                        f"{where}: expected a mismatched pair 'NAME_A I NAME_B J' (fold {k + 1}), "
                        f"got {line!r}"
                    )
                name_a, i, name_b, j = fields
                if name_a == name_b:
                    raise ValueError(f"{where}: a mismatched pair names {name_a!r} twice")
                pair = FacePair(
                    name_a, _positive_int(i, "I", where), name_b, _positive_int(j, "J", where)
                )
            fold.append(pair)
        folds.append(fold)
    return folds


# --------------------------------------------------------------------------- image folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class _ImageFiles(Dataset):
    """Aligned crops read from files on access, resized to ``size`` and scaled to [0, 1]."""

    def __init__(self, files: Sequence[Path], size: tuple[int, int], channels: int) -> None:
        self.files, self.size, self.channels = list(files), size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        from PIL import Image, UnidentifiedImageError

        path = self.files[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB" if self.channels == 3 else "L")
                image = image.resize((self.size[1], self.size[0]), Image.BILINEAR)
                data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{path} is not a readable image: {error}") from error
        return data.view(self.size[0], self.size[1], self.channels).permute(2, 0, 1).float() / 255


class _Labelled(Dataset):
    def __init__(self, images: Dataset, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]


class FaceImageFolderDataModule(InMemoryDataModule):
    """Aligned face crops in one folder per identity (``ROOT/IDENTITY/*.jpg``, the CASIA-WebFace
    and VGGFace2 layout), read lazily and resized to ``image_size``.

    Identities (sorted by folder name) are split at random (``seed``) into training, validation
    and test identities; validation and test sets are verification pairs of their held-out
    identities (``pairs_per_fold`` matched and mismatched per fold). With ``pairs_file`` (LFW's
    ``pairs.txt``) and ``pairs_root`` (LFW's ``NAME/NAME_0001.jpg`` images), the test set is
    LFW's pairs instead, named ``lfw``, and no identities are held out for testing.

    Args:
        root: the identity folders.
        image_size: ``(H, W)`` (or one int) of the aligned crops fed to the network.
        channels: 3 (RGB) or 1 (luminance).
        val_identities, test_identities: fraction of identities held out for each.
        pairs_per_fold, num_folds: pairs of the held-out sets.
        pairs_file, pairs_root: LFW's pairs and images for the test set.
        batch_size, eval_batch_size, num_workers, seed: as in :class:`InMemoryDataModule`.

    Raises:
        FileNotFoundError / ValueError: naming the folder, for a missing root, a root without
            identity folders, files beside the identity folders, or an identity folder without
            images.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int | Sequence[int] = 112,
        channels: int = 3,
        val_identities: float = 0.1,
        test_identities: float = 0.1,
        pairs_per_fold: int = 300,
        num_folds: int = 10,
        pairs_file: str | Path | None = None,
        pairs_root: str | Path | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, seed)
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or min(size) < 2:
            raise ValueError(f"image_size must be an int or (H, W) of at least 2, got {image_size}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if not (0 < val_identities < 1 and 0 <= test_identities < 1):
            raise ValueError(
                "val_identities must be in (0, 1) and test_identities in [0, 1), got "
                f"{val_identities} and {test_identities}"
            )
        if (pairs_file is None) != (pairs_root is None):
            raise ValueError(
                "give both pairs_file and pairs_root (LFW's pairs and images), or neither"
            )
        self.root = Path(root)
        self.image_size = size
        self.channels = channels
        self.val_identities = val_identities
        self.test_identities = 0.0 if pairs_file is not None else test_identities
        self.pairs_per_fold = pairs_per_fold
        self.num_folds = num_folds
        self.pairs_file = None if pairs_file is None else Path(pairs_file)
        self.pairs_root = None if pairs_root is None else Path(pairs_root)
        self.test_set_names = ("lfw",) if pairs_file is not None else ("held_out",)
        self.identities: list[str] = []

    def scan(self) -> dict[str, list[Path]]:
        """``{identity: image files}`` of :attr:`root`, checked."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"face folder {self.root} does not exist")
        entries = sorted(self.root.iterdir())
        stray = [p.name for p in entries if not p.is_dir() and not p.name.startswith(".")]
        if stray:
            raise ValueError(
                f"{self.root} must hold only one folder per identity, found files {stray[:5]}"
            )
        folders = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
        if len(folders) < 3:
            raise ValueError(
                f"{self.root} holds {len(folders)} identity folders: expected one folder per "
                "identity (at least 3: training, validation and test identities)"
            )
        found = {}
        for folder in folders:
            files = _image_files(folder)
            if not files:
                raise ValueError(
                    f"identity folder {folder} holds no images (expected files ending in "
                    f"{', '.join(IMAGE_SUFFIXES)})"
                )
            found[folder.name] = files
        return found

    def _held_out(self, files: list[Path], labels: list[int], generator) -> PairDataset:
        pairs, same = sample_pairs(
            torch.tensor(labels), self.pairs_per_fold, self.num_folds, generator
        )
        return PairDataset(_ImageFiles(files, self.image_size, self.channels), pairs, same)

    def _lfw(self) -> PairDataset:
        assert self.pairs_file is not None and self.pairs_root is not None
        files: dict[Path, int] = {}
        pairs, same = [], []
        for fold in read_lfw_pairs(self.pairs_file):
            for pair in fold:
                indices = []
                for name, index in ((pair.name_a, pair.index_a), (pair.name_b, pair.index_b)):
                    path = self.pairs_root / name / f"{name}_{index:04d}.jpg"
                    if not path.is_file():
                        raise FileNotFoundError(
                            f"{self.pairs_file} names {path}, which does not exist"
                        )
                    indices.append(files.setdefault(path, len(files)))
                pairs.append(indices)
                same.append(pair.same)
        images = _ImageFiles(list(files), self.image_size, self.channels)
        return PairDataset(images, torch.tensor(pairs), torch.tensor(same))

    def build_datasets(self) -> dict[str, Dataset]:
        found = self.scan()
        names = list(found)
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(names), generator=generator).tolist()
        n_val = max(2, round(self.val_identities * len(names)))
        n_test = max(2, round(self.test_identities * len(names))) if self.test_identities else 0
        if n_val + n_test >= len(names):
            raise ValueError(
                f"{len(names)} identities leave none for training after {n_val} validation and "
                f"{n_test} test identities"
            )
        groups = {
            "val": [names[i] for i in order[:n_val]],
            "test": [names[i] for i in order[n_val : n_val + n_test]],
            "train": sorted(names[i] for i in order[n_val + n_test :]),
        }
        self.identities = groups["train"]

        def flat(group: list[str]) -> tuple[list[Path], list[int]]:
            files = [f for name in group for f in found[name]]
            labels = [i for i, name in enumerate(group) for _ in found[name]]
            return files, labels

        files, labels = flat(groups["train"])
        datasets: dict[str, Dataset] = {
            "train": _Labelled(
                _ImageFiles(files, self.image_size, self.channels), torch.tensor(labels)
            ),
            "val": self._held_out(*flat(groups["val"]), generator),
        }
        if self.pairs_file is not None:
            datasets["test_lfw"] = self._lfw()
        else:
            datasets["test_held_out"] = self._held_out(*flat(groups["test"]), generator)
        return datasets

    @property
    def num_classes(self) -> int:
        """Training identities (after :meth:`setup`)."""
        return len(self.identities)
