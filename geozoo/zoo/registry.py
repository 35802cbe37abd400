"""The model registry: builders registered by name, listed with wildcards (as in timm), each
with the zoo entry it declares (:class:`geozoo.zoo.pretrained.PretrainedCfg`)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import overload

from torch import nn

from geozoo.zoo.pretrained import PretrainedCfg

__all__ = [
    "UnknownModelError",
    "is_model",
    "list_models",
    "model_entrypoint",
    "pretrained_cfg",
    "register_model",
]

ModelBuilder = Callable[..., nn.Module]
_BUILDERS: dict[str, ModelBuilder] = {}
_CFGS: dict[str, PretrainedCfg] = {}


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


@overload
def register_model(fn: ModelBuilder) -> ModelBuilder: ...
@overload
def register_model(*, pretrained_cfg: PretrainedCfg) -> Callable[[ModelBuilder], ModelBuilder]: ...
def register_model(
    fn: ModelBuilder | None = None, *, pretrained_cfg: PretrainedCfg | None = None
) -> ModelBuilder | Callable[[ModelBuilder], ModelBuilder]:
    """Register ``fn`` as the builder of the model named ``fn.__name__``.

    The builder takes keyword arguments only and returns a freshly initialised ``nn.Module``.
    ``@register_model(pretrained_cfg=PretrainedCfg(...))`` also declares its zoo entry (input
    spec, evaluation, export); a builder without one can be built but not published.
    """

    def register(builder: ModelBuilder) -> ModelBuilder:
        name = builder.__name__
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"a model named {name!r} is already registered")
        _BUILDERS[name] = builder
        if pretrained_cfg is not None:
            _CFGS[name] = pretrained_cfg
        return builder

    return register if fn is None else register(fn)


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


def pretrained_cfg(name: str) -> PretrainedCfg:
    """The zoo entry declared by the builder ``name``."""
    model_entrypoint(name)
    try:
        return _CFGS[name]
    except KeyError:
        raise ValueError(
            f"model {name!r} declares no zoo entry: register it with "
            "@register_model(pretrained_cfg=PretrainedCfg(input=InputSpec(...)))"
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
