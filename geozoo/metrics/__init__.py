"""geozoo.metrics"""

from geozoo.metrics.equivariance import EquivarianceError

__all__ = ["EquivarianceError"]
