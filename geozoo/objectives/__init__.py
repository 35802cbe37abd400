"""Training objectives behind one protocol (see :mod:`geozoo.objectives.base`)."""

from geozoo.objectives import divergences
from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext
from geozoo.objectives.classification import CrossEntropy
from geozoo.objectives.distillation import (
    BalancedDivergenceDistillation,
    Distillation,
    OFADistillation,
    PlackettLuceDistillation,
    SinkhornDistillation,
)
from geozoo.objectives.regression import MeanSquaredError
from geozoo.objectives.soft_equivariance import MixedSymmetryRegularizer, ResidualPathwayPrior

__all__ = [
    "BalancedDivergenceDistillation",
    "CrossEntropy",
    "Distillation",
    "MeanSquaredError",
    "MixedSymmetryRegularizer",
    "OFADistillation",
    "Objective",
    "ObjectiveOutput",
    "PlackettLuceDistillation",
    "ResidualPathwayPrior",
    "SinkhornDistillation",
    "StepContext",
    "divergences",
]
