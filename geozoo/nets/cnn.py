"""A plain convolutional baseline for digit images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from torch import Tensor, nn

from geozoo.nn.checks import check_images
from geozoo.zoo.pretrained import InputSpec, PretrainedCfg
from geozoo.zoo.registry import register_model

#: 40x40 digits in [0, 1] (the affNIST frame), classified into 10 classes.
AFFNIST_FRAME = PretrainedCfg(input=InputSpec((1, 40, 40)))

__all__ = ["PlainCNN", "cnn_mnist"]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
GLOBAL_POOLS = ("avg", "max")
PADDING_MODES = ("zeros", "replicate", "reflect")


class PlainCNN(nn.Module):
    """Conv-BN-ReLU stages with max pooling, global (average or max) pooling and a linear head.

    Takes float images in [0, 1] of shape ``(N, in_channels, *input_size)``; normalisation
    happens inside the model.

    Args:
        in_channels: image channels.
        num_classes: number of output logits.
        widths: channels of each stage; each stage has two 3x3 convolutions and halves the size
            (except the last).
        input_size: expected ``(H, W)``; checked on every call.
        dropout: dropout before the head.
        mean, std: normalisation applied to the input.
        global_pool: ``"avg"`` or ``"max"`` over the last stage's positions.
        padding_mode: padding of every convolution (``"zeros"``, ``"replicate"`` or
            ``"reflect"``). The input is normalised, so its background is not zero: with
            ``"zeros"`` the frame's edge looks like a stroke to the first layer, and a digit near
            it meets features it never met at the centre. ``"replicate"`` extends the background
            instead (a blank frame gives spatially constant features at every stage).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 64),
        input_size: Sequence[int] = (40, 40),
        dropout: float = 0.1,
        mean: float = MNIST_MEAN,
        std: float = MNIST_STD,
        global_pool: Literal["avg", "max"] = "avg",
        padding_mode: Literal["zeros", "replicate", "reflect"] = "zeros",
    ) -> None:
        super().__init__()
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {GLOBAL_POOLS}, got {global_pool!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.in_channels = in_channels
        self.input_size = tuple(input_size)
        self.mean, self.std = mean, std
        self.global_pool, self.padding_mode = global_pool, padding_mode
        layers: list[nn.Module] = []
        previous = in_channels
        for index, width in enumerate(widths):
            for _ in range(2):
                layers += [
                    nn.Conv2d(previous, width, 3, padding=1, bias=False, padding_mode=padding_mode),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                previous = width
            if index < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1) if global_pool == "avg" else nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(previous, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels, self.input_size)
        return self.head(self.features((x - self.mean) / self.std))


#: ``cnn_mnist``'s network, also ``cnn_affaug_mnist``'s (only the training differs)
CNN_MNIST_ARCHITECTURE: dict = {
    "in_channels": 1,
    "num_classes": 10,
    "input_size": (40, 40),
    "global_pool": "max",
}

CENTRED_BASELINE = replace(
    AFFNIST_FRAME,
    notes="Trained on centred digits only (no augmentation), with global pooling over its last "
    "stage. The affNIST-style and wide test sets measure how far it generalises to affine poses "
    "it never saw: compare `cnn_affaug_mnist` (the same network trained with random affine "
    "augmentation) and the affine-equivariant entries (no augmentation).",
)


@register_model(pretrained_cfg=CENTRED_BASELINE)
def cnn_mnist(**kwargs) -> PlainCNN:
    """Plain CNN baseline for 40x40 MNIST digits (the affNIST frame), global max pooling."""
    return PlainCNN(**{**CNN_MNIST_ARCHITECTURE, **kwargs})
