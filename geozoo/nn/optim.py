"""geoopt's Riemannian Adam with an explicit signature, so that LightningCLI can build it.

geoopt declares ``RiemannianAdam.__init__(self, *args, stabilize=None, **kwargs)``. jsonargparse
(LightningCLI's parser) cannot see Adam's parameters through ``*args`` and asks for ``params``
in the YAML. The Lightning-documented remedy is a subclass whose ``__init__`` names its
arguments; :class:`RiemannianAdam` is that subclass, and geoopt itself stays as it is::

    optimizer: {class_path: geozoo.nn.RiemannianAdam, init_args: {lr: 0.01}}

This module imports geoopt (about 0.8 s); :mod:`geozoo.nn` loads it only when
``geozoo.nn.RiemannianAdam`` is first looked up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import geoopt
from torch import Tensor

__all__ = ["RiemannianAdam"]


class RiemannianAdam(geoopt.optim.RiemannianAdam):
    """Adam on Riemannian manifolds (Becigneul & Ganea, "Riemannian Adaptive Optimization
    Methods", ICLR 2019, Alg. 1), geoopt's implementation: ``geoopt.ManifoldParameter``\\ s are
    updated with the Riemannian gradient and retracted onto their manifold, plain parameters as
    with ``torch.optim.Adam``.

    Args:
        params: parameters or parameter groups (LightningCLI passes them).
        lr, betas, eps, weight_decay, amsgrad: as ``torch.optim.Adam``.
        stabilize: every ``stabilize`` steps, project the parameters (and Adam's state) back
            onto their manifold to remove accumulated rounding; ``None`` never.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        stabilize: int | None = None,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            stabilize=stabilize,
        )
