"""Reinforcement learning with verifiable rewards: rollouts, policies and environments."""

from geozoo.rl.rollouts import Rollouts, group_ids, masked_mean, sequence_sum

__all__ = ["Rollouts", "group_ids", "masked_mean", "sequence_sum"]
