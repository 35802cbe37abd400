"""Recompute a checkpoint's metrics: accuracy and calibration error on named test sets, and
throughput."""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassCalibrationError

__all__ = [
    "build_from_spec",
    "evaluate_classifier",
    "evaluate_entry",
    "measure_throughput",
]


def build_from_spec(spec: Mapping[str, Any]) -> Any:
    """Instantiate ``{"class_path": "pkg.mod.Class", "init_args": {...}}``."""
    module_name, _, attr = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls(**spec.get("init_args", {}))


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module, loaders: Mapping[str, DataLoader], num_classes: int = 10
) -> dict[str, float]:
    """Accuracy (percent) and 15-bin L1 calibration error of ``model`` on each named loader.

    Returns ``{"NAME/acc": ..., "NAME/ece": ...}``.
    """
    was_training = model.training
    model.eval()
    results: dict[str, float] = {}
    for name, loader in loaders.items():
        ece = MulticlassCalibrationError(num_classes, n_bins=15, norm="l1")
        correct = total = 0
        for inputs, targets in loader:
            logits = model(inputs)
            correct += int((logits.argmax(-1) == targets).sum())
            total += len(targets)
            ece.update(logits.float().softmax(-1), targets)
        results[f"{name}/acc"] = round(100.0 * correct / total, 2)
        results[f"{name}/ece"] = round(float(ece.compute()), 4)
    model.train(was_training)
    return results


def evaluate_entry(config: Mapping[str, Any], model: nn.Module) -> dict[str, float]:
    """Recompute the dataset metrics of a checkpoint from the evaluation data spec in its config."""
    datamodule = build_from_spec(config["evaluation"]["data"])
    datamodule.setup("test")
    return evaluate_classifier(
        model, datamodule.test_loaders_by_name(), config.get("num_classes", 10)
    )


def measure_throughput(
    model: nn.Module,
    input_size: tuple[int, ...],
    batch_size: int = 32,
    train: bool = False,
    seconds: float = 3.0,
    warmup: int = 2,
) -> float:
    """Images per second of inference (``train=False``) or of one Adam training step with
    cross-entropy on random inputs; runs ``warmup`` untimed steps, then as many as fit in
    ``seconds`` (at least three)."""
    inputs = torch.rand(batch_size, *input_size)
    targets = torch.randint(0, 10, (batch_size,))
    if train:
        model = model.train()
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
    else:
        model = model.eval()

        def step() -> None:
            with torch.no_grad():
                model(inputs)

    for _ in range(warmup):
        step()
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < seconds:
        step()
        count += 1
    return batch_size * count / (time.perf_counter() - start)
