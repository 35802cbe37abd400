"""Face data: the LFW pairs reader, identity folders, and the synthetic faces."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geozoo.data import FaceImageFolderDataModule, SyntheticFacesDataModule, read_lfw_pairs
from geozoo.data.faces import _ImageFiles, sample_pairs

GOOD_PAIRS = """2 2
Alice 1 2
Bob 1 3
Alice 1 Bob 2
Carol 2 Dave 1
Carol 1 2
Dave 1 2
Alice 2 Carol 1
Bob 1 Dave 2
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    return path


def test_read_lfw_pairs_reads_folds_in_order(tmp_path: Path) -> None:
    folds = read_lfw_pairs(_write(tmp_path, GOOD_PAIRS))
    assert len(folds) == 2 and all(len(f) == 4 for f in folds)
    assert [p.same for p in folds[0]] == [True, True, False, False]
    first = folds[0][0]
    assert (first.name_a, first.index_a, first.name_b, first.index_b) == ("Alice", 1, "Alice", 2)
    assert (folds[1][3].name_a, folds[1][3].index_b) == ("Bob", 2)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"pairs.txt:1: .*empty"),
        ("2\n", r"pairs.txt:1: .*two integers"),
        ("two 2\n", r"pairs.txt:1: the number of folds must be a positive integer"),
        ("1 2\nAlice 1 2\n", r"promises 1 folds x 2 x 2 = 4 pair lines, the file has 1"),
        (GOOD_PAIRS.replace("Bob 1 3", "Bob 1 3 4"), r"pairs.txt:3: expected a matched pair"),
        (GOOD_PAIRS.replace("Alice 1 Bob 2", "Alice 1 2"), r"pairs.txt:4: expected a mismatched"),
        (GOOD_PAIRS.replace("Dave 1 2", "Dave 1 x"), r"pairs.txt:7: J must be a positive integer"),
        (GOOD_PAIRS.replace("Bob 1 Dave 2", "Bob 1 Bob 2"), r"pairs.txt:9: .*names 'Bob' twice"),
        (GOOD_PAIRS.replace("Alice 1 2", "Alice 0 2"), r"pairs.txt:2: I must be a positive"),
    ],
)
def test_read_lfw_pairs_names_the_line_of_every_error(tmp_path: Path, text: str, match: str):
    with pytest.raises(ValueError, match=match):
        read_lfw_pairs(_write(tmp_path, text))


def test_read_lfw_pairs_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_lfw_pairs(tmp_path / "nope.txt")


def _make_folder(root: Path, identities: int = 6, images: int = 3, size: int = 20) -> Path:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for i in range(identities):
        folder = root / f"person_{i:02d}"
        folder.mkdir(parents=True)
        for j in range(images):
            pixels = (torch.rand(size, size + 4, 3, generator=g) * 255).to(torch.uint8)
            Image.fromarray(pixels.numpy()).save(folder / f"person_{i:02d}_{j + 1:04d}.jpg")
    return root


def test_image_folder_splits_by_identity(tmp_path: Path) -> None:
    root = _make_folder(tmp_path / "faces", identities=10)
    module = FaceImageFolderDataModule(
        root, image_size=16, val_identities=0.2, test_identities=0.2, pairs_per_fold=2, num_folds=2
    )
    module.setup()
    assert module.num_classes == 6
    image, label = module.datasets["train"][0]
    assert image.shape == (3, 16, 16) and 0.0 <= float(image.min()) <= float(image.max()) <= 1.0
    assert int(label) == 0
    (a, b), same = module.datasets["val"][0]
    assert a.shape == b.shape == (3, 16, 16) and bool(same)
    assert len(module.datasets["val"]) == len(module.datasets["test_held_out"]) == 8
    val_files = {str(f) for f in module.datasets["val"].images.files}
    train_files = {str(f) for f in module.datasets["train"].images.files}
    assert not val_files & train_files
    grey = FaceImageFolderDataModule(
        root, image_size=(12, 10), channels=1, pairs_per_fold=1, num_folds=2, val_identities=0.2
    )
    grey.setup()
    assert grey.datasets["train"][0][0].shape == (1, 12, 10)


def test_image_folder_reads_lfw_pairs_as_its_test_set(tmp_path: Path) -> None:
    root = _make_folder(tmp_path / "train")
    lfw = tmp_path / "lfw"
    for name in ("Alice", "Bob", "Carol", "Dave"):
        _make_folder(lfw / "tmp", identities=1, images=3)
        (lfw / "tmp" / "person_00").rename(lfw / name)
        for k, f in enumerate(sorted((lfw / name).iterdir())):
            f.rename(lfw / name / f"{name}_{k + 1:04d}.jpg")
        (lfw / "tmp").rmdir()
    module = FaceImageFolderDataModule(
        root,
        image_size=16,
        pairs_file=_write(tmp_path, GOOD_PAIRS),
        pairs_root=lfw,
        pairs_per_fold=1,
        num_folds=2,
    )
    module.setup()
    assert module.test_set_names == ("lfw",)
    pairs = module.datasets["test_lfw"]
    assert len(pairs) == 8 and pairs.same.tolist() == [True, True, False, False] * 2
    (a, _), _ = pairs[0]
    assert a.shape == (3, 16, 16)


def test_image_folder_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FaceImageFolderDataModule(tmp_path / "missing").setup()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds 0 identity folders"):
        FaceImageFolderDataModule(empty).setup()
    root = _make_folder(tmp_path / "faces")
    (root / "stray.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"only one folder per identity, found files \['stray"):
        FaceImageFolderDataModule(root).setup()
    (root / "stray.jpg").unlink()
    (root / "nobody").mkdir()
    (root / "nobody" / "notes.txt").write_text("no images")
    with pytest.raises(ValueError, match="nobody holds no images"):
        FaceImageFolderDataModule(root).setup()
    (root / "nobody" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg is not a readable image"):
        _ImageFiles([root / "nobody" / "broken.jpg"], (8, 8), 3)[0]
    with pytest.raises(ValueError, match="pairs_file and pairs_root"):
        FaceImageFolderDataModule(root, pairs_file="pairs.txt")


def _small_synthetic(**kwargs) -> SyntheticFacesDataModule:
    settings = {
        "num_identities": 6,
        "images_per_identity": 3,
        "val_identities": 3,
        "test_identities": 4,
        "eval_images_per_identity": 3,
        "pairs_per_fold": 5,
        "val_pairs_per_fold": 2,
        "num_folds": 2,
        "image_size": 16,
    }
    module = SyntheticFacesDataModule(**{**settings, **kwargs})
    module.setup()
    return module


def test_synthetic_faces_are_seeded_and_well_formed() -> None:
    first, again = _small_synthetic(), _small_synthetic()
    images, labels = first.datasets["train"].tensors
    assert images.shape == (18, 3, 16, 16) and labels.tolist() == sorted(labels.tolist())
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert torch.equal(images, again.datasets["train"].tensors[0])
    other = _small_synthetic(data_seed=1)
    assert not torch.equal(images, other.datasets["train"].tensors[0])
    test = first.datasets["test_synthfaces"]
    assert len(test) == 20 and test.same.tolist() == ([True] * 5 + [False] * 5) * 2
    (a, b), same = test[0]
    assert a.shape == (3, 16, 16) and bool(same) and not torch.equal(a, b)
    with_landmarks = _small_synthetic(landmarks=True, channels=1)
    image, _, landmarks = with_landmarks.datasets["train"][0]
    assert image.shape == (1, 16, 16) and landmarks.shape == (3, 2)


def test_sample_pairs_are_matched_then_mismatched_per_fold() -> None:
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    pairs, same = sample_pairs(labels, 4, 3, torch.Generator().manual_seed(0))
    assert pairs.shape == (24, 2)
    for (a, b), flag in zip(pairs.tolist(), same.tolist(), strict=True):
        assert a != b and (labels[a] == labels[b]) == flag
    with pytest.raises(ValueError, match="two images"):
        sample_pairs(torch.tensor([0, 1, 2]), 1, 1, torch.Generator())


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("num_identities", 0),
        ("images_per_identity", 0),
        ("val_identities", 1),
        ("test_identities", 1),
        ("eval_images_per_identity", 1),
    ],
)
def test_synthetic_faces_name_the_bad_count(argument: str, value: int) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must be at least \d.*got {value}$"):
        SyntheticFacesDataModule(**{argument: value})
