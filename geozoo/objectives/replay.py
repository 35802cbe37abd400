"""Replay of the supervised skill during RL: the teacher-forced answer likelihood on labelled
prompts.

RECAP (Phan et al. 2025, arXiv 2510.21978) keeps earlier skills while RL trains a new one by
replaying their objectives next to the RL loss and balancing the two online
(:class:`~geozoo.objectives.DynamicReweighting`).  :class:`AnswerReplay` is such a replayed
objective for an RL task with a supervised warm-up: the warm-up's loss (the mean token negative
log-likelihood of the environment's answers, :func:`geozoo.rl.warmup.answer_nll`) on the
labelled prompts that :class:`geozoo.tasks.RLTask` puts in ``ctx.extras["replay"]``.
"""

from __future__ import annotations

from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext
from geozoo.rl.environments import Environment
from geozoo.rl.warmup import answer_nll

__all__ = ["AnswerReplay"]


class AnswerReplay(Objective):
    """Teacher-forced answer NLL on replayed labelled prompts ``ctx.extras[key]``.

    Args:
        environment: gives the answers' tokens; default the task's (``ctx.task.environment``).
        key: where the step's extras hold ``(prompts, targets)``.
        weight, name: see :class:`~geozoo.objectives.Objective` (default name ``"replay"``).

    A step without replayed prompts (none labelled in the batch) gives a zero loss.
    """

    def __init__(
        self,
        environment: Environment | None = None,
        key: str = "replay",
        weight: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__(weight=weight, name=name or "replay")
        self.environment = environment
        self.key = key

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        environment = self.environment or getattr(ctx.task, "environment", None)
        if environment is None:
            raise ValueError(
                "AnswerReplay needs an environment (give one, or run it in a task that has one, "
                "e.g. geozoo.tasks.RLTask)"
            )
        replay = (ctx.extras or {}).get(self.key)
        if replay is None:
            return ObjectiveOutput(ctx.outputs.sum() * 0.0, {})
        if not (isinstance(replay, tuple | list) and len(replay) == 2):
            raise ValueError(
                f"ctx.extras[{self.key!r}] must be (prompts, targets), got {type(replay).__name__}"
            )
        prompts, targets = replay
        return ObjectiveOutput(answer_nll(ctx.network, environment, prompts, targets), {})

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, key={self.key!r}"
