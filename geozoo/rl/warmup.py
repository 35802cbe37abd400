"""Supervised fine-tuning of a policy on labelled prompts: the warm-up before RL, as a function
and as a YAML-buildable fine-tuned policy.

* :func:`index_batches`: seeded minibatch indices, epoch after epoch.
* :func:`answer_nll`: the teacher-forced mean token negative log-likelihood of the
  environment's answers (what :meth:`geozoo.tasks.RLTask.warmup_loss` minimises).
* :func:`supervised_warmup`: Adam steps of that loss on given prompts.
* :func:`fine_tuned_policy`: build a policy under a fixed initialisation seed and fine-tune it
  on a data module's labelled prompts in a seeded order.  Two calls with one ``init_seed`` and
  two ``order_seed`` give two fine-tunes of one ancestor: the ingredients of a SALSA reference
  soup (``configs/rl_digitsum_salsa.yaml``; averaging needs that shared ancestor, Wortsman et
  al. 2022).  ``class_path: geozoo.rl.fine_tuned_policy`` works wherever a module is expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from geozoo.data.base import InMemoryDataModule
from geozoo.rl.environments import Environment
from geozoo.rl.policies import response_mask
from geozoo.rl.rollouts import masked_mean

__all__ = ["answer_nll", "fine_tuned_policy", "index_batches", "supervised_warmup"]


def index_batches(
    count: int, size: int, steps: int, generator: torch.Generator
) -> Iterator[Tensor]:
    """``steps`` index batches of ``size`` out of ``count``, epoch after epoch of seeded
    permutations (a batch may straddle two epochs)."""
    if count < 1 or size < 1:
        raise ValueError(f"need count >= 1 and size >= 1, got {count} and {size}")
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < size:
            order = torch.cat([order, torch.randperm(count, generator=generator)])
        yield order[:size]
        order = order[size:]


def answer_nll(
    policy: nn.Module, environment: Environment, prompts: Tensor, targets: Tensor
) -> Tensor:
    """Teacher-forced mean token negative log-likelihood of the environment's answers
    (``environment.answer_tokens``) under ``policy``; tokens after end-of-sequence are
    excluded when the policy has an ``EOS`` token."""
    tokens = environment.answer_tokens(targets, policy.max_length)
    logp = policy.log_probs(prompts, tokens)
    eos = getattr(policy, "EOS", None)
    mask = torch.ones_like(tokens, dtype=torch.bool) if eos is None else response_mask(tokens, eos)
    return -masked_mean(logp, mask)


def supervised_warmup(
    policy: nn.Module,
    environment: Environment,
    prompts: Tensor,
    targets: Tensor,
    steps: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """``steps`` Adam steps (learning rate ``lr``) of :func:`answer_nll` on minibatches of
    ``(prompts, targets)`` drawn by :func:`index_batches`; returns ``policy``, trained in place.
    """
    if len(targets) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(targets)} targets")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    for index in index_batches(len(targets), batch_size, steps, generator):
        loss = answer_nll(policy, environment, prompts[index], targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return policy


def _labelled_prompts(data: InMemoryDataModule) -> tuple[Tensor, Tensor]:
    if not getattr(data, "datasets", None):
        data.setup()
    train = data.datasets["train"][:]
    if len(train) != 3:
        raise ValueError(
            "fine_tuned_policy needs training batches (prompts, targets, labelled) as "
            f"geozoo.rl.DigitSumDataModule makes them, got {len(train)} tensors"
        )
    prompts, targets, labelled = train
    labelled = labelled.bool()
    if not bool(labelled.any()):
        raise ValueError("the data module marks no training prompt as labelled")
    return prompts[labelled], targets[labelled]


def fine_tuned_policy(
    policy: Callable[[], nn.Module],
    environment: Environment,
    data: InMemoryDataModule,
    steps: int = 250,
    batch_size: int = 32,
    lr: float = 3e-3,
    init_seed: int = 0,
    order_seed: int = 0,
) -> nn.Module:
    """A policy built under ``torch.manual_seed(init_seed)`` (the global generator is restored
    afterwards), then fine-tuned by :func:`supervised_warmup` on ``data``'s labelled training
    prompts, in the order drawn by ``order_seed``.

    Args:
        policy: builds the untrained policy (in YAML, the policy's ``class_path`` and
            ``init_args``, which jsonargparse turns into a builder).
        environment: gives the answers' tokens (``answer_tokens``).
        data: a data module whose ``datasets["train"]`` holds ``(prompts, targets, labelled)``
            (set up here if it is not yet), e.g. :class:`geozoo.rl.DigitSumDataModule`.
        steps, batch_size, lr: the fine-tuning's Adam steps, batch size and learning rate.
        init_seed: seed of the initial weights; equal seeds give the same ancestor.
        order_seed: seed of the minibatch order.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        network = policy()
    if not isinstance(network, nn.Module):
        raise TypeError(f"policy() must build an nn.Module, got {type(network).__name__}")
    prompts, targets = _labelled_prompts(data)
    generator = torch.Generator().manual_seed(order_seed)
    return supervised_warmup(
        network, environment, prompts, targets, steps, batch_size, lr, generator
    )
