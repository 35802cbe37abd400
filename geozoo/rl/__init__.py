"""Reinforcement learning with verifiable rewards: rollouts, policies, environments and
prompt data (see ``docs/rl.md``)."""

from geozoo.rl.data import DigitSumDataModule, compose_digits
from geozoo.rl.environments import ClassificationBandit, DigitSumEnvironment, Environment
from geozoo.rl.evaluation import correct_matrix, digit_sum_metrics, evaluate_pass_at_k
from geozoo.rl.policies import ClassifierPolicy, DigitSumPolicy, Sample, draw, response_mask
from geozoo.rl.rollouts import Rollouts, group_ids, masked_mean, sequence_sum
from geozoo.rl.warmup import answer_nll, fine_tuned_policy, index_batches, supervised_warmup

__all__ = [
    "ClassificationBandit",
    "ClassifierPolicy",
    "DigitSumDataModule",
    "DigitSumEnvironment",
    "DigitSumPolicy",
    "Environment",
    "Rollouts",
    "Sample",
    "answer_nll",
    "compose_digits",
    "correct_matrix",
    "digit_sum_metrics",
    "draw",
    "evaluate_pass_at_k",
    "fine_tuned_policy",
    "group_ids",
    "index_batches",
    "masked_mean",
    "response_mask",
    "sequence_sum",
    "supervised_warmup",
]
