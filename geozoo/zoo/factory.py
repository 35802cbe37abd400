"""``create_model``: one factory for every architecture, with or without pretrained weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from geozoo.nn.checks import InputSpec, attach_input_check
from geozoo.zoo.hub import resolve_checkpoint
from geozoo.zoo.registry import model_entrypoint
from geozoo.zoo.weights import load_config, load_verified_state_dict

__all__ = ["card", "checkpoint_forms", "create_model"]


def card(name: str, weights: str | os.PathLike | None = None) -> dict[str, Any]:
    """The checkpoint metadata (``config.json``) of ``name``: arguments, input spec, sha256,
    metrics and the commands that produced them."""
    model_entrypoint(name)  # unknown names fail with the list of known ones
    return load_config(resolve_checkpoint(name, weights))


def checkpoint_forms(config: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """``{form: (builder arguments, weights record)}`` of a checkpoint: ``"published"`` (the
    ``weights`` entry) and every entry of ``forms`` (e.g. ``"escnn"``), whose ``arguments`` are
    applied on top of the published ones."""
    forms = {"published": (config["arguments"], config["weights"])}
    for form, info in config.get("forms", {}).items():
        forms[form] = ({**config["arguments"], **info.get("arguments", {})}, info)
    return forms


def _select_form(
    folder: Path, config: dict[str, Any], overrides: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The form whose arguments agree with ``overrides`` on every argument the forms differ in
    (the published form when ``overrides`` names none of them)."""
    forms = checkpoint_forms(config)
    varying = [k for k in overrides if len({repr(a.get(k)) for a, _ in forms.values()}) > 1]
    for arguments, info in forms.values():
        if all(arguments.get(k) == overrides[k] for k in varying):
            return arguments, info
    choices = {name: {k: a.get(k) for k in varying} for name, (a, _) in forms.items()}
    raise ValueError(
        f"checkpoint {folder} ships no form with { {k: overrides[k] for k in varying} }: "
        f"its forms are {choices}"
    )


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
            Where a checkpoint ships several forms of its network (``forms`` in its card, e.g.
            ``exported=False`` for the escnn form of a steerable entry), the overrides choose
            the form and its own sha256-checked file is loaded.

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
    if config["architecture"] != name:
        raise ValueError(
            f"checkpoint in {folder} is for architecture {config['architecture']!r}, not {name!r}"
        )
    arguments, info = _select_form(folder, config, overrides)
    head = arguments.get("num_classes", config.get("num_classes"))
    if "num_classes" in overrides and head is not None and overrides["num_classes"] != head:
        raise ValueError(
            f"the pretrained head of {name!r} has {head} classes, got num_classes="
            f"{overrides['num_classes']}: load it with {head} classes and replace its last layer, "
            "or build it untrained with pretrained=False"
        )
    model = builder(**{**arguments, **overrides})
    state = load_verified_state_dict(folder / info["file"], info["sha256"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"{folder / info['file']} does not fit {name!r} built with "
            f"{overrides or 'its arguments'}: missing keys {missing}, unexpected keys {unexpected}"
        )
    return attach_input_check(model.eval(), InputSpec.from_card(config))
