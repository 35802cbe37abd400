"""Angular-margin classification heads for face recognition: ArcFace, CosFace and AdaFace.

Each head holds one centre per identity as ``weight`` of shape ``(num_classes, embedding_dim)``
and scores an embedding by the cosine of its angle to every centre,
``cos(theta_j) = <z / |z|, w_j / |w_j|>``. During training the target class gets a margin so
that identities must be separated by more than it:

* ArcFace (Deng et al., CVPR 2019, Eq. 3): ``s * cos(theta_y + m)``;
* CosFace (Wang et al., CVPR 2018, Eq. 4): ``s * (cos(theta_y) - m)``;
* AdaFace (Kim et al., CVPR 2022, Eq. 8-10): ``s * (cos(theta_y - m z) - (m z + m))`` with
  ``z`` the feature norm standardised by running batch statistics (image quality proxy).

``head(embeddings, labels)`` returns these scaled logits (feed them to cross-entropy);
``head(embeddings)`` returns ``s * cos(theta)`` for every class (evaluation). Half-precision
inputs are computed and returned in float32, also under autocast: ``s = 64`` times a bf16
cosine would lose the margin in rounding, and ``exp`` of such logits overflows half precision.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AdaFaceHead", "ArcFaceHead", "CosFaceHead", "MarginHead"]

#: ``1 - cos^2`` below this is taken as exactly 0 (sin theta = 0 at theta = 0 or pi), so the
#: square root is never differentiated at 0 (its derivative there is infinite).
_SIN_FLOOR = 1e-12


def _safe_sin(cosine: Tensor) -> Tensor:
    """``sin(theta) = sqrt(1 - cos(theta)^2)`` for theta in [0, pi] with finite gradients at
    cos = +-1 (where it is 0 and its gradient is taken as 0)."""
    one_minus = (1.0 - cosine) * (1.0 + cosine)  # (1-c)(1+c): accurate near c = +-1
    positive = one_minus > _SIN_FLOOR
    root = one_minus.clamp_min(_SIN_FLOOR).sqrt()
    return torch.where(positive, root, torch.zeros_like(root))


class MarginHead(nn.Module):
    """The shared part of the margin heads: class centres, cosines, scaling and label checks.

    Subclasses implement :meth:`target_logit`, the (unscaled) margin-modified cosine of the
    target class.

    Args:
        embedding_dim: size of the embeddings.
        num_classes: number of training identities.
        s: the scale (inverse temperature) applied to every cosine.
    """

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 64.0) -> None:
        super().__init__()
        if embedding_dim < 1 or num_classes < 1:
            raise ValueError(
                "embedding_dim and num_classes must be positive, got "
                f"{embedding_dim} and {num_classes}"
            )
        if not s > 0:
            raise ValueError(f"scale s must be positive, got {s}")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.s = float(s)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, embeddings: Tensor) -> Tensor:
        """``cos(theta)`` between every embedding and every class centre, ``(N, num_classes)``,
        clamped to [-1, 1] and in float32 for half-precision inputs."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"expected embeddings of shape (N, {self.embedding_dim}), "
                f"got {tuple(embeddings.shape)}"
            )
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        # under autocast (Lightning's "bf16-mixed") the matmul would run, and return, in half
        # precision whatever the dtype of its inputs
        with torch.autocast(embeddings.device.type, enabled=False):
            z = F.normalize(embeddings.to(dtype), dim=1)
            w = F.normalize(self.weight.to(dtype), dim=1)
            return (z @ w.T).clamp(-1.0, 1.0)

    def target_logit(self, cosine: Tensor, embeddings: Tensor) -> Tensor:
        """The margin-modified cosine of the target class, given its cosine ``(N,)``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        cosine = self.cosine(embeddings)
        if labels is None:
            return self.s * cosine
        if labels.shape != (len(embeddings),) or labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"expected integer labels of shape ({len(embeddings)},), got "
                f"{labels.dtype} of shape {tuple(labels.shape)}"
            )
        if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), got range "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        index = labels.long()[:, None]
        target = self.target_logit(cosine.gather(1, index)[:, 0], embeddings)
        return self.s * cosine.scatter(1, index, target[:, None])

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, s={self.s}"


class ArcFaceHead(MarginHead):
    """ArcFace's additive angular margin (Deng et al., CVPR 2019, Eq. 3): the target logit is
    ``s * cos(theta_y + m)``, computed as ``cos(theta) cos(m) - sin(theta) sin(m)``.

    ``cos(theta + m)`` stops decreasing once ``theta + m`` passes pi, which would reward a
    *larger* angle to the own centre. Two standard fixes (both from the authors' reference code):

    * ``easy_margin=True``: apply the margin only where ``cos(theta) > 0``, else use the plain
      cosine;
    * ``easy_margin=False`` (default): where ``theta > pi - m`` (``cos(theta) <= cos(pi - m)``)
      use the CosFace-like fallback ``cos(theta) - m sin(m)`` (written ``sin(pi - m) * m`` in
      the reference), which is continuous at ``theta = pi - m`` up to first order and keeps
      decreasing in theta.

    Args:
        embedding_dim: size of the embeddings.
        num_classes: number of training identities.
        s: scale (default 64, the paper's).
        m: angular margin in radians (default 0.5, the paper's).
        easy_margin: the switch described above.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_dim, num_classes, s)
        if not 0.0 <= m < math.pi / 2:
            raise ValueError(f"ArcFace margin m must be in [0, pi/2) radians, got {m}")
        self.m = float(m)
        self.easy_margin = bool(easy_margin)

    def target_logit(self, cosine: Tensor, embeddings: Tensor) -> Tensor:
        m = self.m
        shifted = cosine * math.cos(m) - _safe_sin(cosine) * math.sin(m)
        if self.easy_margin:
            return torch.where(cosine > 0, shifted, cosine)
        return torch.where(cosine > math.cos(math.pi - m), shifted, cosine - math.sin(m) * m)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.m}, easy_margin={self.easy_margin}"


class CosFaceHead(MarginHead):
    """CosFace's additive cosine margin (Wang et al., CVPR 2018, Eq. 4): the target logit is
    ``s * (cos(theta_y) - m)``.

    Args:
        embedding_dim: size of the embeddings.
        num_classes: number of training identities.
        s: scale (default 64).
        m: cosine margin (default 0.35, the paper's; insightface uses 0.4).
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, s: float = 64.0, m: float = 0.35
    ) -> None:
        super().__init__(embedding_dim, num_classes, s)
        if not 0.0 <= m < 1.0:
            raise ValueError(f"CosFace margin m must be in [0, 1), got {m}")
        self.m = float(m)

    def target_logit(self, cosine: Tensor, embeddings: Tensor) -> Tensor:
        return cosine - self.m

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.m}"


class AdaFaceHead(MarginHead):
    """AdaFace's quality-adaptive margin (Kim, Jain and Liu, CVPR 2022, Eq. 8-10).

    The feature norm ``|z|`` (a proxy for image quality) is standardised by running batch
    statistics, ``zeta = clip(h (|z| - mu) / (sigma + eps), -1, 1)``, and sets the margin of the
    target class: ``s * (cos(clip(theta_y - m zeta, eps, pi - eps)) - (m zeta + m))``. High-norm
    (easy, high-quality) samples get an ArcFace-like angular margin, low-norm ones a
    CosFace-like one. The norm carries no gradient through ``zeta`` (it is detached).

    ``mu`` and ``sigma`` are buffers ``batch_mean`` and ``batch_std`` (checkpointed), updated in
    training mode by an exponential moving average with rate ``momentum`` *before* they are used
    on the batch (as in the paper's code). Under ``torch.distributed`` the batch statistics are
    those of the global batch (all-reduced), so every rank holds the same buffers.

    Args:
        embedding_dim: size of the embeddings.
        num_classes: number of training identities.
        s: scale (default 64).
        m: margin (default 0.4).
        h: concentration of ``zeta`` (default 0.333: about 99 % of norms land in [-1, 1]).
        momentum: update rate of the running statistics (the paper's ``t_alpha`` = 0.01).
        eps: angle clip and division guard (default 1e-3, the paper's).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.4,
        h: float = 0.333,
        momentum: float = 0.01,
        eps: float = 1e-3,
    ) -> None:
        super().__init__(embedding_dim, num_classes, s)
        if not 0.0 <= m < 1.0 or not h > 0 or not 0.0 < momentum <= 1.0 or not eps > 0:
            raise ValueError(
                "expected 0 <= m < 1, h > 0, 0 < momentum <= 1 and eps > 0, got "
                f"m={m}, h={h}, momentum={momentum}, eps={eps}"
            )
        self.m, self.h, self.momentum, self.eps = float(m), float(h), float(momentum), float(eps)
        # initial values of the paper's code: a wide spread, so early margins stay near m
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    @torch.no_grad()
    def _update_statistics(self, norms: Tensor) -> None:
        # float64 sums: the variance is a difference of sums of squares, which float32 loses
        # for norms much larger than their spread
        norms = norms.double()
        stats = torch.stack([norms.sum(), (norms * norms).sum(), norms.new_tensor(len(norms))])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(stats)
        total, squares, count = stats
        mean = total / count
        # unbiased std of the (global) batch, as torch.std
        var = ((squares - count * mean * mean) / (count - 1).clamp_min(1)).clamp_min(0)
        rate = self.momentum
        self.batch_mean.mul_(1 - rate).add_(rate * mean.to(self.batch_mean.dtype))
        self.batch_std.mul_(1 - rate).add_(rate * var.sqrt().to(self.batch_std.dtype))

    def margin_scaler(self, embeddings: Tensor) -> Tensor:
        """``zeta`` of each embedding, ``(N,)`` in [-1, 1] (no gradient)."""
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        norms = embeddings.detach().to(dtype).norm(dim=1).clamp(0.001, 100.0)
        if self.training:
            self._update_statistics(norms)
        zeta = (norms - self.batch_mean.to(dtype)) / (self.batch_std.to(dtype) + self.eps)
        return (zeta * self.h).clamp(-1.0, 1.0)

    def target_logit(self, cosine: Tensor, embeddings: Tensor) -> Tensor:
        zeta = self.margin_scaler(embeddings).to(cosine.dtype)
        theta = cosine.clamp(-1.0 + self.eps, 1.0 - self.eps).acos()
        theta = (theta - self.m * zeta).clamp(self.eps, math.pi - self.eps)
        return theta.cos() - (self.m * zeta + self.m)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m={self.m}, h={self.h}, momentum={self.momentum}"
