"""``create_model``: one factory for every architecture, with or without pretrained weights."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from geozoo.nn.checks import InputSpec, attach_input_check
from geozoo.zoo.hub import resolve_checkpoint
from geozoo.zoo.registry import model_entrypoint
from geozoo.zoo.weights import load_config, load_verified_state_dict

__all__ = ["card", "create_model"]


def card(name: str, weights: str | os.PathLike | None = None) -> dict[str, Any]:
    """The checkpoint metadata (``config.json``) of ``name``: arguments, input spec, sha256,
    metrics and the commands that produced them."""
    model_entrypoint(name)  # unknown names fail with the list of known ones
    return load_config(resolve_checkpoint(name, weights))


def create_model(
    name: str,
    pretrained: bool = False,
    weights: str | os.PathLike | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build the registered model ``name``.

    Args:
        name: a name from :func:`geozoo.list_models`.
        pretrained: load the zoo's published weights (checked against their sha256).
        weights: load weights from elsewhere instead: a local checkpoint folder, an
            ``http(s)://`` folder URL, or ``hf://OWNER/REPO@REVISION``. Implies ``pretrained``.
        **overrides: keyword arguments passed to the builder, on top of the checkpoint's own.

    Returns:
        The model, in eval mode when weights were loaded. Float inputs are cast to the model's
        dtype, and with weights, checked against the card's shape, value range and finiteness on
        every call (:func:`geozoo.nn.checks.attach_input_check`).
    """
    builder = model_entrypoint(name)
    if not pretrained and weights is None:
        return attach_input_check(builder(**overrides))
    folder = resolve_checkpoint(name, weights)
    config = load_config(folder)
    if config.get("architecture", name) != name:
        raise ValueError(
            f"checkpoint in {folder} is for architecture {config['architecture']!r}, not {name!r}"
        )
    arguments = config.get("arguments", {})
    head = arguments.get("num_classes", config.get("num_classes"))
    if "num_classes" in overrides and head is not None and overrides["num_classes"] != head:
        raise ValueError(
            f"the pretrained head of {name!r} has {head} classes, got num_classes="
            f"{overrides['num_classes']}: load it with {head} classes and replace its last layer, "
            "or build it untrained with pretrained=False"
        )
    model = builder(**{**arguments, **overrides})
    info = config["weights"]
    state = load_verified_state_dict(folder / info["file"], info["sha256"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"checkpoint {folder} does not fit {name!r} built with {overrides or 'its arguments'}: "
            f"missing keys {missing}, unexpected keys {unexpected}"
        )
    return attach_input_check(model.eval(), InputSpec.from_card(config))
