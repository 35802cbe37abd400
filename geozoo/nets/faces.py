"""A small face embedding network, and the zoo's face entry trained with SymFace."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from geozoo.nn.checks import check_images
from geozoo.zoo.pretrained import (
    InputSpec,
    PretrainedCfg,
    embedding_mirror_distance,
    verification_metrics,
)
from geozoo.zoo.registry import register_model

__all__ = ["FaceEmbeddingNet", "symface_arcface_synthfaces"]


class FaceEmbeddingNet(nn.Module):
    """Conv-BN-PReLU stages, global average pooling, and a linear + batch-norm embedding (the
    "BN-FC-BN" output of ArcFace's backbones, Deng et al. 2019, Sec. 3.2, in small).

    Global pooling makes the network accept half-width images (``W // 2``) as well, which
    :class:`geozoo.objectives.SplitFaceSymmetry` embeds; any other size is refused. Takes float
    images in [0, 1]; normalisation (to [-1, 1]) happens inside.

    Args:
        in_channels: image channels.
        embedding_dim: size of the embedding.
        widths: channels of each stage; each stage has two 3x3 convolutions, the first with
            stride 2 (except in the first stage).
        input_size: ``(H, W)`` of a full face.
    """

    def __init__(
        self,
        in_channels: int = 3,
        embedding_dim: int = 64,
        widths: Sequence[int] = (16, 32, 64),
        input_size: Sequence[int] = (32, 32),
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.input_size = tuple(input_size)
        layers: list[nn.Module] = []
        previous = in_channels
        for index, width in enumerate(widths):
            for repeat in range(2):
                stride = 2 if index > 0 and repeat == 0 else 1
                layers += [
                    nn.Conv2d(previous, width, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.PReLU(width),
                ]
                previous = width
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(previous, embedding_dim, bias=False),
            nn.BatchNorm1d(embedding_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        height, width = self.input_size
        check_images(x, self.in_channels)
        if x.shape[-2] != height or x.shape[-1] not in (width, width // 2):
            raise ValueError(
                f"expected faces of shape (N, {self.in_channels}, {height}, {width}) or half "
                f"faces (N, {self.in_channels}, {height}, {width // 2}), got {tuple(x.shape)}"
            )
        return self.embedding(self.features(2 * x - 1))


SYNTHFACES = PretrainedCfg(
    input=InputSpec((3, 32, 32)),
    metrics=verification_metrics,
    primary_metric="synthfaces/acc",
    measure=embedding_mirror_distance,
    data_description=(
        "SYNTHETIC faces only (geozoo.data.SyntheticFacesDataModule: procedural 32x32 renders "
        "of parameter-vector identities under random yaw, light, expression and noise); not "
        "trained or tested on real faces. Test: verification pairs of 100 held-out identities."
    ),
    notes=(
        "Embeddings for face verification (cosine similarity), not class logits. Trained on "
        "synthetic faces: do not expect it to recognise real people. Samples of the training "
        "data (printed by `python scripts/plot_synthetic_faces.py`):\n\n"
        "![synthetic faces](../../docs/symface_synthetic_faces.png)"
    ),
)


@register_model(pretrained_cfg=SYNTHFACES)
def symface_arcface_synthfaces(**kwargs) -> FaceEmbeddingNet:
    """Face embeddings from ArcFace + SymFace's split-face loss, on synthetic 32x32 faces.

    SymFace: Prakash et al., arXiv 2409.11816. The first paragraph is the card's description.
    """
    return FaceEmbeddingNet(
        **{
            "in_channels": 3,
            "embedding_dim": 64,
            "widths": (8, 16, 32),
            "input_size": (32, 32),
            **kwargs,
        }
    )
