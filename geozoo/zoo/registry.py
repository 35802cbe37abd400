"""The model registry: builders registered by name, listed with wildcards (as in timm)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable

from torch import nn

__all__ = ["UnknownModelError", "is_model", "list_models", "model_entrypoint", "register_model"]

ModelBuilder = Callable[..., nn.Module]
_BUILDERS: dict[str, ModelBuilder] = {}


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def register_model(fn: ModelBuilder) -> ModelBuilder:
    """Register ``fn`` as the builder of the model named ``fn.__name__``.

    The builder takes keyword arguments only and returns a freshly initialised ``nn.Module``.
    """
    name = fn.__name__
    if name in _BUILDERS and _BUILDERS[name] is not fn:
        raise ValueError(f"a model named {name!r} is already registered")
    _BUILDERS[name] = fn
    return fn


def _ensure_nets_loaded() -> None:
    import geozoo.nets  # noqa: F401 - importing registers the builders


def is_model(name: str) -> bool:
    _ensure_nets_loaded()
    return name in _BUILDERS


def model_entrypoint(name: str) -> ModelBuilder:
    """Return the builder registered as ``name``; the error suggests close names."""
    _ensure_nets_loaded()
    try:
        return _BUILDERS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _BUILDERS, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}: expected one of {sorted(_BUILDERS)}.{hint}"
        ) from None


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Sorted names of registered models matching the shell-style ``pattern``.

    With ``pretrained=True`` only models that have a published checkpoint are listed.
    """
    _ensure_nets_loaded()
    names = sorted(n for n in _BUILDERS if fnmatch.fnmatchcase(n, pattern))
    if pretrained:
        from geozoo.zoo.hub import has_checkpoint

        names = [n for n in names if has_checkpoint(n)]
    return names
