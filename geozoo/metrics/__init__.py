"""geozoo.metrics"""

from geozoo.metrics.calibration import (
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
)
from geozoo.metrics.equivariance import EquivarianceError
from geozoo.metrics.pass_at_k import PassAtK, pass_at_k
from geozoo.metrics.regression import average_displacement_error
from geozoo.metrics.verification import TARAtFAR, VerificationAccuracy

__all__ = [
    "EquivarianceError",
    "PassAtK",
    "TARAtFAR",
    "VerificationAccuracy",
    "average_displacement_error",
    "expected_calibration_error",
    "fit_temperature",
    "pass_at_k",
    "reliability_diagram",
]
