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
    "WeightsIntegrityError",
    "load_config",
    "load_verified_state_dict",
    "save_checkpoint",
    "sha256_file",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class WeightsIntegrityError(RuntimeError):
    """The weights file does not hash to the sha256 its config promises."""


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's full content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def load_config(folder: str | Path) -> dict[str, Any]:
    """Read ``config.json`` from a checkpoint folder."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a geozoo checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    return json.loads(path.read_text())


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


def save_checkpoint(model: nn.Module, folder: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """Write ``model``'s weights and ``config`` (completed with sha256 and size) to ``folder``.

    Returns the config as written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights_path = folder / WEIGHTS_FILE
    save_file(state, str(weights_path))
    config = dict(config)
    config["weights"] = {
        "file": WEIGHTS_FILE,
        "sha256": sha256_file(weights_path),
        "bytes": weights_path.stat().st_size,
        "num_params": sum(p.numel() for p in model.parameters()),
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")
    return config
