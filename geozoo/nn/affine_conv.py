"""Affine group convolutions on images for ``R^2 x| H`` with ``H`` in {GL+(2), SL(2), SO(2),
rotation-scaling}, after Mironenco & Forre, "Lie Group Decompositions for Equivariant Neural
Networks", ICLR 2024 (arXiv 2310.11366), Sec. 4-5.

Feature maps on ``R^2 x H`` are sampled at a finite set of group elements ``h_1..h_G`` shared by
every layer of one forward pass and stored as tensors of shape ``(N, G, C, H, W)``.

* :class:`AffineLiftingConv2d` (``R^2 -> R^2 x H``):
  ``out(x, h_i) = sum_y k(h_i^{-1} y) f(x + y) / |det h_i|``.
* :class:`AffineGroupConv2d` (``R^2 x H -> R^2 x H``): the Monte-Carlo group convolution
  ``out(x, h_i) = 1/G sum_j sum_y k(h_i^{-1} y, xi^{-1}(h_i^{-1} h_j)) f(x + y, h_j) / |det h_i|``
  with the *separable* kernel ``k^{oc}(y, g) = k_S^{oc}(y) k_H^{c}(g)`` (Knigge, Romero &
  Bekkers, ICML 2022): a group-axis mixing per input channel followed by one grouped spatial
  convolution, instead of the paper's dense ``(C G) x (C G)`` convolution.
* :class:`GroupPool` pools over the group axis (invariant features).

Kernels are continuous functions so that they can be evaluated at any sample: the spatial part
is a learned combination of Gaussian radial basis functions centred on integer offsets,
evaluated at the transformed offsets ``h_i^{-1} y``; the group part is a small MLP of the global
chart ``xi^{-1}`` of the relative element (rotation angle embedded as ``(cos, sin)`` so the
kernel is continuous on SO(2), then the coordinates of ``log P``).

:class:`AffineSampler` draws the samples: in training a random rotation offset and fresh
log-normal positive factors on every call; in evaluation a fixed grid (equally spaced rotations
times seeded positive factors whose first one is the identity). Layers cache their kernels in
evaluation mode until a parameter changes (tracked with the tensors' in-place version counters).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geozoo.groups import PolarGroup, get_group

__all__ = [
    "AffineGroupConv2d",
    "AffineLiftingConv2d",
    "AffineSampler",
    "GroupBatchNorm",
    "GroupLayerNorm",
    "GroupPool",
    "group_max_pool2d",
    "make_group",
]


def make_group(group: str | PolarGroup, pd_scale: float = 0.25) -> PolarGroup:
    """The group of the layers: a value, or a name for :func:`geozoo.groups.get_group`
    (``gl2``, ``sl2``, ``so2``, ``rs2`` / ``so2_scaling``); it must be a group of 2 x 2
    matrices with a rotation factor.

    A name gets the layers' sampler: log-normal positive factors of width ``pd_scale`` (the
    paper's Sec. 4 substitute for the infinite Haar measure); a value is used as it is.
    """
    value = get_group(group)
    if not (isinstance(value, PolarGroup) and value.n == 2 and value.rotation):
        raise ValueError(
            "the affine layers need a group of 2 x 2 matrices with a rotation factor ('gl2', "
            f"'sl2', 'so2', 'rs2' or such a PolarGroup), got {group!r}"
        )
    if isinstance(group, str) and value.positive != "none":
        value = get_group(group, pd_scale=pd_scale)
    return value  # type: ignore[return-value]


def _inv2(m: Tensor) -> tuple[Tensor, Tensor]:
    """Closed-form inverse and determinant of ``(..., 2, 2)`` matrices (no LU call)."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    inv = torch.stack([d, -b, -c, a], -1).reshape(m.shape) / det[..., None, None]
    return inv, det


def _check_samples(samples: Tensor) -> int:
    if samples.dim() != 3 or samples.shape[1:] != (2, 2):
        raise ValueError(f"expected group samples of shape (G, 2, 2), got {tuple(samples.shape)}")
    return samples.shape[0]


def _check_features(x: Tensor, channels: int, num_samples: int) -> None:
    if x.dim() != 5 or x.shape[1] != num_samples or x.shape[2] != channels:
        raise ValueError(
            f"expected group features of shape (N, G={num_samples}, C={channels}, H, W), "
            f"got {tuple(x.shape)}"
        )


class AffineSampler(nn.Module):
    """Group samples ``h_{k,m} = R(theta_k) P_m`` shared by the layers of one forward pass.

    Rotations: by default the whole circle, ``theta_k = 2 pi (k + u) / rotations``. With
    ``max_angle`` (degrees) they cover only ``[-max_angle, max_angle]``, ``theta_k = -a +
    (k + u) 2 a / rotations``: a Monte-Carlo group integral over a neighbourhood of the identity
    (partial equivariance, Romero & Lohit, NeurIPS 2022), for data whose orientation is known up
    to a bounded error, such as digits (full invariance would merge 6 and 9). The layers stay
    equivariant to the transformations that map the sample set onto itself; the pooled features
    become invariant only across the covered range. ``u`` is uniform in ``[0, 1)`` in training
    (one fresh draw per call) and fixed in evaluation: 0 on the full circle (so the grid holds
    the identity and is closed under quarter turns when ``rotations % 4 == 0``), 0.5 on a range
    (cell centres, the identity included when ``rotations`` is odd).

    Positive factors: the ``P_m`` are :meth:`~geozoo.groups.PolarGroup.sample_positive` draws
    (log-normal, the paper's Sec. 4 substitute for the infinite Haar measure on the positive
    factor), fresh on every training call; in evaluation ``P_0 = I`` and the rest are drawn
    from a generator seeded with ``eval_seed``.

    Returns a ``(rotations * positives, 2, 2)`` float64 tensor ordered rotation-major (layers
    cast it to their input's dtype).
    """

    def __init__(
        self,
        group: str | PolarGroup,
        rotations: int = 8,
        positives: int = 1,
        pd_scale: float = 0.25,
        eval_seed: int = 0,
        max_angle: float | None = None,
    ) -> None:
        super().__init__()
        self.group = make_group(group, pd_scale)
        if rotations < 1 or positives < 1:
            raise ValueError(
                f"need rotations >= 1 and positives >= 1, got {rotations}, {positives}"
            )
        if self.group.positive == "none" and positives != 1:
            raise ValueError(f"{self.group!r} has no positive factor: positives must be 1")
        if max_angle is not None and not 0 < max_angle <= 180:
            raise ValueError(f"max_angle must be in (0, 180] degrees or None, got {max_angle}")
        self.rotations, self.positives, self.eval_seed = int(rotations), int(positives), eval_seed
        self.max_angle = None if max_angle is None else float(max_angle)
        self._eval_cache: Tensor | None = None

    @property
    def num_samples(self) -> int:
        return self.rotations * self.positives

    def extra_repr(self) -> str:
        extent = "" if self.max_angle is None else f", max_angle={self.max_angle:g}"
        return f"{self.group!r}, rotations={self.rotations}, positives={self.positives}{extent}"

    def _rotations(self, u: float) -> Tensor:
        """The ``(rotations, 2, 2)`` rotation factors in float64 for the fractional offset
        ``u``. On the full circle with ``rotations % 4 == 0`` the last three quarters are exact
        quarter turns of the first (entries permuted and negated, no rounding)."""
        steps = torch.arange(self.rotations, dtype=torch.float64)
        if self.max_angle is not None:
            half = math.radians(self.max_angle)
            angles = (steps + u - self.rotations / 2) * (2 * half / self.rotations)
            return _rotation_matrices(angles)
        quarter = self.rotations // 4 if self.rotations % 4 == 0 else self.rotations
        rots = [_rotation_matrices(2 * math.pi * (steps[:quarter] + u) / self.rotations)]
        quarter_turn = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
        while len(rots) * quarter < self.rotations:
            rots.append(quarter_turn @ rots[-1])
        return torch.cat(rots)

    def _grid(self, u: float, positive: Tensor) -> Tensor:
        """``R(theta_k) P_m`` in float64, rotation-major."""
        rot = self._rotations(u).unsqueeze(1)
        return (rot @ positive.unsqueeze(0)).reshape(-1, 2, 2)

    def eval_samples(self) -> Tensor:
        """The fixed evaluation grid (float64, cached)."""
        if self._eval_cache is None:
            gen = torch.Generator().manual_seed(self.eval_seed)
            positive = self.group.sample_positive(self.positives, gen, torch.float64)
            positive[0] = torch.eye(2, dtype=torch.float64)
            self._eval_cache = self._grid(0.0 if self.max_angle is None else 0.5, positive)
        return self._eval_cache

    def forward(self, device: torch.device | None = None) -> Tensor:
        if not self.training:
            samples = self.eval_samples()
            if device is not None and samples.device != torch.device(device):
                self._eval_cache = samples = samples.to(device)  # one copy: kernels stay cached
            return samples
        u = float(torch.rand(()))
        positive = self.group.sample_positive(self.positives, None, torch.float64)
        return self._grid(u, positive).to(device)


def _rotation_matrices(angles: Tensor) -> Tensor:
    c, s = torch.cos(angles), torch.sin(angles)
    return torch.stack([c, -s, s, c], -1).reshape(-1, 2, 2)


class _RBFBasis(nn.Module):
    """Gaussian radial basis functions centred on integer offsets within ``radius`` of 0."""

    def __init__(self, kernel_size: int, radius: float, width: float) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        r = math.floor(radius)
        grid = torch.arange(-r, r + 1, dtype=torch.float32)
        centres = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(-1, 2)
        centres = centres[centres.norm(dim=-1) <= radius + 1e-6]
        half = kernel_size // 2
        offsets = torch.arange(-half, half + 1, dtype=torch.float32)
        # (k*k, 2) offsets (x, y) in the row-major order of a conv2d kernel (row = y, col = x)
        pixel = torch.stack(torch.meshgrid(offsets, offsets, indexing="xy"), -1).reshape(-1, 2)
        self.register_buffer("centres", centres, persistent=False)
        self.register_buffer("pixels", pixel, persistent=False)
        self.kernel_size, self.width = kernel_size, float(width)

    @property
    def size(self) -> int:
        return self.centres.shape[0]

    def forward(self, samples: Tensor, volume: bool) -> Tensor:
        """Basis values at ``h_i^{-1} y``, divided by ``|det h_i|`` when ``volume``:
        shape ``(G, B, k, k)``."""
        inv, det = _inv2(samples)  # (G, 2, 2), (G,)
        points = torch.einsum("gab,pb->gpa", inv, self.pixels)  # (G, k*k, 2)
        dist2 = ((points.unsqueeze(2) - self.centres) ** 2).sum(-1)  # (G, k*k, B)
        values = torch.exp(-0.5 * dist2 / self.width**2)
        if volume:
            values = values / det.abs()[:, None, None]
        k = self.kernel_size
        return values.permute(0, 2, 1).reshape(samples.shape[0], -1, k, k)


class _CachedKernel(nn.Module):
    """Mixin: cache ``self._make_kernel(samples)`` in eval mode until a parameter changes."""

    def _cache_key(self, samples: Tensor, dtype: torch.dtype) -> tuple:
        params = list(self.parameters())
        return (
            samples.data_ptr(),
            samples._version,
            samples.device,
            dtype,
            torch.is_inference_mode_enabled(),
            *(p._version for p in params),
            *(p.data_ptr() for p in params),
        )

    def kernel(self, samples: Tensor, dtype: torch.dtype):
        """The kernel for ``samples`` in ``dtype``: recomputed in training or when gradients are
        enabled, otherwise cached until the samples or a parameter change."""
        if self.training or torch.is_grad_enabled():
            self._cache = None
            return self._make_kernel(samples.to(dtype))
        key = self._cache_key(samples, dtype)
        cache = getattr(self, "_cache", None)
        if cache is not None and cache[0] == key:
            return cache[1]
        value = self._make_kernel(samples.to(dtype))
        self._cache = (key, value)
        return value


class AffineLiftingConv2d(_CachedKernel):
    """Lifting convolution ``R^2 -> R^2 x| H`` (Mironenco & Forre, Sec. 4, lifting layer):
    ``out(x, h_i)^o = sum_{c, y} k^{oc}(h_i^{-1} y) f^c(x + y) / |det h_i|``.

    The continuous kernel ``k^{oc}(z) = sum_b w^{ocb} exp(-|z - c_b|^2 / (2 width^2))`` uses
    Gaussians on the integer points ``c_b`` with ``|c_b| <= basis_radius``.

    Input ``(N, C_in, H, W)``, samples ``(G, 2, 2)``; output ``(N, G, C_out, H', W')`` with the
    spatial size of a ``conv2d`` with the given ``padding``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 5,
        basis_radius: float = 2.0,
        basis_width: float = 0.7,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.padding = in_channels, out_channels, padding
        self.basis = _RBFBasis(kernel_size, basis_radius, basis_width)
        scale = 1.0 / math.sqrt(in_channels * self.basis.size)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, self.basis.size) * scale)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def _make_kernel(self, samples: Tensor) -> Tensor:
        basis = self.basis(samples, volume=True)  # (G, B, k, k)
        kernel = torch.einsum("ocb,gbyx->gocyx", self.weight, basis)
        k = self.basis.kernel_size
        return kernel.reshape(-1, self.in_channels, k, k)

    def forward(self, x: Tensor, samples: Tensor) -> Tensor:
        g = _check_samples(samples)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        kernel = self.kernel(samples, x.dtype)
        bias = None if self.bias is None else self.bias.repeat(g)
        out = F.conv2d(x, kernel, bias, padding=self.padding)
        return out.view(x.shape[0], g, self.out_channels, *out.shape[-2:])


class AffineGroupConv2d(_CachedKernel):
    """Separable group convolution on ``R^2 x| H`` (Mironenco & Forre, Sec. 4, group
    convolution, with a separable kernel as in Knigge, Romero & Bekkers, ICML 2022):

    ``u^{a}(x, h_i) = 1/G sum_j k_H^{a}(xi^{-1}(h_i^{-1} h_j)) f(x, h_j)``  (``a = 1..heads``),
    ``out^{o}(x, h_i) = sum_{a, c, y} k_S^{o, a c}(h_i^{-1} y) / |det h_i| * u^{a c}(x + y, h_i)``.

    ``k_H`` is an MLP with ``heads`` outputs on the chart features ``(cos theta, sin theta,
    vee(log P))`` of the relative element; ``k_S`` is the RBF kernel of
    :class:`AffineLiftingConv2d`. Both depend only on relative quantities, so the layer is
    equivariant to ``R^2 x| H`` up to the quadrature of the group integral. The group mixing is
    one GEMM over the group axis (no transposing copies) and the spatial part one grouped
    ``conv2d`` with ``G`` groups: ``G heads C_in C_out k^2`` multiply-adds per pixel instead of
    the ``G^2 C_in C_out k^2`` of the paper's dense kernel.

    ``group_kernel="delta"`` replaces ``k_H`` by the point mass at the identity,
    ``u(x, h_i) = f(x, h_i)``: each sample only sees its own features, through the spatial kernel
    deformed by ``h_i``, and there is no group MLP. A stack of such layers is a weight-tied CNN
    run once per sample, approximately on the input warped by ``h_i^{-1}``, and a max over the
    samples is then transformation-invariant pooling (Laptev et al., "TI-pooling", CVPR 2016).
    It is the choice for samples over a range of rotations (``AffineSampler(max_angle=...)``):
    a rotation by one sample step moves every sample's features to its neighbour's (exactly
    when the step maps the pixel grid onto itself, i.e. quarter turns, approximately
    otherwise), while an MLP kernel mixes each sample with samples that fall outside the range,
    so every layer adds boundary effects. It is also cheaper (no group-axis product).

    ``padding_mode="replicate"`` or ``"reflect"`` pads with the border's values instead of zeros.
    For a trunk that keeps the background at zero (bias-free layers, uncentred norms), zero
    padding is exact and better: see :class:`geozoo.nets.AffConvNet`.

    Args:
        in_channels, out_channels: channels per group sample.
        group: the group (name or :class:`~geozoo.groups.PolarGroup`) of the samples.
        kernel_size, basis_radius, basis_width: the spatial RBF kernel (odd size, pixels).
        padding: spatial padding (default ``kernel_size // 2``, "same").
        heads: group kernels per input channel (``group_kernel="mlp"`` only; 1 for
            ``"delta"``).
        hidden: width of the group-kernel MLP (unused with ``"delta"``).
        bias: add a per-channel bias.
        padding_mode: ``"zeros"``, ``"replicate"`` or ``"reflect"``.
        group_kernel: ``"mlp"`` (default, the continuous kernel above) or ``"delta"``.

    Input ``(N, G, C_in, H, W)``, samples ``(G, 2, 2)``; output ``(N, G, C_out, H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: str | PolarGroup,
        kernel_size: int = 3,
        basis_radius: float = 1.0,
        basis_width: float = 0.7,
        padding: int | None = None,
        heads: int = 1,
        hidden: int = 16,
        bias: bool = True,
        padding_mode: str = "zeros",
        group_kernel: str = "mlp",
    ) -> None:
        super().__init__()
        if padding_mode not in ("zeros", "replicate", "reflect"):
            raise ValueError(
                f"padding_mode must be 'zeros', 'replicate' or 'reflect', got {padding_mode!r}"
            )
        if group_kernel not in ("mlp", "delta"):
            raise ValueError(f"group_kernel must be 'mlp' or 'delta', got {group_kernel!r}")
        if group_kernel == "delta" and heads != 1:
            raise ValueError(f"group_kernel='delta' has a single head, got heads={heads}")
        self.group_kernel = group_kernel
        self.padding_mode = padding_mode
        self.group = make_group(group)
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, int(heads)
        self.padding = kernel_size // 2 if padding is None else padding
        self.basis = _RBFBasis(kernel_size, basis_radius, basis_width)
        fan_in = self.heads * in_channels
        scale = 1.0 / math.sqrt(fan_in * self.basis.size)
        self.weight = nn.Parameter(torch.randn(out_channels, fan_in, self.basis.size) * scale)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        features = 2 + self.group.positive_dim
        self.group_mlp = (
            nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, self.heads))
            if group_kernel == "mlp"
            else None
        )

    def relative_features(self, samples: Tensor) -> Tensor:
        """Chart features of ``h_i^{-1} h_j``: ``(G, G, 2 + dim P)`` (no gradient needed)."""
        with torch.no_grad():
            s64 = samples.double()
            rel = _inv2(s64)[0].unsqueeze(1) @ s64.unsqueeze(0)
            coords = self.group.log(rel)
            angle = coords[..., :1]
            feats = torch.cat([torch.cos(angle), torch.sin(angle), coords[..., 1:]], -1)
        return feats.to(samples.dtype)

    def _make_kernel(self, samples: Tensor) -> tuple[Tensor | None, Tensor]:
        g = samples.shape[0]
        mixing = None
        if self.group_mlp is not None:
            mixing = self.group_mlp(self.relative_features(samples)) / g  # (G_out, G_in, heads)
            # rows ordered (sample, head) so that the product is already (N, G, heads * C, ...)
            mixing = mixing.permute(0, 2, 1).reshape(g * self.heads, g)
        basis = self.basis(samples, volume=self.group.positive == "full")
        spatial = torch.einsum("ocb,gbyx->gocyx", self.weight, basis)
        k = self.basis.kernel_size
        return mixing, spatial.reshape(-1, self.heads * self.in_channels, k, k)

    def forward(self, x: Tensor, samples: Tensor) -> Tensor:
        g = _check_samples(samples)
        _check_features(x, self.in_channels, g)
        mixing, spatial = self.kernel(samples, x.dtype)
        n, _, c, h, w = x.shape
        u = x if mixing is None else torch.matmul(mixing, x.reshape(n, g, c * h * w))
        bias = None if self.bias is None else self.bias.repeat(g)
        u = u.reshape(n, g * self.heads * c, h, w)
        if self.padding_mode != "zeros" and self.padding:
            p = self.padding
            u = F.pad(u, (p, p, p, p), mode=self.padding_mode)
            out = F.conv2d(u, spatial, bias, groups=g)
        else:
            out = F.conv2d(u, spatial, bias, padding=self.padding, groups=g)
        return out.view(n, g, self.out_channels, *out.shape[-2:])


class GroupPool(nn.Module):
    """Pool ``(N, G, C, H, W)`` over the group axis (``"max"`` or ``"mean"``) to ``(N, C, H, W)``:
    features invariant to the group part of the quadrature (paper Sec. 5, global projection)."""

    def __init__(self, mode: str = "max") -> None:
        super().__init__()
        if mode not in ("max", "mean"):
            raise ValueError(f"mode must be 'max' or 'mean', got {mode!r}")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise ValueError(f"expected group features (N, G, C, H, W), got {tuple(x.shape)}")
        return x.amax(1) if self.mode == "max" else x.mean(1)


def group_max_pool2d(x: Tensor, kernel_size: int = 2) -> Tensor:
    """Spatial max pooling of ``(N, G, C, H, W)`` features, per group sample and channel."""
    n, g, c, h, w = x.shape
    if kernel_size == 2 and h % 2 == 0 and w % 2 == 0 and not torch.is_grad_enabled():
        # the maximum of the four strided phases: 3-4x faster than max_pool2d's NCHW CPU kernel
        phases = x.view(n, g, c, h // 2, 2, w // 2, 2)
        top = torch.maximum(phases[..., 0, :, 0], phases[..., 0, :, 1])
        return torch.maximum(top, torch.maximum(phases[..., 1, :, 0], phases[..., 1, :, 1]))
    out = F.max_pool2d(x.reshape(n, g * c, h, w), kernel_size)
    return out.view(n, g, c, *out.shape[-2:])


class GroupLayerNorm(nn.Module):
    """Per-image normalisation of ``(N, G, C, H, W)`` features followed by a per-channel scale
    (and shift); it commutes with the group action and with translations.

    ``per_channel=True`` (default) normalises each channel over ``(G, H, W)`` (an instance norm
    over the group and the plane); ``per_channel=False`` over all of ``(G, C, H, W)`` (the
    LayerNorm3d of the paper's code). ``center=False`` divides by the root mean square instead
    of standardising and has no shift, so an all-zero background stays exactly zero: with
    bias-free convolutions and zero padding the whole trunk then sees the image as if it lay on
    an infinite empty canvas, so shifting a digit shifts its features, up to the frame's edge
    and the pooling stride (see :class:`geozoo.nets.AffConvNet`). Unlike batch normalisation
    neither form depends on the other images of the batch, which matters here: all images of a
    batch share one random sample set in training, so batch statistics would absorb the sample
    set's effect.
    """

    def __init__(
        self, channels: int, per_channel: bool = True, center: bool = True, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if center else None
        self.per_channel, self.center, self.eps = per_channel, center, eps

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, per_channel={self.per_channel}, center={self.center}"

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[2] != self.weight.shape[0]:
            raise ValueError(
                f"expected group features (N, G, C={self.weight.shape[0]}, H, W), "
                f"got {tuple(x.shape)}"
            )
        dims = (1, 3, 4) if self.per_channel else (1, 2, 3, 4)
        if self.center:
            var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
            x = (x - mean) * torch.rsqrt(var + self.eps)
        else:
            x = x * torch.rsqrt(x.square().mean(dim=dims, keepdim=True) + self.eps)
        x = x * self.weight[:, None, None]
        return x if self.bias is None else x + self.bias[:, None, None]


class GroupBatchNorm(nn.BatchNorm2d):
    """Batch normalisation of ``(N, G, C, H, W)`` features (or plain ``(N, C)`` vectors) with
    statistics and affine parameters per channel, shared over the group axis, so it commutes
    with the group action.

    All images of a training batch share one random sample set, so the batch statistics absorb
    that set's effect, while evaluation runs on the fixed grid. To estimate the running
    statistics on the evaluation grid instead, set ``update_stats = False`` for the training
    call (it normalises with batch statistics but leaves the running estimates alone) and run a
    separate no-grad pass on the evaluation grid with ``update_stats = True``.
    """

    update_stats: bool = True

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if x.dim() == 2:
            flat = x.view(x.shape[0], x.shape[1], 1, 1)
        elif x.dim() == 5:
            n, g, c, h, w = x.shape
            flat = x.reshape(n * g, c, h, w)
        else:
            raise ValueError(f"expected (N, G, C, H, W) or (N, C) features, got {tuple(x.shape)}")
        if self.training:
            update = self.update_stats
            out = F.batch_norm(
                flat,
                self.running_mean if update else None,
                self.running_var if update else None,
                self.weight,
                self.bias,
                True,
                self.momentum if self.momentum is not None else 0.1,
                self.eps,
            )
            if update and self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
        else:
            out = F.batch_norm(
                flat,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                False,
                0.0,
                self.eps,
            )
        return out.view(x.shape)
