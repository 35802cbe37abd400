"""Generic LightningModules: a network plus a list of weighted objectives."""

from geozoo.tasks.base import ObjectiveTask
from geozoo.tasks.classification import ClassificationTask
from geozoo.tasks.embedding import EmbeddingTask
from geozoo.tasks.regression import RegressionTask

__all__ = ["ClassificationTask", "ObjectiveTask", "RegressionTask"]
__all__ += ["EmbeddingTask"]
