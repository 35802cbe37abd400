"""SymFace's split-face loss: symmetric faces cost exactly nothing, frontalness behaves."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geozoo.data.synthetic_faces import IDENTITY_PRIOR, FaceRendering, render_faces
from geozoo.nets import FaceEmbeddingNet
from geozoo.objectives import MarginCrossEntropy, SplitFaceSymmetry, StepContext
from geozoo.objectives.symface import (
    frontalness_from_image,
    frontalness_from_landmarks,
    split_face,
)


def _symmetric(images: torch.Tensor) -> torch.Tensor:
    half = images.shape[-1] // 2
    left = images[..., :half]
    middle = images[..., half : images.shape[-1] - half]
    return torch.cat([left, middle, left.flip(-1)], dim=-1)


def _ctx(images: torch.Tensor, network: nn.Module, **extras) -> StepContext:
    return StepContext(images, None, network(images), network, extras=extras)


@pytest.mark.parametrize("width", [8, 9])
def test_split_face_of_a_symmetric_image_gives_identical_halves(width: int) -> None:
    images = _symmetric(torch.rand(3, 2, 5, width))
    left, right = split_face(images)
    assert left.shape == right.shape == (3, 2, 5, width // 2)
    assert torch.equal(left, right)
    left, right = split_face(torch.rand(3, 2, 5, width))
    assert not torch.equal(left, right)


def test_split_face_mirrors_the_right_half() -> None:
    images = torch.arange(8.0).view(1, 1, 1, 8)
    left, right = split_face(images)
    assert left.flatten().tolist() == [0, 1, 2, 3]
    assert right.flatten().tolist() == [7, 6, 5, 4]
    assert split_face(images, mirror=False)[1].flatten().tolist() == [4, 5, 6, 7]


@pytest.mark.parametrize(
    ("halves", "distance"), [("half", "cosine"), ("half", "l2"), ("composite", "cosine")]
)
def test_loss_is_exactly_zero_for_symmetric_faces_and_any_backbone(halves, distance) -> None:
    torch.manual_seed(0)
    images = _symmetric(torch.rand(6, 3, 32, 32))
    objective = SplitFaceSymmetry(distance=distance, halves=halves, threshold=0.0)
    for network in (FaceEmbeddingNet(), FaceEmbeddingNet(widths=(4, 8)).eval()):
        loss, logs = objective(_ctx(images, network))
        assert float(loss.detach()) == 0.0
        assert float(logs["frontal_fraction"]) == 1.0
        loss.backward()  # and the zero has finite gradients
        assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)


def test_loss_is_positive_for_asymmetric_faces() -> None:
    torch.manual_seed(0)
    images = torch.rand(6, 3, 32, 32)
    network = FaceEmbeddingNet()
    for distance in ("cosine", "l2"):
        # noise is far from frontal (rho = 0): count every face with weight 1
        objective = SplitFaceSymmetry(distance=distance, threshold=0.0, weight_by_frontalness=False)
        loss, _ = objective(_ctx(images, network))
        assert float(loss.detach()) > 0


@pytest.mark.parametrize("keep", [True, False])
def test_halves_leave_the_batchnorm_statistics_to_whole_faces(keep: bool) -> None:
    torch.manual_seed(0)
    images = torch.rand(6, 3, 32, 32)
    network = FaceEmbeddingNet().train()
    ctx = _ctx(images, network)  # the task's own forward pass on whole faces
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms, "the test needs a network with batch norm"
    before = [
        (m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in norms
    ]
    objective = SplitFaceSymmetry(threshold=0.0, keep_batchnorm_statistics=keep)
    loss, _ = objective(ctx)
    loss.backward()
    unchanged = [
        torch.equal(m.running_mean, mean)
        and torch.equal(m.running_var, var)
        and int(m.num_batches_tracked) == count
        for m, (mean, var, count) in zip(norms, before, strict=True)
    ]
    assert all(unchanged) if keep else not any(unchanged)
    assert all(m.track_running_stats for m in norms)


def test_loss_is_the_frontalness_weighted_mean_distance() -> None:
    torch.manual_seed(1)
    network = FaceEmbeddingNet().eval()
    images = torch.rand(5, 3, 32, 32)
    landmarks = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]).repeat(5, 1, 1)
    landmarks[:, 2, 0] = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.9])  # rho = 1, .8, .6, .4, .1
    objective = SplitFaceSymmetry(threshold=0.5)
    loss, logs = objective(_ctx(images, network, landmarks=landmarks))
    left, right = split_face(images)
    a, b = network(left), network(right)
    d = 1 - torch.nn.functional.cosine_similarity(a, b)
    rho = torch.tensor([1.0, 0.8, 0.6, 0.0, 0.0])
    torch.testing.assert_close(loss, (rho * d).sum() / 5, atol=1e-6, rtol=1e-5)
    assert float(logs["frontal_fraction"]) == pytest.approx(0.6)
    unweighted, _ = SplitFaceSymmetry(threshold=0.5, weight_by_frontalness=False)(
        _ctx(images, network, landmarks=landmarks)
    )
    torch.testing.assert_close(unweighted, d[:3].sum() / 5, atol=1e-6, rtol=1e-5)


def test_faces_below_the_threshold_are_not_even_embedded() -> None:
    calls = []

    class Counting(nn.Module):
        def forward(self, x):
            calls.append(len(x))
            return x.flatten(1)[:, :4]

    images = torch.rand(4, 1, 8, 8)
    landmarks = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.9, 0.0]]).repeat(4, 1, 1)
    network = Counting()
    loss, logs = SplitFaceSymmetry()(_ctx(images, network, landmarks=landmarks))
    assert float(loss.detach()) == 0.0 and float(logs["frontal_fraction"]) == 0.0
    assert calls == [4]  # the task's own forward, no half-face pass


def _neutral_identity(count: int) -> torch.Tensor:
    """Mid-prior identities without their asymmetries."""
    identity = torch.tensor([(lo + hi) / 2 for lo, hi in IDENTITY_PRIOR.values()])
    for index, name in enumerate(IDENTITY_PRIOR):
        if "asymmetry" in name or name == "mouth_offset":
            identity[index] = 0.0
    return identity.repeat(count, 1)


def test_frontalness_is_one_for_a_symmetric_face_and_falls_with_yaw() -> None:
    images, landmarks = [], []
    for yaw in (0.0, 0.15, 0.3, 0.45, 0.6):  # one face, one background: only the yaw changes
        conditions = FaceRendering(
            **{**FaceRendering.neutral(1).__dict__, "yaw": torch.tensor([yaw])}
        )
        image, landmark = render_faces(_neutral_identity(1), conditions, size=32)
        images.append(image)
        landmarks.append(landmark)
    images, landmarks = torch.cat(images), torch.cat(landmarks)
    from_image, from_landmarks = (
        frontalness_from_image(images),
        frontalness_from_landmarks(landmarks),
    )
    assert float(from_image[0]) == pytest.approx(1.0, abs=1e-5)
    assert float(from_landmarks[0]) == pytest.approx(1.0, abs=1e-6)
    assert bool((from_image[1:] < from_image[:-1]).all())
    assert bool((from_landmarks[1:] < from_landmarks[:-1]).all())
    assert float(from_landmarks[-1]) < 0.5
    # mirrored yaw, same frontalness
    mirrored = frontalness_from_image(images.flip(-1))
    torch.testing.assert_close(mirrored, from_image)
    assert float(frontalness_from_image(torch.full((1, 3, 4, 4), 0.5))[0]) == 1.0


def test_frontalness_from_landmarks_is_the_scaled_nose_offset() -> None:
    landmarks = torch.tensor([[[10.0, 5], [30.0, 5], [x, 20]] for x in (20.0, 25.0, 30.0, 40.0)])
    torch.testing.assert_close(
        frontalness_from_landmarks(landmarks), torch.tensor([1.0, 0.5, 0.0, 0.0])
    )
    with pytest.raises(ValueError, match=r"\(N, 3, 2\)"):
        frontalness_from_landmarks(torch.zeros(2, 2, 2))


def test_margin_cross_entropy_uses_the_task_head() -> None:
    from geozoo.nn import ArcFaceHead

    head = ArcFaceHead(4, 3, s=16.0)
    embeddings, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    ctx = StepContext(torch.zeros(5), labels, embeddings, nn.Identity(), extras={"head": head})
    loss, _ = MarginCrossEntropy()(ctx)
    expected = torch.nn.functional.cross_entropy(head(embeddings, labels), labels)
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="margin head"):
        MarginCrossEntropy()(StepContext(torch.zeros(5), labels, embeddings, nn.Identity()))


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="distance"):
        SplitFaceSymmetry(distance="l1")
    with pytest.raises(ValueError, match="halves"):
        SplitFaceSymmetry(halves="quarter")
    with pytest.raises(ValueError, match="threshold"):
        SplitFaceSymmetry(threshold=1.5)
