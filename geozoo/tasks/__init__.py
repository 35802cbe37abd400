"""Generic LightningModules: a network plus a list of weighted objectives."""

from geozoo.tasks.base import ObjectiveTask
from geozoo.tasks.classification import ClassificationTask
from geozoo.tasks.regression import RegressionTask
from geozoo.tasks.rl import RLTask

__all__ = ["ClassificationTask", "ObjectiveTask", "RLTask", "RegressionTask"]
