"""Training objectives behind one protocol (see :mod:`geozoo.objectives.base`)."""

from geozoo.objectives import divergences
from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext
from geozoo.objectives.classification import CrossEntropy

__all__ = ["CrossEntropy", "Objective", "ObjectiveOutput", "StepContext", "divergences"]
