"""SymFace's split-face symmetry loss (Prakash et al., "SymFace: Additional Facial Symmetry Loss
for Deep Face Recognition", arXiv 2409.11816, 2024), and the margin softmax it is added to.

An aligned frontal face split at its vertical midline gives two hemi-faces that, once one is
mirrored, should embed to the same point; the paper adds a penalty on the distance of the two
embeddings, restricted to faces that are frontal enough (its "symmetrical orientation
coefficient" rho from three landmarks, 3PSS), to a margin loss: ``L = L_margin + L_rho``.

The paper leaves several choices open; each is an argument here with a documented default:
the right half is mirrored (``mirror=True``), the split is the image's centre column (aligned
crops centre the face), the distance is cosine (``distance="cosine"``), rho weights each face's
term (``weight_by_frontalness=True``) and faces with rho below ``threshold`` contribute nothing.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geozoo.nn.batchnorm import batchnorm_statistics_kept
from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext, as_scalar

__all__ = [
    "MarginCrossEntropy",
    "SplitFaceSymmetry",
    "frontalness_from_image",
    "frontalness_from_landmarks",
    "split_face",
]


def split_face(images: Tensor, mirror: bool = True) -> tuple[Tensor, Tensor]:
    """Split aligned faces ``(N, C, H, W)`` at the vertical midline.

    Returns ``(left, mirrored_right)``, each ``(N, C, H, W // 2)``: the image's left half and its
    right half flipped left-right (so both show the face from the midline outwards in the same
    orientation); ``mirror=False`` returns the right half as it is. For odd ``W`` the centre
    column lies on the midline and belongs to neither half. A left-right symmetric image
    (``images == images.flip(-1)``) gives two identical halves.
    """
    if images.dim() != 4 or images.shape[-1] < 2:
        raise ValueError(
            f"expected images of shape (N, C, H, W) with W >= 2, got {tuple(images.shape)}"
        )
    half = images.shape[-1] // 2
    left, right = images[..., :half], images[..., images.shape[-1] - half :]
    return left, right.flip(-1) if mirror else right


def frontalness_from_landmarks(landmarks: Tensor, max_offset: float = 0.5) -> Tensor:
    """SymFace's symmetrical orientation coefficient rho from three landmarks (3PSS).

    ``landmarks`` is ``(N, 3, 2)``: (x, y) of the left eye, the right eye and the nose tip (any
    unit). ``D = |x_nose - (x_left + x_right) / 2| / |x_right - x_left|`` is the nose's
    horizontal offset from the eyes' midpoint in interocular distances, and
    ``rho = clamp(1 - D / max_offset, 0, 1)``: 1 for a frontal face, 0 once the nose lies
    ``max_offset`` interocular distances aside (default 0.5: under one eye).
    """
    if landmarks.dim() != 3 or landmarks.shape[1:] != (3, 2):
        raise ValueError(
            "expected landmarks of shape (N, 3, 2) (left eye, right eye, nose; x, y), got "
            f"{tuple(landmarks.shape)}"
        )
    if not max_offset > 0:
        raise ValueError(f"max_offset must be positive, got {max_offset}")
    x = landmarks[..., 0].float()
    interocular = (x[:, 1] - x[:, 0]).abs().clamp_min(1e-6)
    offset = (x[:, 2] - 0.5 * (x[:, 0] + x[:, 1])).abs() / interocular
    return (1.0 - offset / max_offset).clamp(0.0, 1.0)


def frontalness_from_image(images: Tensor, resolution: int = 4, tolerance: float = 0.25) -> Tensor:
    """rho from the image's own left-right agreement, for data without landmarks.

    The image is average-pooled to ``resolution x resolution`` cells and ``c`` is the Pearson
    correlation (over cells and channels) of the result with its mirror image;
    ``rho = clamp(1 - (1 - c) / tolerance, 0, 1)``. 1 for a left-right symmetric face, falling
    as yaw moves the face off the midline (and with one-sided lighting, which the split penalty
    should not see either). The pooling keeps only the coarse layout: at full resolution the
    correlation is not monotone in yaw once the eyes move past their mirror images. The defaults
    were chosen on the synthetic training faces (rho of about 0.5 at a yaw of 0.45 rad). Images
    without variation count as symmetric (rho = 1).
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    if resolution < 1 or not tolerance > 0:
        raise ValueError(
            f"expected resolution >= 1 and tolerance > 0, got {resolution} and {tolerance}"
        )
    pooled = F.adaptive_avg_pool2d(images.detach().float(), resolution)
    x = pooled.flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    mirrored = pooled.flip(-1).flatten(1)
    mirrored = mirrored - mirrored.mean(dim=1, keepdim=True)
    energy = (x * x).sum(dim=1)  # equal for the mirror image
    flat = energy <= 1e-12
    corr = (x * mirrored).sum(dim=1) / energy.clamp_min(1e-12)
    rho = (1.0 - (1.0 - corr) / tolerance).clamp(0.0, 1.0)
    return torch.where(flat, torch.ones_like(rho), rho)


class MarginCrossEntropy(Objective):
    """Cross-entropy of a margin head's logits (ArcFace, CosFace, AdaFace from
    :mod:`geozoo.nn.margin_heads`): the base face loss ``L_f``.

    The head is the task's (:class:`geozoo.tasks.EmbeddingTask` hands it over as
    ``ctx.extras["head"]``); the network's outputs are the embeddings.

    Args:
        weight: factor applied by the task.
    """

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight=weight, name="margin_ce")

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        if ctx.targets is None:
            raise ValueError("MarginCrossEntropy needs identity labels, but the batch has none")
        head = ctx.extras.get("head")
        if head is None:
            raise ValueError(
                "MarginCrossEntropy needs a margin head in ctx.extras['head'] (train it with "
                "geozoo.tasks.EmbeddingTask, which provides its head)"
            )
        logits = head(ctx.outputs, ctx.targets)
        loss = F.cross_entropy(logits.float(), ctx.targets)
        accuracy = (logits.detach().argmax(-1) == ctx.targets).float().mean()
        return ObjectiveOutput(loss, {"acc": accuracy})


class SplitFaceSymmetry(Objective):
    """SymFace's split-face loss ``L_rho``: hemi-faces of a frontal face embed alike.

    Each face is split by :func:`split_face` into its left half and mirrored right half; both
    are embedded, by the shared network on half-width inputs (``halves="half"``, default; the
    network must accept width ``W // 2``, e.g. by global pooling) or on the two full-width
    chimeric faces ``[left | flip(left)]`` and ``[r | flip(r)]`` with ``r`` the mirrored right
    half, i.e. the right half completed by its own mirror image (``halves="composite"``, for
    networks with a fixed input size), or by a declared ``half_network``. The loss is

        L_rho = (1 / N) sum_i w_i d(f(left_i), f(right_i)),   w_i = rho_i [rho_i >= threshold]

    (``w_i = [rho_i >= threshold]`` without ``weight_by_frontalness``), with ``d`` the cosine
    distance ``1 - cos`` (default) or the Euclidean distance of the raw embeddings (``"l2"``;
    note it also rewards shrinking the embeddings). rho comes from landmarks when the batch
    provides them (``ctx.extras["landmarks"]``, see :func:`frontalness_from_landmarks`), else
    from the image (:func:`frontalness_from_image`). Only faces at or above the threshold are
    embedded, so non-frontal faces cost nothing.

    A left-right symmetric face gives identical halves, hence exactly zero loss for any network.

    Args:
        weight: factor applied by the task (the paper adds the loss with weight 1).
        distance: ``"cosine"`` or ``"l2"``.
        threshold: faces with rho below it contribute nothing (default 0.5).
        weight_by_frontalness: weight each face's distance by rho.
        halves: ``"half"`` or ``"composite"`` (see above).
        mirror: mirror the right half before embedding (default; without it a symmetric face
            no longer gives identical inputs).
        half_network: a module embedding the halves instead of the trained network (its
            parameters are trained with the task's).
        max_offset: ``max_offset`` of :func:`frontalness_from_landmarks`.
        resolution, tolerance: those of :func:`frontalness_from_image`.
        keep_batchnorm_statistics: embed the halves without updating the network's batch-norm
            running statistics (default), so the evaluated network's statistics are those of
            whole faces only (the paper does not say; letting half faces into them lowered held-out
            verification accuracy here, see docs/symface.md).
    """

    def __init__(
        self,
        weight: float = 1.0,
        distance: str = "cosine",
        threshold: float = 0.5,
        weight_by_frontalness: bool = True,
        halves: str = "half",
        mirror: bool = True,
        half_network: nn.Module | None = None,
        max_offset: float = 0.5,
        resolution: int = 4,
        tolerance: float = 0.25,
        keep_batchnorm_statistics: bool = True,
    ) -> None:
        super().__init__(weight=weight, name="split_face")
        if distance not in ("cosine", "l2"):
            raise ValueError(f"distance must be 'cosine' or 'l2', got {distance!r}")
        if halves not in ("half", "composite"):
            raise ValueError(f"halves must be 'half' or 'composite', got {halves!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.distance = distance
        self.threshold = float(threshold)
        self.weight_by_frontalness = bool(weight_by_frontalness)
        self.halves = halves
        self.mirror = bool(mirror)
        self.half_network = half_network
        self.max_offset = float(max_offset)
        self.resolution, self.tolerance = int(resolution), float(tolerance)
        self.keep_batchnorm_statistics = bool(keep_batchnorm_statistics)

    def frontalness(self, images: Tensor, landmarks: Tensor | None = None) -> Tensor:
        """rho of each face, ``(N,)`` in [0, 1]."""
        if landmarks is not None:
            return frontalness_from_landmarks(landmarks, self.max_offset).to(images.device)
        return frontalness_from_image(images, self.resolution, self.tolerance)

    def _inputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        left, right = split_face(images, self.mirror)
        if self.halves == "composite":
            width = images.shape[-1]
            middle = images[..., width // 2 : width - width // 2]  # the odd centre column
            left = torch.cat([left, middle, left.flip(-1)], dim=-1)
            right = torch.cat([right, middle, right.flip(-1)], dim=-1)
        return left, right

    def pair_distance(self, a: Tensor, b: Tensor) -> Tensor:
        """``d`` of each pair of embeddings, ``(N,)``."""
        a, b = a.flatten(1).float(), b.flatten(1).float()
        if self.distance == "cosine":
            # 1 - cos(a, b) written as half the squared distance of the unit vectors: exactly 0
            # for equal embeddings (a ratio of dot products would leave rounding residue)
            return 0.5 * (F.normalize(a, dim=1) - F.normalize(b, dim=1)).square().sum(dim=1)
        squared = (a - b).square().sum(dim=1)
        # sqrt has an infinite derivative at 0: equal pairs get distance 0 and gradient 0
        root = squared.clamp_min(1e-24).sqrt()
        return torch.where(squared > 1e-24, root, torch.zeros_like(root))

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        images = ctx.inputs
        rho = self.frontalness(images, ctx.extras.get("landmarks"))
        keep = rho >= self.threshold
        zero = ctx.outputs.float().sum() * 0.0  # keeps the graph for a batch with no frontal face
        logs = {"frontal_fraction": as_scalar(keep.float().mean()), "rho": as_scalar(rho.mean())}
        if not bool(keep.any()):
            return ObjectiveOutput(zero, logs)
        left, right = self._inputs(images[keep])
        network = self.half_network if self.half_network is not None else ctx.network
        kept = (
            batchnorm_statistics_kept if self.keep_batchnorm_statistics else contextlib.nullcontext
        )
        with kept(network):
            embeddings = network(torch.cat([left, right]))
        distances = self.pair_distance(*embeddings.chunk(2))
        weights = rho[keep] if self.weight_by_frontalness else torch.ones_like(distances)
        loss = zero + (weights.to(distances) * distances).sum() / len(images)
        logs["distance"] = as_scalar(distances.mean())
        return ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, distance={self.distance!r}, threshold={self.threshold}, "
            f"halves={self.halves!r}, mirror={self.mirror}"
        )
