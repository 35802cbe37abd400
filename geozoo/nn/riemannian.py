"""Layers whose weights live on Riemannian manifolds, as ``geoopt.ManifoldParameter``s.

Optimise them with :class:`geozoo.nn.RiemannianAdam` (geoopt's ``RiemannianAdam`` with an
explicit signature) or geoopt's ``RiemannianSGD`` (Becigneul & Ganea, ICLR 2019, "Riemannian
Adaptive Optimization Methods"): each step projects the Euclidean gradient onto the tangent
space and retracts back onto the manifold, so the constraint holds exactly (up to rounding)
after every step, unlike a penalty. In YAML::

    optimizer: {class_path: geozoo.nn.RiemannianAdam, init_args: {lr: 0.01}}

Plain parameters in the same model are treated as Euclidean by the same optimizer. With a plain
``torch.optim`` optimizer the constraint is NOT maintained (use :meth:`project_` to repair).

* :class:`OrthogonalLinear`: a linear map with orthonormal rows or columns (Stiefel manifold
  ``St(n, p) = {U in R^{n x p}: U^T U = I}``); it preserves norms (an isometry, or a
  co-isometry when it reduces the dimension), which keeps activations and gradients well scaled.
* :class:`MahalanobisDistance`: a learned metric ``d(x, y)^2 = (x - y)^T M (x - y)`` with ``M``
  on the manifold of symmetric positive definite matrices (affine-invariant metric).
* :class:`OrthogonalMLP`: a small classifier head built from orthogonal layers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from geozoo.groups.haar import haar_orthogonal

__all__ = [
    "MahalanobisDistance",
    "OrthogonalLinear",
    "OrthogonalMLP",
    "manifold_violation",
]


def _geoopt():
    try:
        import geoopt
    except ImportError as error:  # pragma: no cover - geoopt is a core dependency
        raise ImportError("Riemannian layers need geoopt: `pip install geoopt`") from error
    return geoopt


class OrthogonalLinear(nn.Module):
    """``y = W x + b`` with ``W`` (out, in) having orthonormal columns (out >= in) or rows.

    The Stiefel factor ``U`` of shape (max, min) is a ``geoopt.ManifoldParameter`` on
    ``geoopt.Stiefel()`` (canonical metric, Cayley retraction); ``W = U`` or ``U^T``.

    Args:
        in_features, out_features: sizes.
        bias: add a (Euclidean) bias.
        gain: fixed factor on ``W`` (1 keeps it an isometry).
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, gain: float = 1.0
    ) -> None:
        super().__init__()
        geoopt = _geoopt()
        self.in_features, self.out_features, self.gain = in_features, out_features, gain
        n, p = max(in_features, out_features), min(in_features, out_features)
        q = haar_orthogonal(1, n, columns=p)[0]  # a uniformly random point of St(n, p)
        self.factor = geoopt.ManifoldParameter(q, manifold=geoopt.Stiefel())
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @property
    def weight(self) -> Tensor:
        """The (out, in) weight matrix."""
        w = self.factor if self.out_features >= self.in_features else self.factor.T
        return self.gain * w

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected (..., {self.in_features}) inputs, got {tuple(x.shape)}")
        return nn.functional.linear(x, self.weight, self.bias)

    @torch.no_grad()
    def project_(self) -> None:
        """Move the factor back onto the Stiefel manifold (after a non-Riemannian update)."""
        self.factor.copy_(self.factor.manifold.projx(self.factor))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, gain={self.gain}"


class MahalanobisDistance(nn.Module):
    """Squared distances ``(x - y)^T M (x - y)`` with a learned SPD matrix ``M``.

    ``M`` is a ``geoopt.ManifoldParameter`` on ``geoopt.SymmetricPositiveDefinite()`` (the
    affine-invariant metric), initialised at the identity.

    ``forward(x, y)`` takes (..., dim) tensors and returns (...) squared distances.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        geoopt = _geoopt()
        self.dim = dim
        self.metric = geoopt.ManifoldParameter(
            torch.eye(dim), manifold=geoopt.SymmetricPositiveDefinite()
        )

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        d = x - y
        if d.shape[-1] != self.dim:
            raise ValueError(f"expected (..., {self.dim}) inputs, got {tuple(d.shape)}")
        return torch.einsum("...i,ij,...j->...", d, self.metric, d)


class OrthogonalMLP(nn.Module):
    """Flatten, then ``OrthogonalLinear -> ReLU`` stages and a linear classifier.

    Args:
        in_features: flattened input size.
        hidden: widths of the orthogonal stages.
        num_classes: logits.
    """

    def __init__(self, in_features: int, hidden: tuple[int, ...] = (64, 64), num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        previous = in_features
        for width in hidden:
            # gain sqrt(2) keeps the second moment through ReLU (He et al., 2015)
            layers += [OrthogonalLinear(previous, width, gain=math.sqrt(2.0)), nn.ReLU()]
            previous = width
        layers.append(nn.Linear(previous, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def manifold_violation(module: nn.Module) -> dict[str, float]:
    """For every ``geoopt.ManifoldParameter`` in ``module``, the distance from its manifold:
    ``max |U^T U - I|`` on Stiefel, ``max(|M - M^T|, -min eig(M))`` for SPD, else the norm of
    ``x - projx(x)``."""
    geoopt = _geoopt()
    out: dict[str, float] = {}
    for name, p in module.named_parameters():
        if not isinstance(p, geoopt.ManifoldParameter):
            continue
        x = p.detach().double()
        manifold = p.manifold
        if isinstance(manifold, geoopt.Stiefel):
            eye = torch.eye(x.shape[-1], dtype=x.dtype)
            out[name] = float((x.transpose(-1, -2) @ x - eye).abs().max())
        elif isinstance(manifold, geoopt.SymmetricPositiveDefinite):
            asym = float((x - x.transpose(-1, -2)).abs().max())
            min_eig = float(torch.linalg.eigvalsh((x + x.transpose(-1, -2)) / 2).min())
            out[name] = max(asym, -min_eig, 0.0)
        else:
            out[name] = float((x - manifold.projx(x)).norm())
    return out
