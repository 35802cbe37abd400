"""Input validation shared by geozoo's networks: fail early with a message a user can act on.

Two layers, one set of rules:

* :func:`check_images` / :func:`require_finite` run inside a network's ``forward`` and need no
  metadata (type, shape, finiteness);
* an :class:`InputSpec` read from a checkpoint's card (``config.json``, key ``"input"``) adds the
  value range and the dtype; :func:`attach_input_check` installs it as a forward pre-hook, and
  :func:`geozoo.create_model` attaches it to every model it loads, so every zoo network checks
  its input the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "InputSpec",
    "attach_input_check",
    "check_images",
    "check_input",
    "require_finite",
]

#: Values may leave the card's range by this fraction of its width (interpolation overshoot).
RANGE_TOLERANCE = 0.05


def require_finite(x: Tensor, what: str = "input values") -> None:
    """Raise ``ValueError`` counting the NaN/inf entries of ``x`` (skipped while tracing)."""
    if torch.jit.is_tracing():
        return
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        raise ValueError(f"expected finite {what}, got {int((~finite).sum())} NaN/inf entries")


def check_images(
    x: Tensor,
    channels: int,
    size: Sequence[int] | None = None,
    check_finite: bool = True,
) -> None:
    """Check that ``x`` is a float image batch of shape ``(N, channels, *size)``.

    Raises ``TypeError``/``ValueError`` naming what was expected and what was given, instead of
    letting a shape error surface from deep inside a convolution.
    """
    expected = f"(N, {channels}, {', '.join(map(str, size))})" if size else f"(N, {channels}, H, W)"
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor of shape {expected}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"expected float images in [0, 1] of shape {expected}, got dtype {x.dtype} "
            "(convert with x.float() / 255)"
        )
    if x.dim() != 4 or x.shape[1] != channels or (size and tuple(x.shape[2:]) != tuple(size)):
        raise ValueError(f"expected images of shape {expected}, got {tuple(x.shape)}")
    if check_finite:
        require_finite(x, "pixel values")


@dataclass(frozen=True)
class InputSpec:
    """What a network accepts: one sample's shape, value range and dtype (a card's ``"input"``).

    Zoo image models take float images in [0, 1] (the default range); unbounded ranges
    (``-inf``/``inf``, e.g. point coordinates) are not range-checked.

    Args:
        shape: the shape of one sample, e.g. ``(1, 40, 40)`` or ``(4, 3)``; ``None`` for any.
        value_range: ``(low, high)``.
        dtype: the dtype the weights were trained in (informative: inputs are cast to the
            module's own parameter dtype, whatever it is now).
        tolerance: how far values may leave the range, as a fraction of its width.
    """

    shape: tuple[int, ...] | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    dtype: str = "float32"
    tolerance: float = RANGE_TOLERANCE

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> InputSpec:
        """The spec of a card's ``"input"`` entry; a missing range is unbounded."""
        shape = spec.get("input_size")
        low, high = (spec.get("value_range") or (-math.inf, math.inf))[:2]
        return cls(
            shape=None if shape is None else tuple(int(s) for s in shape),
            value_range=(float(low), float(high)),  # JSON writes infinities as "inf"
            dtype=str(spec.get("dtype", "float32")).replace("torch.", ""),
        )

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> InputSpec:
        """The spec of a checkpoint's ``config.json`` (its ``"input"`` entry)."""
        return cls.from_dict(card.get("input") or {})

    def as_dict(self) -> dict[str, Any]:
        """The card's ``input`` entry (JSON has no infinity: unbounded ends are strings)."""
        ends = [v if math.isfinite(v) else str(v) for v in map(float, self.value_range)]
        shape = None if self.shape is None else list(self.shape)
        return {"input_size": shape, "value_range": ends, "dtype": self.dtype}

    def example(self, batch: int, seed: int = 1234) -> Tensor:
        """A seeded batch ``(batch, *shape)`` inside the range: uniform where it is bounded,
        standard normal where not (the zoo's golden input)."""
        if self.shape is None:
            raise ValueError("an InputSpec without a shape has no example batch")
        generator = torch.Generator().manual_seed(seed)
        dtype = getattr(torch, self.dtype)
        low, high = (float(v) for v in self.value_range)
        if math.isfinite(low) and math.isfinite(high):
            x = torch.rand(batch, *self.shape, generator=generator, dtype=dtype)
            return x if (low, high) == (0.0, 1.0) else low + (high - low) * x
        return torch.randn(batch, *self.shape, generator=generator, dtype=dtype)

    def describe(self) -> str:
        low, high = self.value_range
        shape = "(N, *)" if self.shape is None else f"(N, {', '.join(map(str, self.shape))})"
        bounds = "" if math.isinf(low) and math.isinf(high) else f" in [{low:g}, {high:g}]"
        return f"float values{bounds} of shape {shape}"


def check_input(x: Any, spec: InputSpec, dtype: torch.dtype | None = None) -> Tensor:
    """Validate ``x`` against ``spec`` and return it, cast to ``dtype`` when given.

    Checks, in order: a tensor, a float dtype (integer images must be scaled first), the
    per-sample shape, finiteness and the value range (with ``spec.tolerance`` of its width).
    Float inputs of another precision (float64 arrays, half) are cast to ``dtype``, the module's
    parameter dtype, rather than failing inside the first layer.
    """
    expected = spec.describe()
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor of {expected}, got {type(x).__name__}")
    if not x.is_floating_point():
        hint = " (convert with x.float() / 255)" if spec.value_range == (0.0, 1.0) else ""
        raise TypeError(f"expected {expected}, got dtype {x.dtype}{hint}")
    if spec.shape is not None and (x.dim() != len(spec.shape) + 1 or x.shape[1:] != spec.shape):
        raise ValueError(f"expected {expected}, got shape {tuple(x.shape)}")
    require_finite(x)
    low, high = spec.value_range
    if not torch.jit.is_tracing() and x.numel() and not (math.isinf(low) and math.isinf(high)):
        slack = 0.0 if math.isinf(high - low) else spec.tolerance * (high - low)
        lo, hi = float(x.min()), float(x.max())
        if lo < low - slack or hi > high + slack:
            hint = ""
            if (low, high) == (0.0, 1.0) and hi > 2.0:
                hint = "; images in 0..255 must be divided by 255"
            elif (low, high) == (0.0, 1.0) and lo < 0.0:
                hint = "; the model normalises internally, pass unnormalised images"
            raise ValueError(
                f"expected values in [{low:g}, {high:g}] (the model's input range, tolerance "
                f"{slack:g}), got values in [{lo:.4g}, {hi:.4g}]{hint}"
            )
    return x if dtype is None or x.dtype == dtype else x.to(dtype)


def _module_dtype(module: nn.Module) -> torch.dtype | None:
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


class _InputCheckHook:
    """Forward pre-hook: check the first positional argument against the spec (if any) and cast
    floating inputs to the module's dtype.

    The dtype is read from the module the hook is called with, so copies of the module cast to
    float64 (as :func:`geozoo.testing.equivariance_error` makes) receive float64 inputs.
    """

    def __init__(self, spec: InputSpec | None) -> None:
        self.spec = spec

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not args:
            return None
        x, dtype = args[0], _module_dtype(module)
        if self.spec is not None:
            x = check_input(x, self.spec, dtype)
        elif isinstance(x, Tensor) and x.is_floating_point() and dtype is not None:
            x = x.to(dtype)
        return (x, *args[1:])


def attach_input_check(module: nn.Module, spec: InputSpec | None = None) -> nn.Module:
    """Check every call's input against ``spec`` and cast floating inputs to the module's dtype;
    return ``module``, with the spec as ``module.input_spec``. Without a spec only the cast is
    added (the network's own ``forward`` checks shape and finiteness). Attaching again replaces
    the previous check."""
    for key, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, _InputCheckHook):
            del module._forward_pre_hooks[key]
    module.register_forward_pre_hook(_InputCheckHook(spec))
    module.input_spec = spec
    return module
