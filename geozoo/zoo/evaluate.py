"""Recompute a checkpoint's metrics on the held-out test sets its card names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.cli import instantiate_class
from torch import nn

from geozoo.zoo.registry import pretrained_cfg

__all__ = ["evaluate_entry", "held_out_loaders", "validation_loader"]


def held_out_loaders(datamodule: Any) -> dict[str, Any]:
    """``{test set name: loader}`` of a data module (after ``setup("test")``)."""
    datamodule.setup("test")
    if hasattr(datamodule, "test_loaders_by_name"):
        return datamodule.test_loaders_by_name()
    loaders = datamodule.test_dataloader()
    if not isinstance(loaders, list | tuple):
        loaders = [loaders]
    return {f"test{i}" if i else "test": loader for i, loader in enumerate(loaders)}


def validation_loader(datamodule: Any) -> Any:
    """The validation loader of a data module (after ``setup("fit")``)."""
    if not hasattr(datamodule, "val_dataloader"):
        raise TypeError(f"{type(datamodule).__name__} has no val_dataloader() to calibrate on")
    datamodule.setup("fit")
    return datamodule.val_dataloader()


def evaluate_entry(name: str, config: Mapping[str, Any], model: nn.Module) -> dict[str, float]:
    """The metrics ``name`` declares (:attr:`PretrainedCfg.metrics`) of ``model`` on the data
    module in ``config["evaluation"]["data"]`` (``class_path``/``init_args``, instantiated by
    Lightning's ``instantiate_class``)."""
    datamodule = instantiate_class((), dict(config["evaluation"]["data"]))
    return pretrained_cfg(name).metrics(
        model, held_out_loaders(datamodule), int(config.get("num_classes") or 0)
    )
