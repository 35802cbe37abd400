"""Public equivariance testing: measure and assert ``f(g . x) == g . f(x)`` for any callable.

A network ``f`` is equivariant to a transformation ``g`` when transforming the input and then
applying ``f`` gives the same result as applying ``f`` and then transforming the output with the
matching output action (the identity for invariant outputs such as class logits). This module
measures the relative error

    err(x, g) = || f(T_in(g) x) - T_out(g) f(x) || / || T_out(g) f(x) ||

per sample, as in the equivariance tests of e3nn (Geiger & Smidt, 2022, "e3nn: Euclidean neural
networks", section 5) and escnn (Cesa, Lang & Weiler, ICLR 2022). It works on any torch module,
geozoo's or a user's, and evaluates in float64 when the module allows it so that the check itself
adds no rounding error.

Ready-made transformations:

* images (N, C, H, W): :func:`rot90`, :func:`flip`, :func:`translate` (integer, circular or
  zero-filled), :func:`affine` (general affine map by bilinear resampling), and
  :func:`fiber_transform` for feature maps whose channels also transform (steerable fields);
* point clouds (..., K, 3): :func:`rotation_3d` / :func:`random_rotation_3d` (SO(3)),
  :func:`random_orthogonal_3d` (O(3)), :func:`translate_points`, :func:`permute_points`, and
  :func:`irreps_transform` / :func:`conjugate` for equivariant outputs.

Example::

    from geozoo.testing import assert_equivariant, rot90
    assert_equivariant(model, images, [rot90(k) for k in range(1, 4)])  # invariant logits
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from geozoo.groups.haar import haar_orthogonal

__all__ = [
    "DEFAULT_TOLERANCE",
    "EquivarianceResult",
    "Transform",
    "affine",
    "assert_equivariant",
    "compose",
    "conjugate",
    "d4_elements",
    "default_dtype",
    "disc_mask",
    "equivariance_error",
    "fiber_transform",
    "flip",
    "identity",
    "irreps_transform",
    "parameter_dtype",
    "permute_points",
    "random_orthogonal_3d",
    "random_rotation_3d",
    "relative_errors",
    "rot90",
    "rotate",
    "rotation_3d",
    "transform_pairs",
    "translate",
    "translate_points",
]

#: Default bound on the maximum relative error, by evaluation dtype (as e3nn's FLOAT_TOLERANCE).
DEFAULT_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 1e-4,
    torch.bfloat16: 5e-2,
    torch.float16: 1e-2,
}


class Transform:
    """A named tensor-to-tensor map ``x -> g . x`` (one group element acting on one space).

    Args:
        fn: the action; it must work in whatever float dtype it is given.
        name: shown in error messages.
        matrix: the group element ``g`` as the matrix of its action on coordinates, when it has
            one (float64): the ``(2, 2)`` linear part acting on ``(x, y)`` pixel coordinates
            about the image centre (x to the right, y down; the convention of
            :func:`geozoo.data.transforms.affine_warp`) for images, the ``(3, 3)`` matrix acting
            on points for point clouds, the ``(K, K)`` permutation matrix acting on the point
            axis for :func:`permute_points`. Transforms built on another one (:func:`conjugate`,
            :func:`irreps_transform`, :func:`fiber_transform`) carry that one's element.
        translation: the translation part of an affine element (pixels ``(x, y)``, or point
            coordinates), or ``None`` for a linear one.

    Attributes:
        matrix: ``Tensor | None``, so objectives and metrics can read the group element instead
            of re-deriving it (a pixel at ``p`` moves to ``matrix (p - c) + c + translation``).
        translation: ``Tensor | None``.
    """

    matrix: Tensor | None
    translation: Tensor | None

    def __init__(
        self,
        fn: Callable[[Tensor], Tensor],
        name: str,
        matrix: Tensor | Sequence[Sequence[float]] | None = None,
        translation: Tensor | Sequence[float] | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.matrix = None if matrix is None else torch.as_tensor(matrix, dtype=torch.float64)
        self.translation = (
            None if translation is None else torch.as_tensor(translation, dtype=torch.float64)
        )
        if self.matrix is not None and (
            self.matrix.dim() != 2 or self.matrix.shape[0] != self.matrix.shape[1]
        ):
            raise ValueError(f"matrix must be square (n, n), got {tuple(self.matrix.shape)}")
        if self.translation is not None and (
            self.matrix is None or self.translation.shape != self.matrix.shape[:1]
        ):
            raise ValueError(
                "translation needs a matrix of the same size: got translation "
                f"{tuple(self.translation.shape)} and matrix "
                f"{None if self.matrix is None else tuple(self.matrix.shape)}"
            )

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def __repr__(self) -> str:
        return f"Transform({self.name})"


def identity() -> Transform:
    """The trivial action (for invariant outputs)."""
    return Transform(lambda x: x, "identity")


def compose(*transforms: Transform) -> Transform:
    """``compose(a, b)(x) == a(b(x))``: apply the last transform first.

    The result carries the product of the group elements, ``(A_a, t_a)(A_b, t_b) = (A_a A_b,
    A_a t_b + t_a)``, when every transform has a matrix of the same size (else ``None``).
    """

    def fn(x: Tensor) -> Tensor:
        for transform in reversed(transforms):
            x = transform(x)
        return x

    matrix = translation = None
    sizes = {None if t.matrix is None else t.matrix.shape for t in transforms}
    if transforms and len(sizes) == 1 and None not in sizes:
        matrix = torch.eye(transforms[0].matrix.shape[0], dtype=torch.float64)  # type: ignore[union-attr]
        shift = torch.zeros(matrix.shape[0], dtype=torch.float64)
        for t in transforms:
            if t.translation is not None:
                shift = shift + matrix @ t.translation
            matrix = matrix @ t.matrix  # type: ignore[operator]
        has_shift = any(t.translation is not None for t in transforms)
        translation = shift if has_shift else None
    return Transform(fn, " o ".join(t.name for t in transforms), matrix, translation)


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def rot90(k: int = 1) -> Transform:
    """Rotate the last two (spatial) axes by ``k`` quarter turns (``torch.rot90`` on (-2, -1)).

    Exact on any square pixel grid: no resampling, so equivariant models agree to rounding.
    On screen (row 0 at the top) ``k=1`` turns the image counter-clockwise: in ``(x, y)``
    pixel coordinates (y down) ``matrix = [[0, 1], [-1, 0]]^k``, as :func:`rotate` with
    ``90 k`` degrees.
    """
    quarter = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    matrix = torch.linalg.matrix_power(quarter, k % 4)
    return Transform(lambda x: torch.rot90(x, k, dims=(-2, -1)), f"rot90(k={k})", matrix)


def flip(axis: str = "horizontal") -> Transform:
    """Mirror an image: ``"horizontal"`` reverses columns (x -> -x), ``"vertical"`` rows."""
    if axis not in ("horizontal", "vertical"):
        raise ValueError(f"axis must be 'horizontal' or 'vertical', got {axis!r}")
    dim = -1 if axis == "horizontal" else -2
    matrix = torch.diag(torch.tensor([-1.0, 1.0] if axis == "horizontal" else [1.0, -1.0]))
    return Transform(lambda x: torch.flip(x, dims=(dim,)), f"flip({axis})", matrix)


def d4_elements() -> list[Transform]:
    """The 7 non-identity elements of the dihedral group D4 of the square pixel grid."""
    elements = [rot90(k) for k in range(1, 4)]
    elements += [compose(rot90(k), flip("horizontal")) for k in range(4)]
    return elements


def translate(dx: int, dy: int, circular: bool = True) -> Transform:
    """Shift images by integer pixels: ``dx`` columns right and ``dy`` rows down.

    With ``circular=True`` the image wraps around (exact for circularly padded convolutions);
    otherwise vacated pixels are zero and content shifted out is lost (compare with a
    :func:`disc_mask` or crop away from the border).
    """
    dx, dy = int(dx), int(dy)

    def fn(x: Tensor) -> Tensor:
        if circular:
            return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
        out = torch.zeros_like(x)
        h, w = x.shape[-2:]
        src_rows = slice(max(0, -dy), min(h, h - dy))
        dst_rows = slice(max(0, dy), min(h, h + dy))
        src_cols = slice(max(0, -dx), min(w, w - dx))
        dst_cols = slice(max(0, dx), min(w, w + dx))
        out[..., dst_rows, dst_cols] = x[..., src_rows, src_cols]
        return out

    name = f"translate({dx}, {dy}, circular={circular})"
    return Transform(fn, name, torch.eye(2), [float(dx), float(dy)])


def affine(
    matrix: Tensor | Sequence[Sequence[float]], translation: Sequence[float] = (0, 0)
) -> Transform:
    """General affine map ``p -> A (p - c) + c + t`` of (N, C, H, W) images about their centre,
    by bilinear resampling with zero padding (:func:`geozoo.data.transforms.affine_warp`).

    Resampling is not exact: use :func:`disc_mask` and a measured tolerance.
    """
    from geozoo.data.transforms import affine_warp

    a = torch.as_tensor(matrix, dtype=torch.float64)
    t = torch.as_tensor(translation, dtype=torch.float64)
    if a.shape != (2, 2) or t.shape != (2,):
        raise ValueError(
            f"expected a (2, 2) matrix and a (2,) translation, got {tuple(a.shape)} and "
            f"{tuple(t.shape)}"
        )

    def fn(x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, 1, *shape[-2:]) if x.dim() != 4 else x
        return affine_warp(flat, a.to(x), t.to(x)).reshape(shape)

    return Transform(fn, f"affine({a.tolist()}, {t.tolist()})", a, t)


def rotate(angle_deg: float) -> Transform:
    """Rotate images by ``angle_deg`` about their centre by resampling (see :func:`affine`).

    Uses the same orientation as :func:`rot90`: ``rotate(90)`` matches ``rot90(1)`` up to
    interpolation at the border.
    """
    theta = math.radians(angle_deg)
    c, s = math.cos(theta), math.sin(theta)
    # affine_warp rotates counter-clockwise in (x, y) with y down, i.e. clockwise on screen;
    # rot90 turns counter-clockwise on screen, so use the inverse angle.
    transform = affine([[c, s], [-s, c]])
    transform.name = f"rotate({angle_deg} deg)"
    return transform


def disc_mask(size: int | Sequence[int], margin: float = 0.0) -> Tensor:
    """A boolean (H, W) mask of the disc inscribed in the image, shrunk by ``margin`` pixels.

    Rotating a square image by a non-multiple of 90 degrees moves corner pixels out of the frame;
    compare outputs only inside this disc.
    """
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    rows = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
    cols = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
    radius = min(h, w) / 2 - margin
    return (rows[:, None] ** 2 + cols[None, :] ** 2) <= radius**2


def fiber_transform(spatial: Transform, matrix: Tensor) -> Transform:
    """Act on a feature map (N, C, H, W) by moving pixels with ``spatial`` and mixing channels by
    the (C, C) matrix ``rho(g)``: ``(g . f)(x) = rho(g) f(g^-1 x)`` (steerable fields, Cohen &
    Welling 2017, eq. 1).

    For escnn field types, ``matrix = torch.as_tensor(field_type.representation(g))``.
    """
    rho = torch.as_tensor(matrix)
    if rho.dim() != 2 or rho.shape[0] != rho.shape[1]:
        raise ValueError(f"expected a square (C, C) representation matrix, got {tuple(rho.shape)}")

    def fn(x: Tensor) -> Tensor:
        if x.shape[1] != rho.shape[0]:
            raise ValueError(
                f"representation has size {rho.shape[0]} but the feature map has {x.shape[1]} "
                f"channels (shape {tuple(x.shape)})"
            )
        return torch.einsum("ij,nj...->ni...", rho.to(x), spatial(x))

    name = f"fiber({spatial.name}, {rho.shape[0]}x{rho.shape[0]})"
    return Transform(fn, name, spatial.matrix, spatial.translation)


# --------------------------------------------------------------------------------------------
# point clouds
# --------------------------------------------------------------------------------------------


def rotation_3d(matrix: Tensor | Sequence[Sequence[float]]) -> Transform:
    """Act on points (..., K, 3) by ``x -> R x`` for a given 3x3 orthogonal ``R`` (rows of the
    input are points, so this computes ``x @ R^T``)."""
    r = torch.as_tensor(matrix, dtype=torch.float64)
    if r.shape != (3, 3):
        raise ValueError(f"expected a (3, 3) matrix, got {tuple(r.shape)}")
    error = float((r @ r.T - torch.eye(3, dtype=torch.float64)).abs().max())
    if error > 1e-6:
        raise ValueError(f"expected an orthogonal matrix, got R R^T - I of size {error:.2e}")

    def fn(x: Tensor) -> Tensor:
        if x.shape[-1] != 3:
            raise ValueError(f"expected points of shape (..., 3), got {tuple(x.shape)}")
        return x @ r.to(x).T

    return Transform(fn, f"rotation_3d(det={float(torch.linalg.det(r)):+.0f})", r)


def _haar_3d(seed: int | None, det: int | None) -> Tensor:
    generator = torch.Generator()
    generator.manual_seed(torch.seed() if seed is None else int(seed))
    return haar_orthogonal(1, 3, generator, torch.float64, det=det)[0]


def random_rotation_3d(seed: int | None = None) -> Transform:
    """A Haar-random element of SO(3) acting on points (..., K, 3); ``.matrix`` holds R."""
    return rotation_3d(_haar_3d(seed, det=1))


def random_orthogonal_3d(seed: int | None = None, improper: bool | None = None) -> Transform:
    """A Haar-random element of O(3): a rotation or a rotation composed with a reflection.

    ``improper=True`` forces det = -1 (a reflection part), ``False`` forces a rotation,
    ``None`` draws either with probability 1/2 (Haar on O(3), on its component otherwise).
    """
    det = None if improper is None else (-1 if improper else 1)
    return rotation_3d(_haar_3d(seed, det))


def translate_points(shift: Sequence[float] | Tensor) -> Transform:
    """Translate points (..., K, 3) by the vector ``shift``."""
    t = torch.as_tensor(shift, dtype=torch.float64)
    if t.shape != (3,):
        raise ValueError(f"expected a (3,) shift, got {tuple(t.shape)}")
    name = f"translate_points({t.tolist()})"
    return Transform(lambda x: x + t.to(x), name, torch.eye(3), t)


def permute_points(permutation: Sequence[int] | Tensor, dim: int = -2) -> Transform:
    """Reorder points (or any per-point quantity) along ``dim`` by ``permutation``."""
    perm = torch.as_tensor(permutation, dtype=torch.long)
    if sorted(perm.tolist()) != list(range(len(perm))):
        raise ValueError(f"expected a permutation of 0..{len(perm) - 1}, got {perm.tolist()}")

    def fn(x: Tensor) -> Tensor:
        return torch.index_select(x, dim, perm.to(x.device))

    matrix = torch.eye(len(perm), dtype=torch.float64)[perm]  # (P x)_i = x_perm[i]
    return Transform(fn, f"permute_points({perm.tolist()})", matrix)


def conjugate(rotation: Transform) -> Transform:
    """Act on (..., 3, 3) matrices by ``M -> R M R^T`` (rank-2 tensors such as inertia)."""
    r = _element(rotation)
    return Transform(lambda m: r.to(m) @ m @ r.to(m).T, f"conjugate({rotation.name})", r)


def _element(rotation: Transform) -> Tensor:
    if rotation.matrix is None or rotation.matrix.shape != (3, 3):
        raise ValueError(
            f"expected a transform carrying a (3, 3) matrix (rotation_3d, random_rotation_3d, "
            f"...), got {rotation!r} with matrix "
            f"{None if rotation.matrix is None else tuple(rotation.matrix.shape)}"
        )
    return rotation.matrix


def irreps_transform(irreps: str, rotation: Transform) -> Transform:
    """Act on e3nn irreps features (..., irreps.dim) by the Wigner matrices of ``rotation``
    (needs e3nn; parity is taken from the sign of ``det R``)."""
    from e3nn import o3

    r = _element(rotation)
    # e3nn builds its Lie-algebra generators in the default dtype: use float64 so that the
    # Wigner matrices are exact to ~1e-15 rather than ~1e-7
    with default_dtype(torch.float64):
        d = o3.Irreps(irreps).D_from_matrix(r.to(torch.float64))
    return Transform(lambda f: f @ d.to(f).T, f"irreps({irreps}, {rotation.name})", r)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Temporarily set torch's default dtype, e.g. to build a model whose constants (e3nn's
    Clebsch-Gordan coefficients, escnn's bases) are computed in float64::

        with default_dtype(torch.float64):
            model = build()  # constants exact to ~1e-16, not rounded to float32
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


# --------------------------------------------------------------------------------------------
# the measurement
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EquivarianceResult:
    """Relative equivariance errors of one check.

    Attributes:
        max: the largest relative error over all samples and transforms.
        mean: the mean relative error.
        per_transform: the maximum for each transform, in the order given.
        dtype: the dtype the function was evaluated in.
        precision: the least precise of ``dtype`` and the module's own floating parameters and
            buffers before the cast (a float32 network evaluated in float64 keeps its float32
            weights' rounding); the default tolerance is the one of this dtype.
    """

    max: float
    mean: float
    per_transform: tuple[float, ...]
    dtype: torch.dtype
    precision: torch.dtype | None = None

    @property
    def default_tolerance(self) -> float:
        """:data:`DEFAULT_TOLERANCE` of :attr:`precision` (of :attr:`dtype` if unset)."""
        return DEFAULT_TOLERANCE.get(self.precision or self.dtype, DEFAULT_TOLERANCE[torch.float32])


def _as_list(transforms: Transform | Sequence[Transform] | None) -> list[Transform] | None:
    if transforms is None:
        return None
    if callable(transforms) and not isinstance(transforms, Sequence):
        return [transforms]  # type: ignore[list-item]
    return list(transforms)  # type: ignore[arg-type]


def transform_pairs(
    transform_in: Transform | Sequence[Transform],
    transform_out: Transform | Sequence[Transform] | None = None,
) -> tuple[list[Transform], list[Transform] | None]:
    """Normalise ``(transform_in, transform_out)`` as every function here takes them: one
    transform or a list each, the same number of each, ``transform_out=None`` for invariance."""
    ins = _as_list(transform_in) or []
    outs = _as_list(transform_out)
    if not ins:
        raise ValueError("expected at least one input transform")
    if outs is not None and len(outs) != len(ins):
        raise ValueError(
            f"got {len(ins)} input transforms but {len(outs)} output transforms; pass one output "
            "action per input action, or transform_out=None for an invariant function"
        )
    return ins, outs


_PRECISION = [torch.float64, torch.float32, torch.float16, torch.bfloat16]  # most precise first


def _least_precise(dtypes: Sequence[torch.dtype]) -> torch.dtype:
    known = [d for d in dtypes if d in _PRECISION]
    return max(known, key=_PRECISION.index) if known else dtypes[0]


def parameter_dtype(fn: Callable[[Tensor], Tensor]) -> torch.dtype | None:
    """The least precise floating dtype among a module's parameters and buffers (``None`` for
    plain callables and modules without floating tensors)."""
    if not isinstance(fn, nn.Module):
        return None
    dtypes = {t.dtype for t in [*fn.parameters(), *fn.buffers()] if t.is_floating_point()}
    return _least_precise(sorted(dtypes, key=str)) if dtypes else None


def relative_errors(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    transform_in: Transform,
    transform_out: Transform | None = None,
    mask: Tensor | None = None,
    reference: Tensor | None = None,
) -> Tensor:
    """Per-sample relative errors ``|f(g x) - g f(x)| / |g f(x)|`` (shape (N,)), in ``x``'s dtype.

    ``mask`` (broadcastable to the output) selects the entries that are compared;
    ``reference`` is ``f(x)`` if it was already computed.
    """
    out = fn(x) if reference is None else reference
    expected = out if transform_out is None else transform_out(out)
    actual = fn(transform_in(x))
    if actual.shape != expected.shape:
        raise ValueError(
            f"f(g x) has shape {tuple(actual.shape)} but g f(x) has shape {tuple(expected.shape)}:"
            " check that transform_out acts on the output space"
        )
    if mask is not None:
        keep = mask.to(device=actual.device, dtype=torch.bool)
        actual = actual * keep
        expected = expected * keep
    diff = (actual - expected).reshape(actual.shape[0], -1).norm(dim=1)
    scale = expected.reshape(expected.shape[0], -1).norm(dim=1)
    return diff / scale.clamp_min(torch.finfo(scale.dtype).tiny)


def _copy_module(module: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also copies modules holding non-leaf tensors (escnn's eval-mode
    filters are computed with autograd history), as detached clones."""
    memo: dict[int, Tensor] = {}
    for sub in module.modules():
        for value in [*sub._buffers.values(), *vars(sub).values()]:
            if isinstance(value, Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(module, memo)


def _cast_for_evaluation(
    fn: Callable[[Tensor], Tensor], x: Tensor, dtype: torch.dtype | None, eval_mode: bool
) -> tuple[Callable[[Tensor], Tensor], Tensor, torch.dtype]:
    """A copy of ``fn`` (if a module) in ``dtype`` and eval mode, falling back to ``x.dtype``."""
    target = x.dtype if dtype is None else dtype
    if isinstance(fn, nn.Module):
        module = _copy_module(fn)
        if eval_mode:
            module.eval()
        if target != x.dtype or any(
            p.is_floating_point() and p.dtype != target
            for p in [*module.parameters(), *module.buffers()]
        ):
            try:
                module = module.to(target)
                with torch.no_grad():
                    module(x[:1].to(target))
            except (RuntimeError, TypeError, ValueError):
                module, target = _copy_module(fn), x.dtype
                if eval_mode:
                    module.eval()
        return module, x.to(target), target
    return fn, x.to(target), target


def equivariance_error(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    transform_in: Transform | Sequence[Transform],
    transform_out: Transform | Sequence[Transform] | None = None,
    *,
    dtype: torch.dtype | None = torch.float64,
    mask: Tensor | None = None,
    eval_mode: bool = True,
) -> EquivarianceResult:
    """Measure how far ``fn`` is from equivariant on the batch ``x``.

    Args:
        fn: any callable or ``nn.Module`` mapping a batch (N, ...) to outputs (N, ...).
            Modules are deep-copied (the caller's module is not touched), put in eval mode and
            cast to ``dtype``.
        x: an input batch; the first axis indexes samples.
        transform_in: one :class:`Transform` or a list (group elements acting on inputs).
        transform_out: the matching output actions (same length), or ``None`` for invariance.
        dtype: evaluation dtype; float64 by default. If the module cannot run in it (for example
            a compiled or quantised module), its own dtype is used and reported.
        mask: optional boolean mask broadcastable to the output, e.g. :func:`disc_mask` for
            resampled rotations.
        eval_mode: evaluate a module in eval mode (batch norm statistics, no dropout).

    Returns:
        :class:`EquivarianceResult` with the max and mean relative error over samples and
        transforms, and the max per transform.
    """
    ins, outs = transform_pairs(transform_in, transform_out)
    own = parameter_dtype(fn)
    model, xs, used = _cast_for_evaluation(fn, x, dtype, eval_mode)
    errors = []
    with torch.no_grad():
        reference = model(xs)
        for index, t_in in enumerate(ins):
            t_out = None if outs is None else outs[index]
            errors.append(relative_errors(model, xs, t_in, t_out, mask, reference))
    stacked = torch.stack(errors)  # (transforms, N)
    return EquivarianceResult(
        max=float(stacked.max()),
        mean=float(stacked.mean()),
        per_transform=tuple(float(e.max()) for e in errors),
        dtype=used,
        precision=used if own is None else _least_precise([used, own]),
    )


def assert_equivariant(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    transform_in: Transform | Sequence[Transform],
    transform_out: Transform | Sequence[Transform] | None = None,
    *,
    tolerance: float | None = None,
    dtype: torch.dtype | None = torch.float64,
    mask: Tensor | None = None,
    eval_mode: bool = True,
) -> EquivarianceResult:
    """Raise ``AssertionError`` unless the maximum relative error is at most ``tolerance``.

    ``tolerance`` defaults to :data:`DEFAULT_TOLERANCE` of the precision actually used
    (:attr:`EquivarianceResult.precision`): 1e-9 for a float64 module evaluated in float64,
    1e-4 when float32 enters, either as the evaluation dtype or as the module's own weights (a
    float32 network evaluated in float64 still carries float32 rounding in its weights). Right
    for exact group elements (90-degree rotations, flips, permutations, 3D rotations of point
    clouds); for resampled rotations pass a measured budget. Arguments as in
    :func:`equivariance_error`; returns its result.
    """
    ins, outs = transform_pairs(transform_in, transform_out)
    result = equivariance_error(fn, x, ins, outs, dtype=dtype, mask=mask, eval_mode=eval_mode)
    bound = result.default_tolerance if tolerance is None else tolerance
    if not result.max <= bound:  # also catches NaN
        worst = max(range(len(ins)), key=lambda i: result.per_transform[i])
        source = "given" if tolerance is not None else f"default for {result.precision}"
        if result.precision != result.dtype and tolerance is None:
            source += f" weights evaluated in {result.dtype}"
        advice = (
            "the outputs are not finite"
            if not math.isfinite(result.max)
            else f"if this error is expected, pass tolerance={_round_up(result.max):.0e}"
        )
        raise AssertionError(
            f"not equivariant: max relative error {result.max:.3e} (mean {result.mean:.3e}) "
            f"exceeds tolerance {bound:.1e} ({source}); worst transform "
            f"{ins[worst].name} -> {'identity' if outs is None else outs[worst].name} "
            f"(error {result.per_transform[worst]:.3e}); {advice}"
        )
    return result


def _round_up(value: float) -> float:
    """A round tolerance above ``value``: 1, 2 or 5 times a power of ten, with a factor 2 margin."""
    exponent = math.floor(math.log10(2 * value))
    for step in (1, 2, 5, 10):
        if step * 10.0**exponent >= 2 * value:
            return step * 10.0**exponent
    return 10.0 ** (exponent + 1)  # pragma: no cover - the loop always returns
