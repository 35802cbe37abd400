"""Environments: verifiers that score responses.

An environment is a plain class with ``reward(prompts, responses) -> (N,)`` float rewards,
where ``prompts`` is what the verifier knows about each response's prompt (one row per
response: the label, the true sum, ...) and ``responses`` the ``(N, T)`` tokens a policy
wrote.  ``correct(prompts, responses)`` gives the bool success that pass@k counts.  Bring your
own verifier by writing a class with these two methods (and ``answer_tokens`` for a supervised
warm-up).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ClassificationBandit", "DigitSumEnvironment", "Environment"]


class Environment:
    """Base class of verifiers (subclassing it is optional; it names the interface and lets
    YAML recipes pick an environment by ``class_path``)."""

    def correct(self, prompts: Tensor, responses: Tensor) -> Tensor:  # pragma: no cover
        """``(N,)`` bool: which responses solve their prompt (counted by pass@k)."""
        raise NotImplementedError(f"{type(self).__name__} must implement correct()")

    def reward(self, prompts: Tensor, responses: Tensor) -> Tensor:
        """``(N,)`` float rewards; default: 1 for a correct response, else 0."""
        return self.correct(prompts, responses).float()

    def answer_tokens(self, prompts: Tensor, max_length: int) -> Tensor:  # pragma: no cover
        """``(N, T)`` the correct response of each prompt, for a supervised warm-up."""
        raise NotImplementedError(f"{type(self).__name__} has no reference answers")


class ClassificationBandit(Environment):
    """Classification as a contextual bandit: the response is a class; reward 1 if it is the
    label, else 0."""

    def correct(self, prompts: Tensor, responses: Tensor) -> Tensor:
        return responses[:, 0] == prompts

    def answer_tokens(self, prompts: Tensor, max_length: int = 1) -> Tensor:
        """The correct response of each prompt, ``(N, 1)``."""
        return prompts.long()[:, None]


class DigitSumEnvironment(Environment):
    """The sum of the digits in an image, written as decimal digit tokens then end-of-sequence.

    A response is *well formed* when it is one or more digit tokens (no leading zero unless it
    is ``0``) followed by the end-of-sequence token; it is *correct* when it is well formed and
    its value is the true sum.

    Args:
        eos: the end-of-sequence token (digits are tokens ``0..9``).
        pad: the padding token of responses.
        format_reward: added to the reward of every well-formed response (0: exact-answer
            reward only).
    """

    def __init__(self, eos: int = 10, pad: int = 12, format_reward: float = 0.0) -> None:
        self.eos = eos
        self.pad = pad
        self.format_reward = float(format_reward)

    def decode(self, responses: Tensor) -> tuple[Tensor, Tensor]:
        """``(value, well_formed)`` of each response (``value`` is -1 when ill formed)."""
        t = responses.shape[1]
        is_eos = responses == self.eos
        has_eos = is_eos.any(-1)
        length = torch.where(
            has_eos, is_eos.int().argmax(-1), torch.full_like(has_eos, t, dtype=torch.long)
        )
        position = torch.arange(t, device=responses.device)[None, :]
        body = position < length[:, None]
        digits_ok = ((responses < 10) | ~body).all(-1)
        leading_zero = (responses[:, 0] == 0) & (length > 1)
        well_formed = has_eos & (length >= 1) & digits_ok & ~leading_zero
        power = (length[:, None] - 1 - position).clamp_min(0)
        value = (responses.clamp(0, 9) * 10**power * body).sum(-1)
        return torch.where(well_formed, value, torch.full_like(value, -1)), well_formed

    def correct(self, prompts: Tensor, responses: Tensor) -> Tensor:
        value, well_formed = self.decode(responses)
        return well_formed & (value == prompts)

    def reward(self, prompts: Tensor, responses: Tensor) -> Tensor:
        value, well_formed = self.decode(responses)
        exact = (well_formed & (value == prompts)).float()
        return exact + self.format_reward * well_formed.float()

    def answer_tokens(self, prompts: Tensor, max_length: int) -> Tensor:
        """The correct response of each sum, ``(N, max_length)``, padded after
        end-of-sequence."""
        rows = []
        for value in prompts.tolist():
            tokens = [int(c) for c in str(int(value))] + [self.eos]
            if len(tokens) > max_length:
                raise ValueError(f"the answer {value} needs {len(tokens)} > {max_length} tokens")
            rows.append(tokens + [self.pad] * (max_length - len(tokens)))
        return torch.tensor(rows, dtype=torch.long, device=prompts.device)
