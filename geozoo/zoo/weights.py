"""Checkpoint files: safetensors weights guarded by a full sha256, checked on every load.

Nothing here ever unpickles: weights are safetensors, metadata is JSON.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "CheckpointConfigError",
    "WeightsIntegrityError",
    "describe_weights",
    "load_config",
    "load_verified_state_dict",
    "save_checkpoint",
    "sha256_file",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class WeightsIntegrityError(RuntimeError):
    """The weights file does not hash to the sha256 its config promises."""


class CheckpointConfigError(ValueError):
    """A checkpoint's ``config.json`` is not valid JSON or lacks what loading needs."""


#: What loading reads from every ``config.json``.
REQUIRED_KEYS = {"architecture": str, "arguments": dict, "weights": dict}
REQUIRED_WEIGHT_KEYS = ("file", "sha256")


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's full content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def load_config(folder: str | Path) -> dict[str, Any]:
    """Read and check ``config.json`` from a checkpoint folder.

    Raises:
        FileNotFoundError: no ``config.json`` in ``folder``.
        CheckpointConfigError: the file is not JSON (e.g. truncated or hand-edited), or a key
            that loading needs is missing or of the wrong type; the message names the file.
    """
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a geozoo checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointConfigError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            "was it truncated or edited by hand? Restore it from the published checkpoint."
        ) from None
    if not isinstance(config, dict):
        raise CheckpointConfigError(f"{path} must hold a JSON object, got {type(config).__name__}")
    for key, kind in REQUIRED_KEYS.items():
        if not isinstance(config.get(key), kind):
            found = "missing" if key not in config else f"a {type(config[key]).__name__}"
            raise CheckpointConfigError(
                f"{path}: key {key!r} must be a JSON {'object' if kind is dict else 'string'}, "
                f"found {found}"
            )
    for form, info in [("weights", config["weights"]), *_forms(config)]:
        missing = [k for k in REQUIRED_WEIGHT_KEYS if not isinstance(info.get(k), str)]
        if missing:
            raise CheckpointConfigError(f"{path}: {form} lacks {missing} (strings)")
    return config


def _forms(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"forms.{name}", info) for name, info in config.get("forms", {}).items()]


def load_verified_state_dict(
    weights_path: str | Path, expected_sha256: str
) -> dict[str, torch.Tensor]:
    """Load a safetensors file after checking its full sha256 against ``expected_sha256``."""
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"weights file {weights_path} does not exist")
    actual = sha256_file(weights_path)
    if actual != expected_sha256:
        raise WeightsIntegrityError(
            f"sha256 mismatch for {weights_path}: expected {expected_sha256}, got {actual}. "
            "The file is corrupted, truncated or was modified; re-download or retrain it."
        )
    return load_file(str(weights_path))


def save_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Write ``model``'s whole state to a safetensors file; return its ``weights`` record.

    The state is taken in eval mode, whose keys are those of a freshly built model (escnn
    convolutions drop their expanded-filter buffer when switched to training); tensors are
    cloned because safetensors rejects tensors that share storage (escnn shares kernel bases
    between layers).
    """
    path = Path(path)
    was_training = model.training
    model.eval()
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    model.train(was_training)
    save_file(state, str(path))
    return describe_weights(path, sum(p.numel() for p in model.parameters()))


def describe_weights(path: str | Path, num_params: int) -> dict[str, Any]:
    """The ``weights`` record of a file: name, full sha256, size and parameter count."""
    path = Path(path)
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "num_params": num_params,
    }


def write_config(folder: str | Path, config: dict[str, Any]) -> None:
    (Path(folder) / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")


def save_checkpoint(model: nn.Module, folder: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """Write ``model``'s weights and ``config`` (completed with sha256 and size) to ``folder``.

    Returns the config as written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {**config, "weights": save_weights(model, folder / WEIGHTS_FILE)}
    write_config(folder, config)
    return config
