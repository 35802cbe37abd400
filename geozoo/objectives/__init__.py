"""Training objectives behind one protocol (see :mod:`geozoo.objectives.base`)."""

from geozoo.objectives import divergences
from geozoo.objectives.apo import APO
from geozoo.objectives.base import Objective, ObjectiveOutput, StepContext
from geozoo.objectives.best_of_n_distillation import BestOfNDistillation
from geozoo.objectives.classification import CrossEntropy
from geozoo.objectives.distillation import (
    BalancedDivergenceDistillation,
    Distillation,
    OFADistillation,
    PlackettLuceDistillation,
    SinkhornDistillation,
)
from geozoo.objectives.dro import KLDRO
from geozoo.objectives.grpo import GRPO, KDRL
from geozoo.objectives.grpo_prompts import PerPromptGRPO
from geozoo.objectives.invariance_constrained import InvarianceConstrained, UniformAugmentation
from geozoo.objectives.preference import FDPG, FDPO
from geozoo.objectives.regression import MeanSquaredError
from geozoo.objectives.replay import AnswerReplay
from geozoo.objectives.reweighting import DynamicReweighting
from geozoo.objectives.sample_actions import (
    ImageGroupAction,
    PointCloudAction,
    RandomRotationAction,
    RepresentationAction,
    SampleAction,
    TransformAction,
)
from geozoo.objectives.soft_equivariance import (
    MixedSymmetryRegularizer,
    ProjectionEquivarianceRegularizer,
    ResidualPathwayPrior,
    SampleEquivarianceRegularizer,
)
from geozoo.objectives.symface import MarginCrossEntropy, SplitFaceSymmetry
from geozoo.objectives.vogue import VOGUE

__all__ = [
    "APO",
    "FDPG",
    "FDPO",
    "GRPO",
    "KDRL",
    "KLDRO",
    "VOGUE",
    "AnswerReplay",
    "BalancedDivergenceDistillation",
    "BestOfNDistillation",
    "CrossEntropy",
    "Distillation",
    "DynamicReweighting",
    "ImageGroupAction",
    "InvarianceConstrained",
    "MarginCrossEntropy",
    "MeanSquaredError",
    "MixedSymmetryRegularizer",
    "OFADistillation",
    "Objective",
    "ObjectiveOutput",
    "PerPromptGRPO",
    "PlackettLuceDistillation",
    "PointCloudAction",
    "ProjectionEquivarianceRegularizer",
    "RandomRotationAction",
    "RepresentationAction",
    "ResidualPathwayPrior",
    "SampleAction",
    "SampleEquivarianceRegularizer",
    "SinkhornDistillation",
    "SplitFaceSymmetry",
    "StepContext",
    "TransformAction",
    "UniformAugmentation",
    "divergences",
]
