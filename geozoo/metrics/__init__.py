"""geozoo.metrics"""

from geozoo.metrics.calibration import expected_calibration_error, reliability_diagram
from geozoo.metrics.equivariance import EquivarianceError

__all__ = ["EquivarianceError", "expected_calibration_error", "reliability_diagram"]
