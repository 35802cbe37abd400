"""Steerable CNNs for rotated digits (Weiler & Cesa, NeurIPS 2019) in two forms.

* **escnn form** (``exported=False``, for training and fine-tuning): steerable convolutions
  over regular fields of C_N or D_N (:class:`geozoo.nn.SteerableConvBlock`), whose filters are
  expanded from learned coefficients in an escnn kernel basis at every training step.
* **exported form** (``exported=True``, for inference and the zoo's checkpoints): the same
  function as ordinary ``Conv2d``/``BatchNorm2d``/``ReLU``/``MaxPool2d`` layers, built without
  escnn. ``create_model("steerable_c8_rotmnist", pretrained=True)`` builds this form, so
  loading computes no basis and works where escnn is not installed.

Both forms share the invariant head: max over each field's fiber (the group permutes it),
global average over space, then a linear classifier. Inputs are masked to the inscribed disc
so that rotating the digit does not move content across the square frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from geozoo.groups import Cyclic, Dihedral, get_group
from geozoo.nn.checks import check_images
from geozoo.nn.steerable import FiberPool, SteerableConvBlock, field_type, import_escnn
from geozoo.nn.steerable import steerable_gspace as _gspace
from geozoo.zoo.registry import register_model

__all__ = ["SteerableCNN", "group_order", "steerable_c8_rotmnist", "steerable_d4_rotmnist"]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def group_order(group: str | Cyclic) -> int:
    """Order of C_N (N) or D_N (2N), from a name (``"c8"``, ``"d4"``) or a value, without
    importing escnn."""
    value = get_group(group)
    if not isinstance(value, Cyclic):  # Dihedral is a Cyclic subclass
        raise ValueError(f"group must be 'cN' or 'dN' with N >= 1, got {group!r}")
    return value.order


class SteerableCNN(nn.Module):
    """C_N / D_N steerable CNN with an invariant head.

    Args:
        group: ``"cN"`` or ``"dN"`` (e.g. ``"c8"``, ``"d4"``).
        widths: regular fields per block (each field has ``|G|`` channels).
        kernel_sizes: odd kernel size per block.
        pools: 2x2 max pooling after each block.
        num_classes: logits.
        in_channels: image channels (trivial fields).
        input_size: ``(H, W)`` checked on every call.
        dropout: before the linear head.
        mean, std: input normalisation.
        exported: build the plain-torch form (no escnn); see the module docstring.
        invariance: ``"group"``: the head pools each field over the whole group, so the logits
            are invariant under C_N or D_N. ``"rotations"``: for D_N, the head pools over the
            rotations C_N only (:class:`geozoo.nn.FiberPool` with ``blocks=2``), so the logits
            are rotation-invariant while a mirrored input stays a different input (digits are
            not mirror-symmetric; Weiler & Cesa 2019, section 3.3, restrict D_N to C_N for
            rotated MNIST). The same as ``"group"`` for C_N.
    """

    def __init__(
        self,
        group: str = "c8",
        widths: Sequence[int] = (8, 16, 32),
        kernel_sizes: Sequence[int] = (5, 3, 3),
        pools: Sequence[bool] = (True, True, False),
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: Sequence[int] = (28, 28),
        dropout: float = 0.1,
        mean: float = MNIST_MEAN,
        std: float = MNIST_STD,
        exported: bool = False,
        invariance: str = "group",
    ) -> None:
        super().__init__()
        widths, kernel_sizes, pools = list(widths), list(kernel_sizes), list(pools)
        if not (len(widths) == len(kernel_sizes) == len(pools)) or not widths:
            raise ValueError(
                f"widths, kernel_sizes and pools must have the same non-zero length, got "
                f"{len(widths)}, {len(kernel_sizes)} and {len(pools)}"
            )
        if invariance not in ("group", "rotations"):
            raise ValueError(f"invariance must be 'group' or 'rotations', got {invariance!r}")
        self.config: dict[str, Any] = {
            "group": group,
            "widths": widths,
            "kernel_sizes": kernel_sizes,
            "pools": [bool(p) for p in pools],
            "num_classes": num_classes,
            "in_channels": in_channels,
            "input_size": list(input_size),
            "dropout": dropout,
            "mean": mean,
            "std": std,
            "invariance": invariance,
        }
        self.order = group_order(group)
        self.in_channels, self.input_size = in_channels, tuple(input_size)
        self.mean, self.std, self.exported = mean, std, exported
        h, w = self.input_size
        rows = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
        cols = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
        disc = (rows[:, None] ** 2 + cols[None, :] ** 2) <= (min(h, w) / 2) ** 2
        self.register_buffer("mask", disc.float(), persistent=False)
        if exported:
            self.body = self._plain_body()
        else:
            self.body, self.in_type = self._escnn_body(group)
        blocks = 2 if invariance == "rotations" and isinstance(get_group(group), Dihedral) else 1
        self.head = nn.Sequential(
            FiberPool(self.order, "max", blocks),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(widths[-1] * blocks, num_classes),
        )

    def _escnn_body(self, group: str) -> tuple[nn.Module, Any]:
        escnn = import_escnn()
        gspace = _gspace(group)
        in_type = field_type(gspace, self.in_channels, "trivial")
        current, layers = in_type, []
        for fields, k, pool in zip(
            self.config["widths"], self.config["kernel_sizes"], self.config["pools"]
        ):
            block = SteerableConvBlock(current, fields, "regular", k, pool)
            layers += list(block.layers.children())
            current = block.out_type
        return escnn.nn.SequentialModule(*layers), in_type

    def _plain_body(self) -> nn.Sequential:
        """The layer-for-layer plain-torch skeleton of what escnn's ``export()`` produces."""
        layers: list[nn.Module] = []
        previous = self.in_channels
        for fields, k, pool in zip(
            self.config["widths"], self.config["kernel_sizes"], self.config["pools"]
        ):
            channels = fields * self.order
            layers += [
                nn.Conv2d(previous, channels, k, padding=k // 2, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            if pool:
                layers.append(nn.MaxPool2d(2))
            previous = channels
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels, self.input_size)
        x = (x - self.mean) / self.std * self.mask.to(x.dtype)
        if self.exported:
            features = self.body(x)
        else:
            escnn = import_escnn()
            features = self.body(escnn.nn.GeometricTensor(x, self.in_type)).tensor
        return self.head(features)

    def export(self) -> SteerableCNN:
        """A new exported-form network computing the same logits (this one must be in eval
        mode, as escnn's ``export`` requires); the result is in eval mode."""
        if self.exported:
            raise RuntimeError("this network is already in exported form")
        if self.training:
            raise RuntimeError("export() in eval mode: call network.eval() first")
        plain = SteerableCNN(**self.config, exported=True)
        plain.body.load_state_dict(self.body.export().state_dict())  # strict: shapes must match
        plain.head.load_state_dict(self.head.state_dict())
        return plain.eval()


@register_model
def steerable_c8_rotmnist(**kwargs) -> SteerableCNN:
    """C8-steerable CNN (regular fields, 45-degree rotations) for 28x28 MNIST digits rotated
    uniformly in [0, 360)."""
    return SteerableCNN(**{"group": "c8", "input_size": (28, 28), **kwargs})


@register_model
def steerable_d4_rotmnist(**kwargs) -> SteerableCNN:
    """D4-steerable CNN (regular fields, 90-degree rotations and reflections) for 28x28 MNIST
    digits rotated uniformly in [0, 360)."""
    return SteerableCNN(**{"group": "d4", "input_size": (28, 28), **kwargs})
