"""The model zoo: registry, factory, checkpoint I/O and model cards."""

from geozoo.zoo.factory import card, create_model
from geozoo.zoo.hub import models_dir, resolve_checkpoint
from geozoo.zoo.pretrained import InputSpec, PretrainedCfg
from geozoo.zoo.registry import UnknownModelError, is_model, list_models, register_model
from geozoo.zoo.weights import (
    CheckpointConfigError,
    WeightsIntegrityError,
    save_checkpoint,
    sha256_file,
)

__all__ = [
    "CheckpointConfigError",
    "InputSpec",
    "PretrainedCfg",
    "UnknownModelError",
    "WeightsIntegrityError",
    "card",
    "create_model",
    "is_model",
    "list_models",
    "models_dir",
    "register_model",
    "resolve_checkpoint",
    "save_checkpoint",
    "sha256_file",
]
