"""Generic LightningModules: a network plus a list of weighted objectives."""

from geozoo.tasks.base import ObjectiveTask
from geozoo.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask", "ObjectiveTask"]
