"""Embedding learning for verification: a backbone trained through a margin head, evaluated on
pairs of held-out identities (face recognition: ArcFace, CosFace, AdaFace, SymFace)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAUROC

from geozoo.metrics.verification import TARAtFAR, VerificationAccuracy
from geozoo.objectives.base import Objective
from geozoo.objectives.symface import MarginCrossEntropy
from geozoo.tasks.base import ObjectiveTask, default_adam

__all__ = ["EmbeddingTask"]


class EmbeddingTask(ObjectiveTask):
    """Train ``network`` (images -> embeddings) with a margin ``head`` and weighted objectives;
    evaluate verification on pairs.

    Training batches are ``(images, labels)`` or ``(images, labels, landmarks)``; the task hands
    its head (``"head"``) and any landmarks (``"landmarks"``) to the objectives in
    ``StepContext.extras`` (:class:`geozoo.objectives.MarginCrossEntropy` is the default
    objective; add e.g. :class:`geozoo.objectives.SplitFaceSymmetry`). Validation and test
    batches are pairs ``((images_a, images_b), same)``, scored by the cosine of their
    embeddings: ``{prefix}/acc`` (10-fold verification accuracy), ``{prefix}/tar`` (TAR at
    ``far``) and ``{prefix}/auc`` (torchmetrics' ``BinaryAUROC``) are logged. The head is used
    only in training; the network alone is what a zoo entry publishes.

    Args:
        network: images -> embeddings ``(N, D)``.
        head: a margin head over the training identities (e.g. ``geozoo.nn.ArcFaceHead``).
        objectives: the training objectives (default ``[MarginCrossEntropy()]``).
        optimizer: optimizer factory (default Adam, lr 1e-3); the head's centres are trained
            with the network.
        lr_scheduler: optional scheduler factory (there is no ``val/loss``: pairs have none, so
            use a schedule, not ``ReduceLROnPlateau``).
        num_folds: folds of the verification accuracy.
        far: false accept rate of the logged TAR.
    """

    default_objectives = (MarginCrossEntropy,)

    def __init__(
        self,
        network: nn.Module,
        head: nn.Module,
        objectives: Sequence[Objective] | None = None,
        optimizer: OptimizerCallable = default_adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        num_folds: int = 10,
        far: float = 1e-3,
    ) -> None:
        super().__init__(network, objectives, optimizer, lr_scheduler)
        if not isinstance(head, nn.Module):
            raise TypeError(f"head must be an nn.Module, got {type(head).__name__}")
        self.head = head
        self.num_folds, self.far = num_folds, far
        self.val_metrics = self._metrics()
        self.test_metrics = nn.ModuleList()

    def _metrics(self) -> MetricCollection:
        return MetricCollection(
            {
                "acc": VerificationAccuracy(self.num_folds),
                "tar": TARAtFAR(self.far),
                "auc": BinaryAUROC(),
            }
        )

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        images, labels, *rest = batch
        extras: dict[str, Any] = {"head": self.head}
        if rest:
            extras["landmarks"] = rest[0]
        loss, _, _ = self.objectives_step((images, labels), "train", extras=extras)
        return loss

    def pair_scores(self, batch: Any) -> tuple[Tensor, Tensor]:
        """Cosine similarity of each pair's embeddings, and the same-identity flags."""
        (first, second), same = batch
        a, b = self(first).float(), self(second).float()
        return F.cosine_similarity(a, b, dim=1), same.long()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        scores, same = self.pair_scores(batch)
        self.val_metrics.update(scores, same)
        self.log_dict({f"val/{k}": m for k, m in self.val_metrics.items()}, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.log_test_metrics(dataloader_idx, *self.pair_scores(batch))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        inputs = batch[0] if isinstance(batch, list | tuple) else batch
        if isinstance(inputs, list | tuple):  # a pair batch: embed its first images
            inputs = inputs[0]
        return self(inputs)
