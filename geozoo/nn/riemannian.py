"""Layers whose weights live on Riemannian manifolds, as ``geoopt.ManifoldParameter``s.

Optimise them with ``geoopt.optim.RiemannianAdam`` / ``RiemannianSGD`` (Becigneul & Ganea,
ICLR 2019, "Riemannian Adaptive Optimization Methods"): each step projects the Euclidean
gradient onto the tangent space and retracts back onto the manifold, so the constraint holds
exactly (up to rounding) after every step, unlike a penalty. In YAML::

    optimizer: {class_path: geoopt.optim.RiemannianAdam, init_args: {lr: 0.01}}

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

import importlib.abc
import importlib.util
import inspect
import math
import sys

import torch
from torch import Tensor, nn

__all__ = [
    "MahalanobisDistance",
    "OrthogonalLinear",
    "OrthogonalMLP",
    "declare_geoopt_signatures",
    "manifold_violation",
]


def _geoopt():
    try:
        import geoopt
    except ImportError as error:  # pragma: no cover - geoopt is a core dependency
        raise ImportError("Riemannian layers need geoopt: `pip install geoopt`") from error
    return geoopt


def declare_geoopt_signatures(radam_class: type | None = None) -> None:
    """Give ``geoopt.optim.RiemannianAdam.__init__`` an explicit signature (Adam's parameters
    plus ``stabilize``) so that LightningCLI / jsonargparse can use it as an optimizer factory.

    geoopt declares it as ``(self, *args, stabilize=None, **kwargs)``; jsonargparse then treats
    ``params`` as a required YAML argument and rejects
    ``optimizer: {class_path: geoopt.optim.RiemannianAdam, init_args: {lr: 0.01}}``. Only the
    introspected signature changes; the class behaves exactly as before. Importing
    :mod:`geozoo.nn` arranges for this to run when geoopt's optimizers are first imported (geoopt
    itself is not imported then: it takes seconds). Idempotent.
    """
    if radam_class is None:
        from geoopt.optim import RiemannianAdam as radam_class
    init = radam_class.__init__
    current = inspect.signature(init)
    if not any(p.kind is p.VAR_POSITIONAL for p in current.parameters.values()):
        return
    adam = inspect.signature(torch.optim.Adam.__init__)
    stabilize = inspect.Parameter("stabilize", inspect.Parameter.KEYWORD_ONLY, default=None)
    parameters = [*adam.parameters.values()]
    keyword_only = [p for p in parameters if p.kind is p.KEYWORD_ONLY]
    positional = [p for p in parameters if p.kind is not p.KEYWORD_ONLY]
    init.__signature__ = adam.replace(parameters=[*positional, stabilize, *keyword_only])


class _GeooptSignatureHook(importlib.abc.MetaPathFinder):
    """Runs :func:`declare_geoopt_signatures` right after ``geoopt.optim.radam`` is imported."""

    target = "geoopt.optim.radam"

    def find_spec(self, name, path=None, target=None):
        if name != self.target:
            return None
        sys.meta_path.remove(self)  # one-shot: let the normal finders locate the module
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader_exec = spec.loader.exec_module

        def exec_module(module):
            loader_exec(module)
            declare_geoopt_signatures(module.RiemannianAdam)

        spec.loader.exec_module = exec_module
        return spec


def _install_geoopt_hook() -> None:
    module = sys.modules.get(_GeooptSignatureHook.target)
    if module is not None:
        declare_geoopt_signatures(module.RiemannianAdam)
    elif not any(isinstance(f, _GeooptSignatureHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _GeooptSignatureHook())


_install_geoopt_hook()


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
        q, r = torch.linalg.qr(torch.randn(n, p))
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
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
