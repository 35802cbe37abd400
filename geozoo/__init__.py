"""geozoo: a model zoo and layer library for equivariant and geometric deep learning."""

from geozoo.zoo import card, create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["__version__", "card", "create_model", "list_models", "register_model"]
