"""Patch-embedding image transformers from full ViT down to the minimal symmetric-attention model.

The variants follow Bermeitinger et al., "Reducing the Transformer Architecture to a Minimum"
(2024, arXiv 2410.13732): each encoder block is a
:class:`~geozoo.nn.attention.ReducedTransformerBlock` whose MLP, query/key, similarity and
value/output parts are chosen independently. Registered builders (all for 28x28 MNIST digits,
a convolutional stem of two 3x3 stride-2 convolutions (1 -> 8 -> 64 channels, 49 tokens like 4x4
patches), width 64 and depth 6 unless the name says otherwise):

================================  =====  ==========  ==========  =========  =====  ==========
name                              MLP    qk          similarity  vo         heads  parameters
================================  =====  ==========  ==========  =========  =====  ==========
``vit_tiny_mnist``                yes    separate    general     separate   4      307,162
``symformer_nomlp_mnist``         no     separate    general     separate   4      107,866
``symformer_symvo_mnist``         no     collapsed   symmetric   separate   4      108,634
``symformer_wqk_mnist``           no     collapsed   general     collapsed  1      58,714
``symformer_sym_mnist``           no     collapsed   symmetric   collapsed  1      46,618
``symformer_wqk_novo_mnist``      no     collapsed   general     none       1      34,138
``symformer_min1h_mnist``         no     collapsed   symmetric   none       1      22,042
``symformer_min_mnist``           no     collapsed   symmetric   none       4      59,482
================================  =====  ==========  ==========  =========  =====  ==========

The variants with a collapsed ``W^VO`` use one head, as in the paper: with ``H`` heads a
collapsed ``W^QK`` or ``W^VO`` costs ``H N^2`` instead of ``2 N^2`` and stops paying off.
Without ``W^V``/``W^O`` several heads still make sense (each head mixes its own block of
channels with its own attention), and on the 3,600 offline MNIST training digits the 4-head
minimal model fits and generalises clearly better than the single-head one (see
docs/minimal_transformer.md), at 19% of the full model's parameters; ``symformer_min1h_mnist`` is
the paper's single-head minimal model. ``vit_tiny_cifar10`` and ``symformer_min_cifar10`` are the
two ends for 32x32 RGB CIFAR-10 images (4x4 patches).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from geozoo.nn.attention import QKMode, ReducedTransformerBlock, Similarity, VOMode
from geozoo.nn.checks import check_images
from geozoo.zoo.pretrained import InputSpec, PretrainedCfg
from geozoo.zoo.registry import register_model

__all__ = [
    "PatchTransformer",
    "symformer_min1h_mnist",
    "symformer_min_cifar10",
    "symformer_min_mnist",
    "symformer_nomlp_mnist",
    "symformer_sym_mnist",
    "symformer_symvo_mnist",
    "symformer_wqk_mnist",
    "symformer_wqk_novo_mnist",
    "vit_tiny_cifar10",
    "vit_tiny_mnist",
]

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

Pool = Literal["cls", "mean"]
Stem = Literal["patch", "conv"]


class PatchTransformer(nn.Module):
    r"""Vision transformer: image -> tokens (patches or a convolutional stem) -> reduced encoder
    blocks -> head.

    An image of shape ``(C, H, W)`` in [0, 1] is normalised inside the model, turned into
    ``L = (H/p)(W/p)`` tokens of width ``N`` by the stem, optionally preceded by a learned class
    token and added to learned position embeddings, passed through ``depth`` pre-norm
    :class:`~geozoo.nn.attention.ReducedTransformerBlock` s, layer-normalised, pooled (class
    token or mean over tokens) and classified by a linear head.

    Two stems make the same ``L`` tokens:

    * ``"patch"``: each ``p x p`` patch linearly embedded (a stride-``p`` convolution), as in
      ViT (Dosovitskiy et al., ICLR 2021, eq. 1);
    * ``"conv"``: ``log2(p)`` 3x3 stride-2 convolutions with ReLUs between them, ``C -> c -> ...
      -> c -> N`` channels for ``c = stem_channels``: a simplified form (no BatchNorm, constant
      hidden width, no final 1x1 convolution) of the convolutional stem of Xiao et al., "Early
      Convolutions Help Transformers See Better" (NeurIPS 2021), which makes small ViTs train
      far more easily on little data. ``p`` must be a power of two.

    Parameter count (see :meth:`parameter_count`), with ``L' = L + [cls]`` and ``K`` classes::

        S  (stem: C p^2 N + N for patches; sum of 9 c_in c_out + c_out over the convolutions)
        + [cls] N  + [pos] L' N
        + depth * P_block  + 2N (final norm)  + N K + K (head)

    With the patch stem and without position embeddings the network is invariant to
    permutations of the patches, since each block is permutation-equivariant and both poolings
    are symmetric functions (the convolutional stem's windows straddle patch borders).

    Args:
        in_channels: image channels ``C``.
        num_classes: number of logits ``K``.
        input_size: ``(H, W)``; both must be multiples of ``patch_size``. Checked on every call.
        patch_size: patch side ``p``.
        dim: token width ``N``.
        depth: number of encoder blocks.
        heads, qk, similarity, vo, mlp, mlp_ratio: per-block options, see
            :class:`~geozoo.nn.attention.ReducedTransformerBlock`.
        dropout: dropout inside the blocks.
        pool: ``"cls"`` (a learned class token) or ``"mean"`` (average of the tokens).
        pos_embed: learned absolute position embeddings.
        stem: ``"patch"`` (linear patch embedding) or ``"conv"`` (convolutional stem).
        stem_channels: hidden channels ``c`` of the convolutional stem (used when it has two or
            more convolutions, i.e. ``patch_size >= 4``).
        mean, std: per-channel normalisation applied to the input.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: Sequence[int] = (28, 28),
        patch_size: int = 7,
        dim: int = 64,
        depth: int = 6,
        heads: int = 4,
        qk: QKMode = "separate",
        similarity: Similarity = "general",
        vo: VOMode = "separate",
        mlp: bool = True,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        pool: Pool = "cls",
        pos_embed: bool = True,
        stem: Stem = "patch",
        stem_channels: int = 8,
        mean: Sequence[float] = MNIST_MEAN,
        std: Sequence[float] = MNIST_STD,
    ) -> None:
        super().__init__()
        self.input_size = tuple(int(s) for s in input_size)
        if len(self.input_size) != 2 or any(s % patch_size for s in self.input_size):
            raise ValueError(
                f"input_size must be (H, W) with both multiples of patch_size={patch_size}, "
                f"got {tuple(input_size)}"
            )
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        _check_stem(stem, patch_size, stem_channels)
        if len(mean) != in_channels or len(std) != in_channels:
            raise ValueError(
                f"mean and std need one value per channel ({in_channels}), got "
                f"{len(mean)} and {len(std)}"
            )
        self.in_channels, self.num_classes, self.patch_size = in_channels, num_classes, patch_size
        self.dim, self.depth, self.pool = dim, depth, pool
        self.num_patches = (self.input_size[0] // patch_size) * (self.input_size[1] // patch_size)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

        self.stem, self.stem_channels = stem, stem_channels
        self.patch_embed = (
            nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
            if stem == "patch"
            else _conv_stem(_conv_stem_channels(in_channels, dim, patch_size, stem_channels))
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        tokens = self.num_patches + (pool == "cls")
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim)) if pos_embed else None
        self.blocks = nn.ModuleList(
            ReducedTransformerBlock(dim, heads, qk, similarity, vo, mlp, mlp_ratio, dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        for p in (self.cls_token, self.pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    @staticmethod
    def parameter_count(
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: Sequence[int] = (28, 28),
        patch_size: int = 7,
        dim: int = 64,
        depth: int = 6,
        heads: int = 4,
        qk: QKMode = "separate",
        similarity: Similarity = "general",
        vo: VOMode = "separate",
        mlp: bool = True,
        mlp_ratio: float = 4.0,
        pool: Pool = "cls",
        pos_embed: bool = True,
        stem: Stem = "patch",
        stem_channels: int = 8,
        **_: Any,
    ) -> int:
        """Closed-form parameter count (formula in the class docstring); extra keyword
        arguments that do not change it (dropout, mean, std) are accepted and ignored."""
        _check_stem(stem, patch_size, stem_channels)
        n = dim
        tokens = (input_size[0] // patch_size) * (input_size[1] // patch_size) + (pool == "cls")
        block = ReducedTransformerBlock.parameter_count(
            n, heads, qk, similarity, vo, mlp, mlp_ratio
        )
        if stem == "patch":
            stem_params = in_channels * patch_size**2 * n + n
        else:
            chain = _conv_stem_channels(in_channels, n, patch_size, stem_channels)
            stem_params = sum(9 * a * b + b for a, b in itertools.pairwise(chain))
        return (
            stem_params
            + (pool == "cls") * n
            + pos_embed * tokens * n
            + depth * block
            + 2 * n
            + n * num_classes
            + num_classes
        )

    def tokens(self, x: Tensor) -> Tensor:
        """Normalise, embed the patches and add class token / positions: ``(B, L', N)``."""
        check_images(x, self.in_channels, self.input_size)
        z = self.patch_embed((x - self.mean) / self.std).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            z = torch.cat([self.cls_token.expand(z.shape[0], -1, -1), z], dim=1)
        if self.pos_embed is not None:
            z = z + self.pos_embed
        return z

    def features(self, x: Tensor) -> Tensor:
        """The pooled, normalised representation fed to the head: ``(B, N)``."""
        z = self.tokens(x)
        for block in self.blocks:
            z = block(z)
        z = self.norm(z)
        return z[:, 0] if self.pool == "cls" else z.mean(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _check_stem(stem: str, patch_size: int, stem_channels: int) -> None:
    if stem not in ("patch", "conv"):
        raise ValueError(f"stem must be 'patch' or 'conv', got {stem!r}")
    if stem == "conv":
        if not isinstance(patch_size, int) or patch_size < 2 or patch_size & (patch_size - 1):
            raise ValueError(
                "stem='conv' halves the image log2(patch_size) times, so patch_size must be a "
                f"power of two >= 2, got {patch_size}"
            )
        if stem_channels < 1:
            raise ValueError(f"stem_channels must be at least 1, got {stem_channels}")


def _conv_stem_channels(in_channels: int, dim: int, patch_size: int, hidden: int) -> list[int]:
    """Channels ``C, c, ..., c, N`` of the ``log2(patch_size)`` stride-2 convolutions."""
    steps = patch_size.bit_length() - 1
    return [in_channels] + [hidden] * (steps - 1) + [dim]


def _conv_stem(channels: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(itertools.pairwise(channels)):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1))
    return nn.Sequential(*layers)


def _mnist(**kwargs: Any) -> dict[str, Any]:
    return {
        "in_channels": 1,
        "num_classes": 10,
        "input_size": (28, 28),
        "patch_size": 4,
        "stem": "conv",
        "stem_channels": 8,
        "dim": 64,
        "depth": 6,
        "mean": MNIST_MEAN,
        "std": MNIST_STD,
        **kwargs,
    }


def _cifar10(**kwargs: Any) -> dict[str, Any]:
    return {
        "in_channels": 3,
        "num_classes": 10,
        "input_size": (32, 32),
        "patch_size": 4,
        "dim": 128,
        "depth": 6,
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        **kwargs,
    }


#: 28x28 digits / 32x32 colour images in [0, 1], 10 classes.
MNIST_DIGITS = PretrainedCfg(input=InputSpec((1, 28, 28)))
#: the two published MNIST entries: the recipe's augmentation and schedule, stated on the card
MNIST_ENTRY = dataclasses.replace(
    MNIST_DIGITS,
    notes=(
        "Trained on the 3,600 offline training digits with random jitter of every training batch "
        "(rotation within +-10 degrees, shear within +-0.1, x/y scale in [0.9, 1.1], shift up to "
        "+-2 pixels; `MNISTDataModule(train_augment='jitter')`), AdamW (weight decay 0.01) with a "
        "one-cycle schedule (warm-up over 10% of the steps to lr 0.004, then cosine), 20 epochs "
        "of batch 64, no label smoothing (configs/NAME.yaml). `vit_tiny_mnist` and "
        "`symformer_min_mnist` share this recipe and their stem (two 3x3 stride-2 convolutions, "
        "1 -> 8 -> 64 channels, 49 tokens; width 64, depth 6, 4 heads); only the attention "
        "blocks differ. Speed is not recorded on cards: "
        "`python scripts/bench_transformer.py` compares the two models in one run. See "
        "docs/minimal_transformer.md."
    ),
)
CIFAR10_IMAGES = PretrainedCfg(input=InputSpec((3, 32, 32)))

FULL: dict[str, Any] = {"heads": 4, "qk": "separate", "similarity": "general", "vo": "separate"}
MINIMAL: dict[str, Any] = {
    "heads": 4,
    "qk": "collapsed",
    "similarity": "symmetric",
    "vo": "none",
    "mlp": False,
}


@register_model(pretrained_cfg=MNIST_ENTRY)
def vit_tiny_mnist(**kwargs: Any) -> PatchTransformer:
    """Full ViT baseline for 28x28 MNIST: a convolutional stem (two 3x3 stride-2 convolutions,
    49 tokens), width 64, depth 6, 4 heads, MLP ratio 4."""
    return PatchTransformer(**_mnist(**{**FULL, "mlp": True, **kwargs}))


@register_model(pretrained_cfg=MNIST_DIGITS)
def symformer_nomlp_mnist(**kwargs: Any) -> PatchTransformer:
    """``vit_tiny_mnist`` without the MLPs (Bermeitinger et al. reduction 1)."""
    return PatchTransformer(**_mnist(**{**FULL, "mlp": False, **kwargs}))


@register_model(pretrained_cfg=MNIST_DIGITS)
def symformer_symvo_mnist(**kwargs: Any) -> PatchTransformer:
    """No MLP, 4 heads, ``W^QK_h = T_h T_h^T`` with ``W^V``/``W^O`` kept: the minimal model
    before its last reduction, so that an ablation can tell the symmetric similarity's cost from
    that of dropping the value/output projections."""
    return PatchTransformer(**_mnist(**{**MINIMAL, "vo": "separate", **kwargs}))


@register_model(pretrained_cfg=MNIST_DIGITS)
def symformer_wqk_mnist(**kwargs: Any) -> PatchTransformer:
    """No MLP, one head, collapsed ``W^QK`` and ``W^VO`` (2N^2 per layer; reduction 2)."""
    return PatchTransformer(
        **_mnist(**{**MINIMAL, "heads": 1, "similarity": "general", "vo": "collapsed", **kwargs})
    )


@register_model(pretrained_cfg=MNIST_DIGITS)
def symformer_sym_mnist(**kwargs: Any) -> PatchTransformer:
    """No MLP, one head, symmetric ``W^QK = T T^T`` and collapsed ``W^VO`` (reduction 4)."""
    return PatchTransformer(
        **_mnist(**{**MINIMAL, "heads": 1, "similarity": "symmetric", "vo": "collapsed", **kwargs})
    )


@register_model(pretrained_cfg=MNIST_DIGITS)
def symformer_wqk_novo_mnist(**kwargs: Any) -> PatchTransformer:
    """No MLP, one head, collapsed general ``W^QK``, no ``W^V``/``W^O`` (reductions 2 + 3)."""
    return PatchTransformer(**_mnist(**{**MINIMAL, "heads": 1, "similarity": "general", **kwargs}))


@register_model(pretrained_cfg=MNIST_DIGITS)
def symformer_min1h_mnist(**kwargs: Any) -> PatchTransformer:
    """The paper's minimal transformer: no MLP, one head, ``W^QK = T T^T``, no ``W^V``/``W^O``."""
    return PatchTransformer(**_mnist(**{**MINIMAL, "heads": 1, **kwargs}))


@register_model(pretrained_cfg=MNIST_ENTRY)
def symformer_min_mnist(**kwargs: Any) -> PatchTransformer:
    """The minimal transformer with 4 heads: no MLP, ``W^QK_h = T_h T_h^T``, no ``W^V``/``W^O``."""
    return PatchTransformer(**_mnist(**{**MINIMAL, **kwargs}))


@register_model(pretrained_cfg=CIFAR10_IMAGES)
def vit_tiny_cifar10(**kwargs: Any) -> PatchTransformer:
    """Full ViT baseline for 32x32 CIFAR-10: 4x4 patches, width 128, depth 6, 4 heads, MLP."""
    return PatchTransformer(**_cifar10(**{**FULL, "mlp": True, **kwargs}))


@register_model(pretrained_cfg=CIFAR10_IMAGES)
def symformer_min_cifar10(**kwargs: Any) -> PatchTransformer:
    """The minimal transformer for CIFAR-10 (same stem and width as ``vit_tiny_cifar10``)."""
    return PatchTransformer(**_cifar10(**{**MINIMAL, **kwargs}))
