import hashlib

import pytest
import torch

from geozoo.data import MNISTDataModule


def _hashes(dataset, frame):
    images = dataset.tensors[0]
    return {hashlib.sha1(img[0].numpy().tobytes()).hexdigest() for img in images}


@pytest.fixture(scope="module")
def datamodule():
    dm = MNISTDataModule(
        source="offline", test_sets=["clean", "affnist", "affnist_wide", "rotated"]
    )
    dm.setup()
    return dm


def test_offline_splits_are_disjoint_and_stratified(datamodule):
    sets = datamodule.datasets
    assert [len(sets[k]) for k in ("train", "val", "test_clean")] == [3600, 400, 1000]
    train, val, test = (_hashes(sets[k], 40) for k in ("train", "val", "test_clean"))
    assert not train & test and not val & test and not train & val
    assert torch.bincount(sets["test_clean"].tensors[1]).tolist() == [100] * 10


def test_images_are_floats_in_the_affnist_frame(datamodule):
    for name in ("train", "test_clean", "test_affnist", "test_affnist_wide", "test_rotated"):
        images = datamodule.datasets[name].tensors[0]
        assert images.shape[1:] == (1, 40, 40) and images.dtype == torch.float32
        assert images.min() >= 0 and images.max() <= 1
    assert datamodule.image_size == (1, 40, 40)


def test_test_sets_share_labels_and_differ_in_pose(datamodule):
    clean = datamodule.datasets["test_clean"]
    affine = datamodule.datasets["test_affnist"]
    assert torch.equal(clean.tensors[1], affine.tensors[1])
    assert not torch.equal(clean.tensors[0], affine.tensors[0])
    wide = datamodule.datasets["test_affnist_wide"]
    assert torch.equal(clean.tensors[1], wide.tensors[1])
    assert not torch.equal(affine.tensors[0], wide.tensors[0])
    names = ["clean", "affnist", "affnist_wide", "rotated"]
    assert list(datamodule.test_loaders_by_name()) == names


def test_28x28_frame_and_limit_train():
    dm = MNISTDataModule(source="offline", pad_to=None, test_sets=["clean"], limit_train=100)
    dm.setup()
    assert dm.datasets["train"].tensors[0].shape == (100, 1, 28, 28)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test_sets": ["clean", "afnist"]}, "unknown test sets"),
        ({"pad_to": None, "test_sets": ["affnist"]}, "pad_to=40"),
        ({"pad_to": 32, "test_sets": ["clean", "affnist_wide"]}, "affnist_wide"),
        ({"train_augment": "mixup"}, "train_augment"),
        ({"val_fraction": 1.5}, "val_fraction"),
    ],
)
def test_bad_options_are_explained(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MNISTDataModule(source="offline", **kwargs)


def test_jitter_augments_training_batches_only():
    from geozoo.data.transforms import random_jitter

    dm = MNISTDataModule(
        source="offline",
        pad_to=None,
        test_sets=["clean"],
        limit_train=8,
        train_augment="jitter",
        jitter={"max_shift": 3.0},
    )
    dm.setup()
    batch = dm.datasets["train"].tensors
    assert dm.on_after_batch_transfer(batch, 0) is batch  # no trainer: nothing changes

    class Training:
        training = True

    dm.trainer = Training()
    images, labels = dm.on_after_batch_transfer(batch, 0)
    assert torch.equal(labels, batch[1])
    assert torch.equal(images, random_jitter(batch[0], seed=1, max_shift=3.0))
    with pytest.raises(ValueError, match="train_augment='jitter'"):
        MNISTDataModule(source="offline", jitter={"max_shift": 3.0})


@pytest.mark.parametrize(
    ("affine", "match"),
    [
        ({"ranges": "huge"}, r"ranges must be one of \['affnist', 'wide'\], got 'huge'"),
        ({"max_rotation": 30}, r"unknown affine options \['max_rotation'\]: expected keys"),
        ({"max_shear": -0.1}, "max_shear must be >= 0, got -0.1"),
        ({"scale_range": [1.3, 0.7]}, r"0 < low <= high, got \(1.3, 0.7\)"),
        ({"scale_range": [0.7]}, r"scale_range must be \(low, high\)"),
    ],
)
def test_bad_affine_options_are_explained(affine, match):
    with pytest.raises(ValueError, match=match):
        MNISTDataModule(source="offline", train_augment="affine", affine=affine)
    with pytest.raises(ValueError, match="affine options need train_augment='affine'"):
        MNISTDataModule(source="offline", affine={"ranges": "wide"})


@pytest.mark.parametrize(
    "affine",
    [{"ranges": "wide"}, {"max_rotation_deg": 30, "max_shear": 0.3, "scale_range": [0.7, 1.3]}],
)
def test_affine_augmentation_takes_named_or_explicit_ranges(affine):
    from geozoo.data.transforms import affnist_style

    dm = MNISTDataModule(
        source="offline", test_sets=["clean"], limit_train=8, train_augment="affine", affine=affine
    )
    dm.setup()
    batch = dm.datasets["train"].tensors

    class Training:
        training = True

    dm.trainer = Training()
    images, _ = dm.on_after_batch_transfer(batch, 0)
    digits = batch[0][..., 6:34, 6:34]
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in affine.items()}
    assert torch.equal(images, affnist_style(digits, seed=1, **options))
    assert not torch.equal(images, affnist_style(digits, seed=1))  # not the affNIST ranges
