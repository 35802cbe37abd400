"""Training objectives behind one protocol (see :mod:`geozoo.objectives.base`)."""

from geozoo.objectives import divergences
from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext
from geozoo.objectives.classification import CrossEntropy
from geozoo.objectives.soft_equivariance import MixedSymmetryRegularizer, ResidualPathwayPrior

__all__ = [
    "CrossEntropy",
    "MixedSymmetryRegularizer",
    "Objective",
    "ObjectiveOutput",
    "ResidualPathwayPrior",
    "StepContext",
    "divergences",
]
