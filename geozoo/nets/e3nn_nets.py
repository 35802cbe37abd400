"""E(3)-equivariant point-cloud networks on e3nn: a Tetris classifier and a tensor regressor.

The backbone is a stack of point convolutions in the style of Tensor Field Networks (Thomas et
al., 2018, eq. 3) as implemented by e3nn (Geiger & Smidt, 2022): the message from point j to
point i is a tensor product of j's features with the spherical harmonics ``Y(r_ij / |r_ij|)`` of
the relative position, weighted by an MLP of the radial distance ``|r_ij|``. Only relative
positions enter, so the networks are translation invariant; the features are O(3) irreps, so
they are rotation and reflection equivariant; points are summed, so they are permutation
invariant.

Inputs are plain tensors: positions ``(B, K, 3)`` (all clouds in a batch have K points) and,
optionally, per-point scalars ``(B, K)`` such as masses.

e3nn is an optional dependency (``pip install e3nn``); it is imported when a network is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from geozoo.nn.checks import require_finite
from geozoo.zoo.pretrained import InputSpec, PretrainedCfg
from geozoo.zoo.registry import register_model

__all__ = ["E3PointBackbone", "E3PointClassifier", "E3TensorRegressor", "e3nn_tetris"]


def _e3nn():
    try:
        import e3nn  # noqa: F401
        from e3nn import nn as enn
        from e3nn import o3
    except ImportError as error:  # pragma: no cover - exercised only without e3nn
        raise ImportError(
            "geozoo's E(3) networks need e3nn: `pip install e3nn` (or `pip install geozoo[e3nn]`)"
        ) from error
    return o3, enn


class _PointConvolution(nn.Module):
    """One message-passing step ``f'_i = sum_{j != i} TP(f_j, Y(r_ij); w(|r_ij|)) / sqrt(K-1)``."""

    def __init__(self, irreps_in, irreps_sh, irreps_out, num_basis: int, radial_hidden: int):
        super().__init__()
        o3, enn = _e3nn()
        self.tp = o3.FullyConnectedTensorProduct(
            irreps_in, irreps_sh, irreps_out, shared_weights=False
        )
        self.radial = enn.FullyConnectedNet(
            [num_basis, radial_hidden, self.tp.weight_numel], torch.nn.functional.silu
        )

    def forward(self, features: Tensor, edge_sh: Tensor, edge_basis: Tensor) -> Tensor:
        b, k, _ = features.shape
        weights = self.radial(edge_basis)  # (B, K, K, W)
        source = features[:, None, :, :].expand(b, k, k, features.shape[-1])
        messages = self.tp(source, edge_sh, weights)  # (B, K_i, K_j, out)
        not_self = ~torch.eye(k, dtype=torch.bool, device=features.device)
        messages = messages * not_self[None, :, :, None].to(messages.dtype)
        return messages.sum(2) / math.sqrt(max(k - 1, 1))


class E3PointBackbone(nn.Module):
    """Gated point convolutions from per-point scalars to pooled O(3) irreps features.

    Args:
        irreps_out: irreps of the pooled output, e.g. ``"7x0e + 0o"`` or ``"0e + 2e"``.
        input_scalars: number of per-point scalar (0e) input features; 0 means a constant 1.
        mul: multiplicity of each hidden irrep.
        lmax: highest degree of the hidden irreps and of the spherical harmonics.
        layers: number of gated convolution layers before the output convolution.
        num_basis: radial basis functions on ``[0, max_radius]``.
        max_radius: radius beyond which the radial basis is zero (pairs farther apart than this
            do not interact).
        radial_hidden: width of the radial MLP.
        pool: ``"sum"`` or ``"mean"`` over points.
    """

    def __init__(
        self,
        irreps_out: str,
        input_scalars: int = 0,
        mul: int = 8,
        lmax: int = 2,
        layers: int = 2,
        num_basis: int = 10,
        max_radius: float = 3.5,
        radial_hidden: int = 32,
        pool: str = "mean",
    ) -> None:
        super().__init__()
        o3, enn = _e3nn()
        if pool not in ("sum", "mean"):
            raise ValueError(f"pool must be 'sum' or 'mean', got {pool!r}")
        self.input_scalars, self.num_basis, self.max_radius = input_scalars, num_basis, max_radius
        self.lmax, self.pool = lmax, pool
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.irreps_out = o3.Irreps(irreps_out)
        irreps = o3.Irreps(f"{max(input_scalars, 1)}x0e")
        self.layers = nn.ModuleList()
        self.gates = nn.ModuleList()
        for _ in range(layers):
            scalars = o3.Irreps(f"{mul}x0e + {mul}x0o")
            gated = o3.Irreps(" + ".join(f"{mul}x{l}e + {mul}x{l}o" for l in range(1, lmax + 1)))
            gate = enn.Gate(
                scalars,
                [torch.nn.functional.silu, torch.tanh],
                o3.Irreps(f"{gated.num_irreps}x0e"),
                [torch.sigmoid],
                gated,
            )
            self.layers.append(
                _PointConvolution(irreps, self.irreps_sh, gate.irreps_in, num_basis, radial_hidden)
            )
            self.gates.append(gate)
            irreps = gate.irreps_out
        self.output = _PointConvolution(
            irreps, self.irreps_sh, self.irreps_out, num_basis, radial_hidden
        )

    def forward(self, positions: Tensor, scalars: Tensor | None = None) -> Tensor:
        """Pooled ``irreps_out`` features (B, irreps_out.dim) of clouds ``positions`` (B, K, 3)."""
        o3, _ = _e3nn()
        from e3nn.math import soft_one_hot_linspace

        if positions.dim() != 3 or positions.shape[-1] != 3 or positions.shape[1] < 2:
            raise ValueError(
                f"expected positions of shape (B, K, 3) with K >= 2, got {tuple(positions.shape)}"
            )
        require_finite(positions, "point positions")
        b, k, _ = positions.shape
        if self.input_scalars:
            if scalars is None or scalars.shape[:2] != (b, k):
                got = None if scalars is None else tuple(scalars.shape)
                raise ValueError(f"expected per-point scalars of shape ({b}, {k}[, C]), got {got}")
            features = scalars.reshape(b, k, -1).to(positions.dtype)
        else:
            features = positions.new_ones(b, k, 1)
        relative = positions[:, None, :, :] - positions[:, :, None, :]  # r_ij = x_j - x_i
        edge_sh = o3.spherical_harmonics(
            self.irreps_sh, relative, normalize=True, normalization="component"
        )
        distance = relative.norm(dim=-1)
        edge_basis = soft_one_hot_linspace(
            distance, 0.0, self.max_radius, self.num_basis, basis="smooth_finite", cutoff=True
        ) * math.sqrt(self.num_basis)
        for conv, gate in zip(self.layers, self.gates):
            features = gate(conv(features, edge_sh, edge_basis))
        out = self.output(features, edge_sh, edge_basis)
        return out.sum(1) if self.pool == "sum" else out.mean(1)


class E3PointClassifier(nn.Module):
    """O(3)-equivariant classifier of point clouds with chirality-aware logits.

    The backbone outputs ``num_classes - P`` scalars (0e) and ``P`` pseudoscalars (0o) for the
    ``P`` chiral pairs ``(a, b)`` (classes that are mirror images of each other). The logits of a
    pair are ``s + p`` and ``s - p``: rotations and translations leave every logit unchanged,
    and a reflection swaps the logits of each chiral pair (the mirror image of a left-handed
    shape is the right-handed one). Achiral classes get one 0e logit each.

    Args:
        num_classes: number of classes.
        chiral_pairs: pairs of class indices that are mirror images.
        **backbone: arguments of :class:`E3PointBackbone` (except ``irreps_out``).
    """

    def __init__(
        self,
        num_classes: int = 8,
        chiral_pairs: Sequence[Sequence[int]] = ((0, 1),),
        **backbone,
    ) -> None:
        super().__init__()
        pairs = [tuple(int(i) for i in p) for p in chiral_pairs]
        flat = [i for p in pairs for i in p]
        if any(len(p) != 2 for p in pairs) or len(set(flat)) != len(flat):
            raise ValueError(f"chiral_pairs must be disjoint pairs of classes, got {chiral_pairs}")
        if any(not 0 <= i < num_classes for i in flat):
            raise ValueError(f"chiral_pairs {pairs} name classes outside 0..{num_classes - 1}")
        self.num_classes, self.chiral_pairs = num_classes, pairs
        self.num_scalars = num_classes - len(pairs)
        irreps_out = f"{self.num_scalars}x0e" + (f" + {len(pairs)}x0o" if pairs else "")
        self.backbone = E3PointBackbone(irreps_out, **backbone)
        # logit = M @ [scalars, pseudoscalars]: pair k uses scalar slot of its first class
        mixing = torch.zeros(num_classes, num_classes)
        achiral = [c for c in range(num_classes) if c not in flat]
        slot = 0
        for a, b in pairs:
            mixing[a, slot] = mixing[b, slot] = 1.0
            slot += 1
        for c in achiral:
            mixing[c, slot] = 1.0
            slot += 1
        for index, (a, b) in enumerate(pairs):
            mixing[a, self.num_scalars + index] = 1.0
            mixing[b, self.num_scalars + index] = -1.0
        self.register_buffer("mixing", mixing, persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """Logits (B, num_classes) of point clouds (B, K, 3)."""
        return self.backbone(positions) @ self.mixing.to(positions.dtype).T

    def reflection_permutation(self) -> list[int]:
        """The permutation of the logits caused by an improper element of O(3)."""
        perm = list(range(self.num_classes))
        for a, b in self.chiral_pairs:
            perm[a], perm[b] = b, a
        return perm


class E3TensorRegressor(nn.Module):
    """Predicts a symmetric 3x3 tensor (such as an inertia tensor) from weighted points.

    The backbone outputs ``0e + 2e`` (trace part and traceless symmetric part, the l=0 and l=2
    pieces of a symmetric rank-2 tensor) which are mapped to a (B, 3, 3) matrix by the change of
    basis of e3nn's ``ReducedTensorProducts("ij=ji")``; the output transforms as
    ``T -> R T R^T`` for every R in O(3).

    Args:
        **backbone: arguments of :class:`E3PointBackbone` (``input_scalars`` defaults to 1: one
            scalar such as a mass per point; ``pool`` defaults to ``"sum"``).
    """

    def __init__(self, **backbone) -> None:
        super().__init__()
        o3, _ = _e3nn()
        backbone = {"input_scalars": 1, "pool": "sum", **backbone}
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # an exact change of basis, kept in float64
        try:
            rtp = o3.ReducedTensorProducts("ij=ji", i="1o")
            basis = rtp.change_of_basis.detach().clone().to(torch.float64)
            irreps_out = str(rtp.irreps_out)
        finally:
            torch.set_default_dtype(previous)
        self.backbone = E3PointBackbone(irreps_out, **backbone)
        # a plain attribute (not a buffer), so casting the module to float32 keeps it exact
        self._basis = basis  # (irreps_dim, 3, 3)

    def forward(self, positions: Tensor, scalars: Tensor | None = None) -> Tensor:
        """Symmetric tensors (B, 3, 3) of clouds ``positions`` (B, K, 3) with ``scalars`` (B, K)."""
        features = self.backbone(positions, scalars)
        return torch.einsum("bk,kij->bij", features, self._basis.to(features))


def measure_o3_invariance(
    network: nn.Module, arguments: Mapping[str, Any], loaders: Mapping[str, Any]
) -> dict[str, float]:
    """Largest relative change of the logits of 32 seeded clouds (4 copies of the 8 shapes)
    under 5 Haar-random O(3) elements (improper ones swap the chiral logits) composed with a
    translation, for the network rebuilt and evaluated in float32 and in float64."""
    from geozoo.data.pointclouds import tetris_dataset
    from geozoo.testing import (
        Transform,
        compose,
        default_dtype,
        equivariance_error,
        random_orthogonal_3d,
        translate_points,
    )

    state = network.state_dict()
    results: dict[str, float] = {}
    for dtype, tag in ((torch.float32, "float32"), (torch.float64, "float64")):
        with default_dtype(dtype):
            model = type(network)(**arguments)
        model.load_state_dict(state)
        model = model.to(dtype).eval()
        x, _ = tetris_dataset(4, seed=7, group="o3", dtype=dtype)
        worst = 0.0
        for seed in range(5):
            g = random_orthogonal_3d(seed, improper=seed % 2 == 1)
            perm = model.reflection_permutation() if seed % 2 == 1 else list(range(8))
            t_out = Transform(lambda y, p=perm: y[:, p], "logit permutation")
            moved = compose(translate_points([2.0, -1.0, 3.0]), g)
            worst = max(worst, equivariance_error(model, x, moved, t_out, dtype=dtype).max)
        results[f"logit_rel_error_o3_translation_{tag}_max"] = float(f"{worst:.3g}")
    return results


@register_model(
    pretrained_cfg=PretrainedCfg(
        input=InputSpec((4, 3), (float("-inf"), float("inf"))), measure=measure_o3_invariance
    )
)
def e3nn_tetris(**kwargs) -> E3PointClassifier:
    """E(3)-equivariant classifier of the 8 3D Tetris shapes (classes 0 and 1 are the chiral
    pair); input positions (B, 4, 3) in voxel units."""
    return E3PointClassifier(**{"num_classes": 8, "chiral_pairs": ((0, 1),), **kwargs})
