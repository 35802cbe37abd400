"""Reinforcement learning with verifiable rewards as a LightningModule.

Per training step the task samples ``num_samples`` responses per prompt from the current
policy, scores them with the environment's verifier, and hands the :class:`geozoo.rl.Rollouts`
to its objectives through ``ctx.extras["rollouts"]``; GRPO, KDRL, f-DPO, f-DPG (or your own
objective) are chosen and weighted in YAML like any other.  The task fills what the objectives
declare they need: ``needs_reference`` -> ``Rollouts.ref_logp`` from the frozen reference;
``needs_rehearsal`` -> ``ctx.extras["rehearsal"]``, responses sampled from the reference with
the current policy's log-probs of them (DPH-RL).  With batches ``(prompts, targets,
labelled)`` the labelled rows of an RL step go to ``ctx.extras["replay"]`` as
``(prompts, targets)``, for objectives that replay the supervised skill (e.g.
:class:`geozoo.objectives.AnswerReplay` under RECAP's reweighting).

Sampling runs with gradients on, so the log-probs of the sampling pass are the current
policy's (one update per batch: the sampling policy *is* the current one, ``old_logp`` is their
detached copy) and no second forward pass is needed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from geozoo.metrics.pass_at_k import PassAtK
from geozoo.objectives.base import Objective, StepContext
from geozoo.objectives.grpo import GRPO
from geozoo.rl.environments import Environment
from geozoo.rl.evaluation import correct_matrix
from geozoo.rl.policies import Sample
from geozoo.rl.rollouts import Rollouts, masked_mean, sequence_sum
from geozoo.rl.warmup import answer_nll
from geozoo.tasks.base import ObjectiveTask, default_adam

__all__ = ["RLTask"]


class RLTask(ObjectiveTask):
    """Train a policy on verifiable rewards with a list of weighted objectives.

    Logged per training step: ``train/reward``, ``train/kl_ref`` (mean sequence ``log pi -
    log pi_ref`` of the samples, when a reference is in use), ``train/entropy`` (mean token
    entropy), ``train/length`` (mean response length) and every objective's values; during the
    warm-up, ``train/warmup_nll``.  Validation and test log ``pass@k`` for each ``k`` in
    ``pass_k`` (from ``eval_samples`` samples per prompt) and the mean reward.

    Args:
        network: the policy (:class:`geozoo.rl.DigitSumPolicy`, :class:`geozoo.rl.ClassifierPolicy`
            or anything with ``sample`` and ``log_probs``).
        environment: the verifier (``reward`` and ``correct``; ``answer_tokens`` for warm-up).
        objectives: the RL objectives (default ``[GRPO()]``).
        num_samples: ``G``, responses per prompt.
        temperature, top_k: sampling settings (log-probs are those of the tempered policy).
        reference: ``"copy"`` (a frozen copy of the policy as it is at the first RL step, which
            shares the policy's already-frozen modules instead of copying them), the
            name of a zoo entry (``create_model(name, pretrained=True)``), a module, or ``None``.
            It is not a submodule: it is neither trained nor saved in checkpoints.
        warmup_steps: optimizer steps of supervised warm-up (teacher-forced negative
            log-likelihood of the environment's answers) before RL; with batches
            ``(prompts, targets, labelled)`` the warm-up uses only labelled rows and RL samples
            only the others (the labelled ones go to ``ctx.extras["replay"]``).
        eval_samples, eval_temperature, pass_k: validation / test sampling and budgets.
        optimizer, lr_scheduler: as in :class:`~geozoo.tasks.ObjectiveTask`.
    """

    default_objectives = (GRPO,)

    def __init__(
        self,
        network: nn.Module,
        environment: Environment,
        objectives: Sequence[Objective] | None = None,
        num_samples: int = 8,
        temperature: float = 1.0,
        top_k: int | None = None,
        reference: str | nn.Module | None = "copy",
        warmup_steps: int = 0,
        eval_samples: int = 8,
        eval_temperature: float = 1.0,
        pass_k: Sequence[int] = (1, 8),
        optimizer: OptimizerCallable = default_adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(network, objectives, optimizer, lr_scheduler)
        for method in ("sample", "log_probs"):
            if not callable(getattr(network, method, None)):
                raise TypeError(
                    f"the network of an RLTask must be a policy with sample() and log_probs(), "
                    f"got {type(network).__name__} without {method}()"
                )
        if num_samples < 1 or eval_samples < max(pass_k):
            raise ValueError(
                f"need num_samples >= 1 and eval_samples >= max(pass_k), got {num_samples}, "
                f"{eval_samples} and pass_k={list(pass_k)}"
            )
        self.environment = environment
        self.num_samples = num_samples
        self.temperature = temperature
        self.top_k = top_k
        self.warmup_steps = warmup_steps
        self.eval_samples = eval_samples
        self.eval_temperature = eval_temperature
        self.pass_k = tuple(pass_k)
        self.val_pass = nn.ModuleDict({str(k): PassAtK(k) for k in self.pass_k})
        self.test_pass = nn.ModuleDict({str(k): PassAtK(k) for k in self.pass_k})
        if isinstance(reference, str) and reference != "copy":
            from geozoo.zoo.factory import create_model

            reference = create_model(reference, pretrained=True)
        object.__setattr__(self, "_reference_spec", reference)  # a module stays unregistered
        object.__setattr__(
            self, "_reference", reference if isinstance(reference, nn.Module) else None
        )
        if isinstance(self._reference, nn.Module):
            self._reference.eval().requires_grad_(False)

    # ------------------------------------------------------------------ reference policy

    @property
    def reference(self) -> nn.Module | None:
        """The frozen reference policy (made on first use for ``reference="copy"``)."""
        if self._reference is None and self._reference_spec == "copy":
            # modules that are frozen already (e.g. a frozen encoder) never change: share them
            shared = {
                id(m): m
                for m in self.network.modules()
                if any(True for _ in m.parameters())
                and not any(p.requires_grad for p in m.parameters())
            }
            frozen = copy.deepcopy(self.network, shared).eval().requires_grad_(False)
            object.__setattr__(self, "_reference", frozen)
        ref = self._reference
        if ref is not None:
            device = next(self.network.parameters()).device
            if next(ref.parameters()).device != device:
                ref.to(device)
        return ref

    def _needs(self, attribute: str) -> bool:
        return any(bool(getattr(o, attribute, False)) for o in self.objectives)

    def _require_reference(self) -> nn.Module:
        ref = self.reference
        if ref is None:
            raise ValueError(
                "an objective needs the reference policy: give RLTask(reference='copy', a zoo "
                "name or a module)"
            )
        return ref

    # ------------------------------------------------------------------ rollouts

    def rollout(
        self, prompts: Tensor, targets: Tensor, step: int | None = None
    ) -> tuple[Rollouts, Rollouts | None]:
        """Sample, score and (as the objectives require) add reference log-probs and
        reference samples; returns ``(rollouts, rehearsal or None)``.  ``step`` (default: the
        trainer's global step) is what objectives with a sampling schedule see."""
        policy = self.network
        step = self.global_step if step is None else step
        extras: dict[str, Any] = {}
        for objective in self.objectives:  # e.g. VOGUE samples a share on perturbed images
            hook = getattr(objective, "sampling_prompts", None)
            if callable(hook):
                prompts, more = hook(prompts, step)
                extras.update(more)
        sample = policy.sample(prompts, self.num_samples, self.temperature, self.top_k)
        ref_logp = None
        if self._needs("needs_reference"):
            with torch.no_grad():
                ref_logp = self._require_reference().log_probs(
                    prompts, sample.responses, sample.group, self.temperature
                )
        rollouts = self._score(
            prompts, targets, sample, sample.logp, sample.logp.detach(), ref_logp
        )
        rollouts.extras.update(extras)
        rehearsal = None
        if self._needs("needs_rehearsal"):
            with torch.no_grad():
                old = self._require_reference().sample(
                    prompts, self.num_samples, self.temperature, self.top_k
                )
            logp = policy.log_probs(prompts, old.responses, old.group, self.temperature)
            rehearsal = self._score(prompts, targets, old, logp, old.logp, old.logp)
        return rollouts, rehearsal

    def _score(
        self,
        prompts: Tensor,
        targets: Tensor,
        sample: Sample,
        logp: Tensor,
        old_logp: Tensor,
        ref_logp: Tensor | None,
    ) -> Rollouts:
        answers = targets[sample.group]
        with torch.no_grad():
            rewards = self.environment.reward(answers, sample.responses).float()
        return Rollouts(
            prompts=prompts,
            group=sample.group,
            responses=sample.responses,
            mask=sample.mask,
            rewards=rewards,
            logp=logp,
            old_logp=old_logp,
            ref_logp=ref_logp,
            entropy=sample.entropy,
            targets=answers,
            temperature=self.temperature,
        )

    # ------------------------------------------------------------------ steps

    @staticmethod
    def _unpack(batch: Any) -> tuple[Tensor, Tensor, Tensor | None]:
        if len(batch) == 3:
            return batch[0], batch[1], batch[2].bool()
        return batch[0], batch[1], None

    def warmup_loss(self, prompts: Tensor, targets: Tensor) -> Tensor:
        """Teacher-forced mean token negative log-likelihood of the environment's answers."""
        return answer_nll(self.network, self.environment, prompts, targets)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        prompts, targets, labelled = self._unpack(batch)
        if self.global_step < self.warmup_steps:
            if labelled is not None:
                prompts, targets = prompts[labelled], targets[labelled]
            if len(targets) == 0:
                return None
            loss = self.warmup_loss(prompts, targets)
            self.log(
                "train/warmup_nll",
                loss.detach(),
                on_step=True,
                on_epoch=True,
                batch_size=len(targets),
            )
            return loss
        replay = None
        if labelled is not None:
            replay = (prompts[labelled], targets[labelled])
            prompts, targets = prompts[~labelled], targets[~labelled]
        if len(targets) == 0:
            return None
        rollouts, rehearsal = self.rollout(prompts, targets)
        extras: dict[str, Any] = {"rollouts": rollouts}
        if replay is not None and len(replay[1]):
            extras["replay"] = replay
        if rehearsal is not None:
            extras["rehearsal"] = rehearsal
        ctx = StepContext(
            inputs=prompts,
            targets=targets,
            outputs=rollouts.logp,
            network=self.network,
            stage="train",
            global_step=self.global_step,
            epoch=self.current_epoch,
            task=self,
            extras=extras,
        )
        total, logs = self.sum_objectives(ctx, "train")
        logs = {**self._rollout_logs(rollouts), **logs}
        self.log_dict(logs, on_step=True, on_epoch=True, batch_size=len(targets))
        return total

    @staticmethod
    def _rollout_logs(rollouts: Rollouts) -> dict[str, Tensor]:
        logs = {
            "train/reward": rollouts.rewards.mean(),
            "train/length": rollouts.lengths.float().mean(),
        }
        if rollouts.entropy is not None:
            logs["train/entropy"] = masked_mean(rollouts.entropy, rollouts.mask)
        if rollouts.ref_logp is not None:
            diff = rollouts.old_logp - rollouts.ref_logp
            logs["train/kl_ref"] = sequence_sum(diff, rollouts.mask).mean()
        return {k: v.detach() for k, v in logs.items()}

    def _evaluate(self, batch: Any, metrics: nn.ModuleDict, prefix: str) -> None:
        prompts, targets = batch[0], batch[1]
        correct, rewards = correct_matrix(
            self.network,
            self.environment,
            prompts,
            targets,
            self.eval_samples,
            self.eval_temperature,
        )
        for k, metric in metrics.items():
            metric.update(correct)
            self.log(
                f"{prefix}/pass@{k}",
                metric,
                on_epoch=True,
                prog_bar=k == "1",
                metric_attribute=f"{'val' if prefix == 'val' else 'test'}_pass.{k}",
            )
        self.log(f"{prefix}/reward", rewards.mean(), on_epoch=True, batch_size=len(targets))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, self.val_pass, "val")

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, self.test_pass, self.test_prefix(dataloader_idx))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        prompts = batch[0] if isinstance(batch, list | tuple) else batch
        return self.network.sample(prompts, 1, self.eval_temperature).responses
