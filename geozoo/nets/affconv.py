"""Affine-group convolutional networks for digits in the affNIST frame (40 x 40), after
Mironenco & Forre, "Lie Group Decompositions for Equivariant Neural Networks", ICLR 2024, Sec. 5.

The affine group ``R^2 x| H`` is handled factor by factor, following the polar decomposition
``g = R P``: the translation and the positive factor ``P`` by a moment canonicalisation of the
input (:class:`~geozoo.nn.MomentCanonicalization`), the rotation ``R`` by lifting to samples
over a range of rotations, group convolutions and a max over the samples. It is a smaller and
much faster relative of the paper's GResNet: RBF kernels instead of SIRENs, a point-mass group
kernel instead of a dense one, fewer channels and samples, kernels cached in evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch.nn.functional as F
from torch import Tensor, nn

from geozoo.nets.cnn import AFFNIST_FRAME, CNN_MNIST_ARCHITECTURE, PlainCNN
from geozoo.nn.affine_conv import (
    AffineGroupConv2d,
    AffineLiftingConv2d,
    AffineSampler,
    GroupLayerNorm,
    group_max_pool2d,
)
from geozoo.nn.canonicalize import MomentCanonicalization
from geozoo.nn.checks import check_images
from geozoo.zoo.registry import register_model

__all__ = ["AffConvNet", "affconv_gl2_mnist", "affconv_sl2_mnist", "cnn_affaug_mnist"]

MNIST_STD = 0.3081


class AffConvNet(nn.Module):
    """Canonicalise -> lift -> [group conv] x k with spatial max pooling -> max over (group,
    plane) -> MLP head.

    Each factor of the affine map gets its own mechanism:

    * translation and positive factor: the input is resampled into its moment pose
      (``canonicalize="group"``): centroid to the centre, second moments whitened (GL+(2)) or
      made isotropic at the same area (SL(2)). An affine map of the input then leaves only a
      rotation of the canonical image, about as large as the map's own rotation part. Integer
      shifts that keep the digit inside the frame leave the logits unchanged up to rounding.
    * rotation: ``rotations`` samples over ``[-max_angle, max_angle]`` and, by default, the
      point-mass group kernel (``group_kernel="delta"``): a rotation of the input by one sample
      step moves every sample's features to its neighbour's (exactly for quarter turns,
      approximately for other angles, whose pixel grids differ), and the max over the samples
      absorbs it: partial invariance over the covered range (a full circle would merge 6 and
      9).
    * the random positive factors drawn in training (``pd_scale``) deform the kernels a little
      on every step; in evaluation the grid uses ``P = I``.

    The trunk maps an all-zero image to all-zero features (no pixel shift, bias-free
    convolutions with zero ``"same"`` padding, :class:`~geozoo.nn.GroupLayerNorm` with
    ``center=False``), so without canonicalisation it is translation-equivariant up to the
    frame's edge and the pooling stride (see docs/affine.md).

    Args:
        group: ``"gl2"``, ``"sl2"``, ``"so2"``, ``"rs2"`` or a :class:`~geozoo.groups.PolarGroup`.
        channels: widths of the lifting layer and of each group convolution.
        kernel_sizes: kernel sizes of the same layers (odd).
        pool_after: for each layer whether a 2x2 spatial max pool follows it.
        rotations, positives: the sample grid is ``rotations`` rotations times ``positives``
            positive factors (see :class:`~geozoo.nn.affine_conv.AffineSampler`).
        pd_scale: log-normal spread of the positive factors.
        lift_radius, conv_radius: radii of the RBF kernel bases (pixels).
        heads: number of group kernels per group convolution (``group_kernel="mlp"`` only).
        group_kernel: ``"delta"`` (default: each sample sees only its own features, so a range
            of rotations has no boundary effects) or ``"mlp"`` (a continuous kernel over the
            relative group element); see :class:`~geozoo.nn.AffineGroupConv2d`.
        max_angle: half-width in degrees of the rotation range the samples cover (``None``: the
            whole circle); see :class:`~geozoo.nn.affine_conv.AffineSampler`.
        hidden: width of the head.
        dropout: dropout before the last linear layer.
        input_size: expected ``(H, W)``.
        canonicalize: ``"group"`` (default) resamples every input into its moment pose for the
            group's positive factor before the lifting layer (centroid to the centre; second
            moments whitened for GL+(2), made isotropic at the same area for SL(2), scaled to a
            fixed spread for rotation-scaling, nothing more for SO(2)); ``"translation"`` moves
            the centroid only; ``None`` does nothing. Inputs must have a zero background.
            See :class:`~geozoo.nn.MomentCanonicalization`.
        canvas: ``(H, W)`` of the canonical image the trunk sees (default: ``input_size``).
            The moment pose fixes the digit's spread (5 pixels), so a canvas smaller than the
            input frame loses no content and cuts the trunk's cost by its area: it pays for
            more rotation samples. Needs ``canonicalize="group"``.
    """

    def __init__(
        self,
        group: str = "gl2",
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32, 64, 64),
        kernel_sizes: Sequence[int] = (5, 3, 3, 3),
        pool_after: Sequence[bool] = (True, True, False, False),
        rotations: int = 5,
        positives: int = 1,
        pd_scale: float = 0.25,
        lift_radius: float = 2.0,
        conv_radius: float = 1.0,
        max_angle: float | None = 25.0,
        heads: int = 1,
        hidden: int = 64,
        dropout: float = 0.2,
        input_size: Sequence[int] = (40, 40),
        std: float = MNIST_STD,
        canonicalize: str | None = "group",
        group_kernel: str = "delta",
        canvas: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not (len(channels) == len(kernel_sizes) == len(pool_after)) or len(channels) < 1:
            raise ValueError(
                "channels, kernel_sizes and pool_after must have the same non-zero length, got "
                f"{len(channels)}, {len(kernel_sizes)}, {len(pool_after)}"
            )
        self.in_channels, self.input_size = in_channels, tuple(input_size)
        self.std = std
        self.sampler = AffineSampler(group, rotations, positives, pd_scale, max_angle=max_angle)
        group_value = self.sampler.group
        poses = {None: None, "translation": "none", "group": group_value.positive}
        if canonicalize not in poses:
            raise ValueError(
                f"canonicalize must be 'group', 'translation' or None, got {canonicalize!r}"
            )
        pose = poses[canonicalize]
        if canvas is not None and pose not in ("scalar", "full"):
            raise ValueError(
                f"canvas={canvas!r} needs a pose that fixes the digit's spread "
                "(canonicalize='group' with a scale-normalising group such as gl2 or rs2), got "
                f"canonicalize={canonicalize!r} with group {group!r}; pass canvas=None to see "
                "the input frame"
            )
        size = None if canvas is None else tuple(canvas)
        self.canonicalize = None if pose is None else MomentCanonicalization(pose, size=size)
        self.lift = AffineLiftingConv2d(
            in_channels,
            channels[0],
            kernel_sizes[0],
            basis_radius=lift_radius,
            padding=kernel_sizes[0] // 2,
            bias=False,
        )
        self.convs = nn.ModuleList(
            AffineGroupConv2d(
                c_in,
                c_out,
                group_value,
                k,
                basis_radius=conv_radius,
                heads=heads,
                bias=False,
                group_kernel=group_kernel,
            )
            for c_in, c_out, k in zip(channels[:-1], channels[1:], kernel_sizes[1:])
        )
        self.norms = nn.ModuleList(GroupLayerNorm(c, center=False) for c in channels)
        self.pool_after = tuple(bool(p) for p in pool_after)
        # The global max over (group, plane) is large and nearly input-independent at
        # initialisation; a batch norm on it restores a usable signal and speeds up training a
        # lot. Its running statistics average over the random training grids and serve the
        # fixed evaluation grid; the trunk is normalised per image, so no other layer has
        # statistics that could differ between the two.
        self.head = nn.Sequential(
            nn.BatchNorm1d(channels[-1]),
            nn.Linear(channels[-1], hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def features(self, x: Tensor, samples: Tensor | None = None) -> Tensor:
        """Invariant features ``(N, channels[-1])`` (samples from :attr:`sampler` by default)."""
        if samples is None:
            samples = self.sampler(x.device)
        if self.canonicalize is not None:
            x = self.canonicalize(x)
        h = self.lift(x / self.std, samples)
        for index in range(len(self.norms)):
            if index > 0:
                h = self.convs[index - 1](h, samples)
            if self.pool_after[index]:  # pooling first: the norm and ReLU see 4x fewer values
                h = group_max_pool2d(h, 2)
            h = F.relu(self.norms[index](h))
        return h.amax(dim=(1, 3, 4))

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels, self.input_size)
        return self.head(self.features(x))


def _builder(group: str, kwargs: dict) -> AffConvNet:
    return AffConvNet(**{"group": group, "in_channels": 1, "num_classes": 10, **kwargs})


GL2_NOTES = replace(
    AFFNIST_FRAME,
    temperature_layer="head.4",
    notes="Trained on centred digits only (no augmentation), with label smoothing 0.1 in the "
    "cross-entropy and AdamW weight decay 0.05 (each chosen on validation digits, "
    "docs/affine.md). Label smoothing leaves the trained softmax under-confident, so publishing "
    "divided the logits by a temperature fitted on the validation digits (see Calibration): the "
    "shipped logits are calibrated, and every prediction is the trained network's.",
)


@register_model(pretrained_cfg=GL2_NOTES)
def affconv_gl2_mnist(**kwargs) -> AffConvNet:
    """R^2 x| GL+(2) group-convolutional network for 40x40 digits (affNIST protocol), as
    published: 24-48-96-96 channels, 5 rotation samples over +-60 degrees, moment pose resampled
    onto a 28x28 canvas."""
    published = {
        "channels": (24, 48, 96, 96),
        "hidden": 96,
        "rotations": 5,
        "max_angle": 60.0,
        "canvas": (28, 28),
    }
    return _builder("gl2", {**published, **kwargs})


SL2_LIMITS = replace(
    AFFNIST_FRAME,
    notes="Trained on centred digits only (no augmentation). 5 rotation samples over +-60 degrees "
    "(the range the GL+(2) ablation in docs/affine.md found worth about 4 wide points) on the "
    "40x40 frame with the 16-32-64-64 trunk. It keeps the frame and the trunk because SL(2)'s "
    "moment pose keeps area, so the 28x28 canvas that pays for GL+(2)'s wider trunk could crop "
    "a digit. For the same reason it cannot undo the wide test's scales (0.6-1.5, areas "
    "0.36-2.25) nor the affNIST-style ones (independent x/y scales 0.8-1.2, areas 0.64-1.44): "
    "it is not expected to reach the targets set for GL+(2) (98% affNIST-style, 93% wide).",
)


@register_model(pretrained_cfg=SL2_LIMITS)
def affconv_sl2_mnist(**kwargs) -> AffConvNet:
    """R^2 x| SL(2) group-convolutional network for 40x40 digits (affNIST protocol), as
    published: 16-32-64-64 channels, 5 rotation samples over +-60 degrees on the 40x40 frame."""
    return _builder("sl2", {"max_angle": 60.0, **kwargs})


@register_model(pretrained_cfg=AFFNIST_FRAME)
def cnn_affaug_mnist(**kwargs) -> PlainCNN:
    """The plain CNN of ``cnn_mnist`` trained WITH random affine augmentation (the wide ranges:
    rotation +-45 degrees, shear +-0.4, scale 0.6-1.5): the baseline a user would reach for
    instead of an equivariant network."""
    return PlainCNN(**{**CNN_MNIST_ARCHITECTURE, **kwargs})
