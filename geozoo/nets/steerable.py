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

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from geozoo.groups import Cyclic, Dihedral, get_group
from geozoo.nn.checks import check_images
from geozoo.nn.steerable import FiberPool, SteerableConvBlock, field_type, import_escnn
from geozoo.nn.steerable import steerable_gspace as _gspace
from geozoo.zoo.pretrained import ExtraForm, InputSpec, PretrainedCfg, Published
from geozoo.zoo.registry import register_model

__all__ = [
    "SteerableCNN",
    "group_order",
    "measure_invariance",
    "publish_exported",
    "steerable_c8_rotmnist",
    "steerable_d4_rotmnist",
]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def group_order(group: str | Cyclic) -> int:
    """Order of C_N (N) or D_N (2N), from a name (``"c8"``, ``"d4"``) or a value, without
    importing escnn."""
    value = get_group(group)
    if not isinstance(value, Cyclic):  # Dihedral is a Cyclic subclass
        raise ValueError(f"group must be 'cN' or 'dN' with N >= 1, got {group!r}")
    return value.order


def _own_basis_expansions(body: nn.Module) -> None:
    """Give ``body`` its own copies of its kernel-basis modules.

    escnn keeps one module per kernel basis for the whole process (and so for every network
    built in it); loading a shipped basis into a shared one would change other networks.
    """
    for module in list(body.modules()):
        for name, child in list(module.named_children()):
            if name.startswith("block_expansion_"):
                module._modules[name] = copy.deepcopy(child)


def _check_pooled_sizes(input_size: Sequence[int], padding: int, pools: Sequence[bool]) -> None:
    """2x2 pooling of an odd size drops the last row and column, so a quarter turn no longer
    commutes with it: refuse such a network instead of publishing one that is not invariant."""
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    h, w = (int(s) + 2 * padding for s in input_size)
    if h != w:
        raise ValueError(f"rotations need a square input, got input_size {tuple(input_size)}")
    for index, pool in enumerate(pools):
        if pool and h % 2:
            raise ValueError(
                f"block {index} pools a {h}x{h} map: 2x2 pooling of an odd size drops its last "
                "row and column, which breaks the rotation symmetry; choose padding so that "
                f"every pooled size is even (input {tuple(input_size)}, padding {padding})"
            )
        h = h // 2 if pool else h


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
        padding: zeros added on each side after masking, so that every 2x2 pooling halves an
            even size (an odd one would break the rotation symmetry; checked when built).
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
        padding: int = 0,
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
        _check_pooled_sizes(input_size, padding, pools)
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
            "padding": padding,
        }
        self.order = group_order(group)
        self.in_channels, self.input_size = in_channels, tuple(input_size)
        self.mean, self.std, self.exported, self.padding = mean, std, exported, padding
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
        body = escnn.nn.SequentialModule(*layers)
        _own_basis_expansions(body)
        return body, in_type

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
        if self.padding:  # zeros, like the masked background
            x = nn.functional.pad(x, [self.padding] * 4)
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


#: The largest logit gap allowed between the escnn form and its export.
EXPORT_TOLERANCE = 1e-4


def publish_exported(network: SteerableCNN) -> Published:
    """The zoo's export step: publish the plain-torch form and ship the escnn form beside it.

    The escnn form's file holds its whole state, including the kernel bases escnn sampled
    (``sampled_basis``) on the publishing machine: escnn solves for those bases numerically and
    the result depends on the BLAS kernels of the machine (see docs/steerable_e3nn.md), so a
    basis recomputed elsewhere may not fit the learned coefficients. Loading the shipped state
    overwrites the local basis, so ``create_model(name, pretrained=True, exported=False)`` is
    the published network on any machine.
    """
    plain = network.export()
    probe = InputSpec((network.in_channels, *network.input_size)).example(4)
    with torch.no_grad():
        gap = float((network(probe) - plain(probe)).abs().max())
    if gap > EXPORT_TOLERANCE:
        raise RuntimeError(
            f"the exported network differs from the escnn network by {gap:.2e} in the logits "
            f"(allowed {EXPORT_TOLERANCE:g})"
        )
    from geozoo.nn.steerable import basis_backend

    return Published(
        plain,
        arguments={"exported": True},
        forms=[
            ExtraForm(
                "escnn",
                {"exported": False},
                network,
                "the escnn form for fine-tuning, with the kernel bases it was trained with",
            )
        ],
        info={"export_max_abs_logit_gap": float(f"{gap:.3g}"), "basis_backend": basis_backend()},
    )


def measure_invariance(
    network: nn.Module, arguments: Mapping[str, Any], loaders: Mapping[str, DataLoader]
) -> dict[str, float]:
    """Measured invariance errors of the logits on 64 digits of the first test set: on the
    pixel-exact elements the logits are invariant to (rotations by multiples of 90 degrees, and
    the flips for D_N unless its head is restricted to rotations), in float32 and float64, and
    on resampled rotations by 22.5, 45 and 135 degrees."""
    from geozoo.testing import d4_elements, equivariance_error, rot90, rotate

    group = str(arguments.get("group", "c8")).lower()
    order = group_order(group)
    dihedral = isinstance(get_group(group), Dihedral)
    rotations = order // 2 if dihedral else order
    reflections = dihedral and arguments.get("invariance", "group") == "group"
    if rotations % 4:
        raise ValueError(f"{group}: no rotation by 90 degrees in the group to measure exactly")
    exact = d4_elements() if reflections else [rot90(k) for k in (1, 2, 3)]
    x = next(iter(next(iter(loaders.values()))))[0][:64]
    results: dict[str, float] = {}
    for dtype, tag in ((torch.float32, "float32"), (torch.float64, "float64")):
        error = equivariance_error(network, x, exact, dtype=dtype)
        results[f"logit_rel_error_exact_{tag}_max"] = float(f"{error.max:.3g}")
    error = equivariance_error(network, x, [rotate(a) for a in (22.5, 45.0, 135.0)])
    results["logit_rel_error_rotate_22.5_45_135_float64_max"] = float(f"{error.max:.3g}")
    results["logit_rel_error_rotate_22.5_45_135_float64_mean"] = float(f"{error.mean:.3g}")
    return results


_ROTATED_DIGITS = PretrainedCfg(
    input=InputSpec((1, 28, 28)),
    primary_metric="rotated/acc",
    export=publish_exported,
    measure=measure_invariance,
    notes="Stored in exported form: plain Conv2d/BatchNorm2d/ReLU/MaxPool2d layers, so loading "
    "needs neither escnn nor any kernel-basis computation. "
    "`create_model(name, pretrained=True, exported=False)` loads the escnn form for "
    "fine-tuning from `escnn_weights.safetensors`, which holds its whole state including the "
    "sampled kernel bases, so it is the same network on every machine. `golden` in "
    "config.json holds the logits of a seeded input, which tests compare against both forms.",
)


#: the published rotated-MNIST entries' network (escnn form; ``exported=True`` compiles it)
ROTMNIST_ARCHITECTURE: dict = {
    "input_size": (28, 28),
    "widths": (8, 16, 32, 64),
    "kernel_sizes": (5, 3, 3, 3),
    "pools": (True, True, True, False),
    "padding": 2,
}


@register_model(pretrained_cfg=_ROTATED_DIGITS)
def steerable_c8_rotmnist(**kwargs) -> SteerableCNN:
    """C8-steerable CNN (regular fields, 45-degree rotations) for 28x28 MNIST digits rotated
    uniformly in [0, 360)."""
    return SteerableCNN(**{**ROTMNIST_ARCHITECTURE, "group": "c8", **kwargs})


@register_model(pretrained_cfg=_ROTATED_DIGITS)
def steerable_d4_rotmnist(**kwargs) -> SteerableCNN:
    """D4-steerable CNN (regular fields, 90-degree rotations and reflections) for 28x28 MNIST
    digits rotated uniformly in [0, 360)."""
    return SteerableCNN(
        **{**ROTMNIST_ARCHITECTURE, "group": "d4", "invariance": "rotations", **kwargs}
    )
