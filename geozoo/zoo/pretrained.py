"""What a registered builder declares about its zoo entry (the way timm keeps a pretrained
config per model): the input it takes, how its checkpoints are evaluated, and the optional step
that turns the trained network into the published one.

Every difference between kinds of entries (images or point clouds, classification or not, an
escnn network exported to plain torch) is data or a hook here, so the one publishing path in
:mod:`geozoo.zoo.publish` never looks at an entry's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from geozoo.nn.checks import InputSpec

__all__ = [
    "ExtraForm",
    "InputSpec",
    "PretrainedCfg",
    "Published",
    "classification_metrics",
    "embedding_mirror_distance",
    "regression_metrics",
    "verification_metrics",
]


@dataclass(frozen=True)
class ExtraForm:
    """Another form of the same trained network, shipped next to the published weights.

    Attributes:
        name: the form's key in ``config.json`` (``forms.NAME``), e.g. ``"escnn"``.
        arguments: builder arguments that select it, on top of the published ones (e.g.
            ``{"exported": False}``); ``create_model(name, pretrained=True, **arguments)``
            loads this form.
        module: the network in that form, with the state to ship.
        description: one line for the card.
    """

    name: str
    arguments: dict[str, Any]
    module: nn.Module
    description: str = ""


@dataclass
class Published:
    """What an :attr:`PretrainedCfg.export` hook returns.

    Attributes:
        network: the network whose weights become ``model.safetensors``.
        arguments: builder arguments that rebuild ``network`` (merged over the recipe's).
        forms: other shipped forms (their files are named ``{form.name}_weights.safetensors``).
        info: extra JSON-ready facts for ``config.json`` (e.g. the export's measured logit gap).
    """

    network: nn.Module
    arguments: dict[str, Any] = field(default_factory=dict)
    forms: list[ExtraForm] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


Metrics = Callable[[nn.Module, Mapping[str, DataLoader], int], dict[str, float]]


@torch.no_grad()
def classification_metrics(
    model: nn.Module, loaders: Mapping[str, DataLoader], num_classes: int
) -> dict[str, float]:
    """Top-1 accuracy and expected calibration error (15 equal-width bins, L1; Guo et al. 2017,
    Eq. 3) of ``model`` on each named loader, both from torchmetrics and both in percent
    (rounded to 0.01): ``{"NAME/acc": ..., "NAME/ece": ...}``."""
    from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

    was_training = model.training
    model.eval()
    results: dict[str, float] = {}
    for name, loader in loaders.items():
        accuracy = MulticlassAccuracy(num_classes, average="micro")
        ece = MulticlassCalibrationError(num_classes, n_bins=15, norm="l1")
        for inputs, targets in loader:
            probs = model(inputs).float().softmax(-1)
            accuracy.update(probs, targets)
            ece.update(probs, targets)
        results[f"{name}/acc"] = round(100.0 * float(accuracy.compute()), 2)
        results[f"{name}/ece"] = round(100.0 * float(ece.compute()), 2)
    model.train(was_training)
    return results


@torch.no_grad()
def regression_metrics(
    model: nn.Module, loaders: Mapping[str, DataLoader], num_classes: int = 0
) -> dict[str, float]:
    """Mean squared error over all output entries on each named loader (torchmetrics),
    ``{"NAME/mse": ...}``; ``num_classes`` is ignored."""
    from torchmetrics import MeanSquaredError

    was_training = model.training
    model.eval()
    results: dict[str, float] = {}
    for name, loader in loaders.items():
        mse = MeanSquaredError()
        for inputs, targets in loader:
            mse.update(model(inputs).reshape(-1), targets.reshape(-1))
        results[f"{name}/mse"] = float(f"{float(mse.compute()):.4g}")
    model.train(was_training)
    return results


Measure = Callable[[nn.Module, Mapping[str, Any], Mapping[str, DataLoader]], dict[str, float]]


@dataclass(frozen=True)
class PretrainedCfg:
    """The zoo entry a builder declares (``@register_model(pretrained_cfg=...)``).

    Attributes:
        input: the input spec; the registry test builds every model and runs it on
            :meth:`InputSpec.example`.
        metrics: ``(model, {test set: loader}, num_classes) -> {"SET/METRIC": value}`` computed
            on the held-out test sets of the recipe's data module (default: accuracy and ECE,
            in percent).
        primary_metric: the metric that ranks seeds (the published one is the median);
            default the first ``*/acc`` that ``metrics`` returns.
        export: ``(trained network in eval mode) -> Published``; default: publish as trained.
        temperature_layer: for a classifier, the ``nn.Linear`` submodule that computes the
            logits (e.g. ``"head.4"``). Publishing then fits a temperature on the recipe's
            validation data and folds it into that layer (:mod:`geozoo.zoo.calibrate`), so the
            published logits are calibrated and every prediction is unchanged; the card records
            the temperature and the validation NLL and ECE before and after.
        measure: ``(published network, its builder arguments, {test set: loader}) ->
            {name: value}`` for the card's ``measurements`` (machine-independent numbers only,
            e.g. equivariance errors; never timings: those belong to ``scripts/bench_*.py``).
        description, data_description, notes: text for the card (the builder's docstring is
            the default description).
    """

    input: InputSpec
    metrics: Metrics = classification_metrics
    primary_metric: str | None = None
    export: Callable[[nn.Module], Published] | None = None
    temperature_layer: str | None = None
    measure: Measure | None = None
    description: str = ""
    data_description: str = ""
    notes: str = ""

    def pick_primary(self, metrics: Mapping[str, float]) -> str:
        if self.primary_metric is not None:
            if self.primary_metric not in metrics:
                raise KeyError(
                    f"primary_metric {self.primary_metric!r} is not among the measured "
                    f"metrics {sorted(metrics)}"
                )
            return self.primary_metric
        for key in metrics:
            if key.endswith("/acc"):
                return key
        return next(iter(metrics))


@torch.no_grad()
def verification_metrics(
    model: nn.Module, loaders: Mapping[str, DataLoader], num_classes: int = 0
) -> dict[str, float]:
    """Face verification of an embedding ``model`` on loaders of pairs
    ``((images_a, images_b), same)`` scored by cosine similarity, in percent (rounded to 0.01):
    ``{"NAME/acc": 10-fold accuracy, "NAME/tar@far1e-3": TAR at FAR 1e-3, "NAME/auc": ROC AUC
    (torchmetrics' BinaryAUROC)}``; ``num_classes`` is ignored."""
    from torchmetrics.classification import BinaryAUROC

    from geozoo.metrics.verification import TARAtFAR, VerificationAccuracy, pair_scores

    results: dict[str, float] = {}
    for name, loader in loaders.items():
        scores, same = pair_scores(model, loader)
        for key, metric in (
            ("acc", VerificationAccuracy(10)),
            ("tar@far1e-3", TARAtFAR(1e-3)),
            ("auc", BinaryAUROC()),
        ):
            metric.update(scores, same.long() if key == "auc" else same)
            results[f"{name}/{key}"] = round(100.0 * float(metric.compute()), 2)
    return results


@torch.no_grad()
def embedding_mirror_distance(
    model: nn.Module, arguments: Mapping[str, Any], loaders: Mapping[str, DataLoader]
) -> dict[str, float]:
    """Mean cosine distance ``1 - cos(f(x), f(flip(x)))`` between the embedding of each
    held-out face (the first image of every pair) and that of its mirror image."""
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    results: dict[str, float] = {}
    for name, loader in loaders.items():
        distances = [
            1 - F.cosine_similarity(model(first).float(), model(first.flip(-1)).float(), dim=1)
            for (first, _), _ in loader
        ]
        results[f"{name}/mirror_distance"] = float(f"{float(torch.cat(distances).mean()):.4g}")
    model.train(was_training)
    return results
