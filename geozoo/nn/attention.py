"""Reduced and symmetric self-attention (Bermeitinger et al., 2024, arXiv 2410.13732).

"Reducing the Transformer Architecture to a Minimum" observes that the attention of one encoder
layer ``s`` (their Eq. 1-2),

    z_i = sum_j a_ij x_j W^V W^O,      a_i = softmax_j( x_i W^Q (W^K)^T x_j^T / sqrt(d) ),

is already nonlinear (the softmax argument is quadratic in the tokens), so the position-wise MLP
can be dropped, and that the matrices come in products that can be merged or removed:

* ``W^Q (W^K)^T`` only ever appears as one bilinear form ``W^QK`` (collapsed similarity);
* that form can be made symmetric, either by sharing one projection (``W^K = W^Q``) or by
  writing ``W^QK = T T^T`` with a lower-triangular ``T`` (the Cholesky form), which halves its
  parameters and makes every token maximally similar to directions it points in;
* ``W^V W^O`` is one matrix ``W^VO`` (collapsed value/output), or is dropped altogether, so the
  layer outputs convex combinations of its input tokens (after He & Hofmann, 2024).

:class:`ReducedSelfAttention` exposes each of these choices as an independent option and
:class:`ReducedTransformerBlock` adds the pre-norm residual block with an optional MLP. Both have
a ``parameter_count`` static method implementing the closed-form counts below, which the tests
compare with the real number of parameters.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "QKMode",
    "ReducedSelfAttention",
    "ReducedTransformerBlock",
    "Similarity",
    "VOMode",
]

QKMode = Literal["separate", "collapsed"]
Similarity = Literal["general", "symmetric"]
VOMode = Literal["separate", "collapsed", "none"]

_QK_MODES = ("separate", "collapsed")
_SIMILARITIES = ("general", "symmetric")
_VO_MODES = ("separate", "collapsed", "none")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _symmetric_scores(u: Tensor, scale: float) -> Tensor:
    """``scale * U U^T``, symmetrised so that it equals its transpose bit for bit."""
    s = u @ u.transpose(-1, -2)
    return (s + s.transpose(-1, -2)) * (0.5 * scale)


class ReducedSelfAttention(nn.Module):
    r"""Multi-head self-attention whose query/key and value/output parts can be reduced.

    With ``N = dim``, ``H = heads`` and head width ``d = N / H``, head ``h`` computes the scores
    ``S_h = X B_h X^T / sqrt(d)`` of the token matrix ``X`` (shape ``L x N``), its attention
    ``A_h = softmax(S_h)`` (row-wise, with an optional key mask) and a value path; the heads'
    outputs are combined as stated below. The options select each simplification of the paper
    independently. All attention matrices are bias-free, as in the paper's formulas.

    Similarity (``qk`` x ``similarity``) and its parameter count ``P_qk``:

    ==========  ===========  ======================================================  ============
    qk          similarity   bilinear form ``B_h``                                   ``P_qk``
    ==========  ===========  ======================================================  ============
    separate    general      ``W^Q_h (W^K_h)^T``, each ``N x d``                      ``2 N^2``
    separate    symmetric    ``W^Q_h (W^Q_h)^T`` (keys share the query projection)   ``N^2``
    collapsed   general      one free ``W^QK_h``, ``N x N``                          ``H N^2``
    collapsed   symmetric    ``T_h T_h^T``, ``T_h`` lower-triangular ``N x N``       ``H N(N+1)/2``
    ==========  ===========  ======================================================  ============

    Both symmetric forms give symmetric, positive semi-definite score matrices; they are
    computed as ``U U^T`` with ``U = X W^Q_h`` or ``U = X T_h`` and then averaged with their
    transpose, so that ``S_h = S_h^T`` holds exactly in floating point too (matrix products are
    not bitwise symmetric).

    Value/output path (``vo``) and its parameter count ``P_vo``:

    ===========  ================================================================  ==========
    vo           output                                                            ``P_vo``
    ===========  ================================================================  ==========
    separate     ``concat_h(A_h X W^V_h) W^O``, ``W^V_h: N x d``, ``W^O: N x N``   ``2 N^2``
    collapsed    ``sum_h A_h X W^VO_h``, each ``W^VO_h: N x N``                    ``H N^2``
    none         ``concat_h(A_h X_h)``, ``X_h`` = channels ``h d .. (h+1) d - 1``  ``0``
    ===========  ================================================================  ==========

    With ``vo="none"`` every output token is, head by head, a convex combination of the input
    tokens (``W^V = W^O = I``). With one head, ``qk="collapsed"`` and ``vo="collapsed"`` is the
    paper's ``2 N^2`` layer; ``similarity="symmetric"`` and ``vo="none"`` is its minimal one with
    ``N(N+1)/2`` parameters. Total: ``P = P_qk + P_vo`` (see :meth:`parameter_count`).

    Without positional information the layer is permutation-equivariant in the tokens.

    Args:
        dim: token width ``N``.
        heads: number of heads ``H``; must divide ``dim``.
        qk: ``"separate"`` query and key projections or one ``"collapsed"`` ``W^QK`` per head.
        similarity: ``"general"`` or ``"symmetric"`` bilinear form.
        vo: ``"separate"`` ``W^V`` and ``W^O``, one ``"collapsed"`` ``W^VO`` per head, or
            ``"none"``.
        dropout: dropout on the attention weights.

    Shapes:
        ``x``: ``(B, L, N)``; ``key_padding_mask`` (optional): ``(B, L)`` bool, True = ignore
        that key. Output: ``(B, L, N)``.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 1,
        qk: QKMode = "separate",
        similarity: Similarity = "general",
        vo: VOMode = "separate",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim <= 0 or heads <= 0:
            raise ValueError(f"dim and heads must be positive, got dim={dim}, heads={heads}")
        if dim % heads:
            raise ValueError(f"heads must divide dim, got dim={dim}, heads={heads}")
        _check_choice("qk", qk, _QK_MODES)
        _check_choice("similarity", similarity, _SIMILARITIES)
        _check_choice("vo", vo, _VO_MODES)
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.qk, self.similarity, self.vo = qk, similarity, vo
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.attn_dropout = nn.Dropout(dropout)

        n, h, d = dim, heads, self.head_dim
        # Query/key part. Initial variances are chosen so that every variant starts with scores
        # of the same spread as the standard layer with Xavier-like N(0, 1/N) projections.
        if qk == "separate":
            self.w_q = nn.Parameter(torch.randn(n, h * d) / math.sqrt(n))
            if similarity == "general":
                self.w_k = nn.Parameter(torch.randn(n, h * d) / math.sqrt(n))
        elif similarity == "general":
            # (W^Q W^K^T) has entries of variance d / N^2 under that initialisation.
            self.w_qk = nn.Parameter(torch.randn(h, n, n) * math.sqrt(d) / n)
        else:
            # Packed lower triangles of T_h; entries of variance sqrt(3 d / N^3) give off-diagonal
            # entries of T T^T with variance ~ d / N^2, as above.
            rows, cols = torch.tril_indices(n, n)
            self.register_buffer("_tril_rows", rows, persistent=False)
            self.register_buffer("_tril_cols", cols, persistent=False)
            std = (3.0 * d / n**3) ** 0.25
            self.t_packed = nn.Parameter(torch.randn(h, rows.numel()) * std)
        # Value/output part.
        if vo == "separate":
            self.w_v = nn.Parameter(torch.randn(n, h * d) / math.sqrt(n))
            self.w_o = nn.Parameter(torch.randn(h * d, n) / math.sqrt(h * d))
        elif vo == "collapsed":
            self.w_vo = nn.Parameter(torch.randn(h, n, n) / math.sqrt(h * n))

    @staticmethod
    def parameter_count(
        dim: int,
        heads: int = 1,
        qk: QKMode = "separate",
        similarity: Similarity = "general",
        vo: VOMode = "separate",
    ) -> int:
        """Closed-form number of parameters ``P_qk + P_vo`` (tables in the class docstring)."""
        n, h = dim, heads
        p_qk = {
            ("separate", "general"): 2 * n * n,
            ("separate", "symmetric"): n * n,
            ("collapsed", "general"): h * n * n,
            ("collapsed", "symmetric"): h * n * (n + 1) // 2,
        }[(qk, similarity)]
        p_vo = {"separate": 2 * n * n, "collapsed": h * n * n, "none": 0}[vo]
        return p_qk + p_vo

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, heads={self.heads}, qk={self.qk!r}, "
            f"similarity={self.similarity!r}, vo={self.vo!r}"
        )

    def triangular_factor(self) -> Tensor:
        """The lower-triangular factors ``T_h`` (shape ``(H, N, N)``) of ``W^QK_h = T_h T_h^T``."""
        if not hasattr(self, "t_packed"):
            raise AttributeError(
                "triangular_factor() exists only for qk='collapsed', similarity='symmetric', "
                f"this layer has qk={self.qk!r}, similarity={self.similarity!r}"
            )
        t = self.t_packed.new_zeros(self.heads, self.dim, self.dim)
        t[:, self._tril_rows, self._tril_cols] = self.t_packed
        return t

    def bilinear_forms(self) -> Tensor:
        """The effective similarity matrices ``B_h`` of all heads, shape ``(H, N, N)``.

        For ``qk="separate"`` these are ``W^Q_h (W^K_h)^T`` (rank ``d``); scores are
        ``x_i B_h x_j^T / sqrt(d)``.
        """
        h, n, d = self.heads, self.dim, self.head_dim
        if self.qk == "separate":
            wq = self.w_q.view(n, h, d).transpose(0, 1)
            wk = wq if self.similarity == "symmetric" else self.w_k.view(n, h, d).transpose(0, 1)
            return wq @ wk.transpose(1, 2)
        if self.similarity == "general":
            return self.w_qk
        t = self.triangular_factor()
        return t @ t.transpose(1, 2)

    def scores(self, x: Tensor) -> Tensor:
        """Scaled pre-softmax scores ``S_h``, shape ``(B, H, L, L)``."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected tokens of shape (B, L, {self.dim}), got {tuple(x.shape)}")
        b, length, _ = x.shape
        h, d = self.heads, self.head_dim
        if self.qk == "separate":
            q = (x @ self.w_q).view(b, length, h, d).transpose(1, 2)
            if self.similarity == "symmetric":
                return _symmetric_scores(q, self.scale)
            k = (x @ self.w_k).view(b, length, h, d).transpose(1, 2)
            return (q @ k.transpose(-1, -2)) * self.scale
        xh = x.unsqueeze(1)  # (B, 1, L, N)
        if self.similarity == "general":
            return (xh @ self.w_qk) @ x.unsqueeze(1).transpose(-1, -2) * self.scale
        return _symmetric_scores(xh @ self.triangular_factor(), self.scale)

    def attention(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """Attention weights ``A_h = softmax(S_h)``, shape ``(B, H, L, L)``; rows sum to 1."""
        s = self.scores(x)
        if key_padding_mask is not None:
            if key_padding_mask.shape != x.shape[:2] or key_padding_mask.dtype != torch.bool:
                raise ValueError(
                    f"expected a bool key_padding_mask of shape {tuple(x.shape[:2])}, got "
                    f"{key_padding_mask.dtype} of shape {tuple(key_padding_mask.shape)}"
                )
            s = s.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        return F.softmax(s, dim=-1)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        a = self.attn_dropout(self.attention(x, key_padding_mask))
        b, length, _ = x.shape
        h, d = self.heads, self.head_dim
        if self.vo == "collapsed":
            v = x.unsqueeze(1) @ self.w_vo  # (B, H, L, N)
            return (a @ v).sum(dim=1)
        if self.vo == "separate":
            v = (x @ self.w_v).view(b, length, h, d).transpose(1, 2)
        else:
            v = x.view(b, length, h, d).transpose(1, 2)
        z = (a @ v).transpose(1, 2).reshape(b, length, h * d)
        return z @ self.w_o if self.vo == "separate" else z


class ReducedTransformerBlock(nn.Module):
    r"""Pre-norm encoder block ``x + Attn(LN(x))``, then optionally ``+ MLP(LN(x))``.

    The attention is a :class:`ReducedSelfAttention`; the MLP is
    ``W_2 GELU(W_1 z + b_1) + b_2`` with hidden width ``hN``, ``h = mlp_ratio``, which has
    ``2hN^2 + hN + N`` parameters (the paper's count; for ``h = 4`` twice the ``4N^2`` of the
    standard attention). Each LayerNorm has ``2N`` parameters. Hence

        ``P_block = P_attn + 2N + [mlp] (2 hN^2 + hN + N + 2N)``

    with ``P_attn`` from :meth:`ReducedSelfAttention.parameter_count` and ``hN`` rounded down to
    an integer. Dropping the MLP ("attention is nonlinear enough") removes about two thirds of
    the standard block's parameters.

    Args:
        dim, heads, qk, similarity, vo: see :class:`ReducedSelfAttention`.
        mlp: keep the position-wise MLP.
        mlp_ratio: hidden width of the MLP relative to ``dim``.
        dropout: dropout on the attention weights and after the MLP / attention output.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 1,
        qk: QKMode = "separate",
        similarity: Similarity = "general",
        vo: VOMode = "separate",
        mlp: bool = True,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ReducedSelfAttention(dim, heads, qk, similarity, vo, dropout)
        self.drop = nn.Dropout(dropout)
        self.mlp: nn.Sequential | None = None
        if mlp:
            hidden = int(dim * mlp_ratio)
            if hidden <= 0:
                raise ValueError(f"mlp_ratio * dim must be at least 1, got {mlp_ratio} * {dim}")
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(
                nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
            )

    @staticmethod
    def parameter_count(
        dim: int,
        heads: int = 1,
        qk: QKMode = "separate",
        similarity: Similarity = "general",
        vo: VOMode = "separate",
        mlp: bool = True,
        mlp_ratio: float = 4.0,
    ) -> int:
        """Closed-form parameter count of the block (formula in the class docstring)."""
        n = dim
        count = ReducedSelfAttention.parameter_count(n, heads, qk, similarity, vo) + 2 * n
        if mlp:
            hidden = int(n * mlp_ratio)
            count += 2 * hidden * n + hidden + n + 2 * n
        return count

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), key_padding_mask))
        if self.mlp is not None:
            x = x + self.drop(self.mlp(self.norm2(x)))
        return x
