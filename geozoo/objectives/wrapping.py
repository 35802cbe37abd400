"""What an objective that wraps other objectives must pass through to its task.

An RL task asks each of its objectives what it needs (``needs_reference``, ``needs_rehearsal``)
and lets it change the sampled prompts (``sampling_prompts``, e.g. VOGUE's); a wrapper such as
:class:`~geozoo.objectives.KLDRO` or :class:`~geozoo.objectives.DynamicReweighting` has to
answer for the objectives inside it, or the task would, for instance, not compute the reference
log-probs a wrapped GRPO needs.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["WrapsObjectives"]


class WrapsObjectives:
    """Mixin for :class:`~geozoo.objectives.Objective` wrappers; subclasses implement
    :meth:`wrapped_objectives`."""

    def wrapped_objectives(self) -> list[nn.Module]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must list its wrapped objectives")

    @property
    def needs_reference(self) -> bool:
        """What the wrapped objectives ask of an RL task (reference log-probs)."""
        return any(bool(getattr(o, "needs_reference", False)) for o in self.wrapped_objectives())

    @property
    def needs_rehearsal(self) -> bool:
        """What the wrapped objectives ask of an RL task (samples of the reference)."""
        return any(bool(getattr(o, "needs_rehearsal", False)) for o in self.wrapped_objectives())

    def sampling_prompts(self, prompts: Any, step: int) -> tuple[Any, dict[str, Any]]:
        """The wrapped objectives' sampling hooks (e.g. VOGUE's), applied in order."""
        extras: dict[str, Any] = {}
        for objective in self.wrapped_objectives():
            hook = getattr(objective, "sampling_prompts", None)
            if callable(hook):
                prompts, more = hook(prompts, step)
                extras.update(more)
        return prompts, extras
