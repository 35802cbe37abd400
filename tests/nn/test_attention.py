"""Tests for the reduced / symmetric self-attention of Bermeitinger et al. (2024)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from geozoo.nn.attention import ReducedSelfAttention, ReducedTransformerBlock
from geozoo.testing import assert_equivariant, permute_points

QK_SIM = [
    ("separate", "general"),
    ("separate", "symmetric"),
    ("collapsed", "general"),
    ("collapsed", "symmetric"),
]
VOS = ["separate", "collapsed", "none"]
ALL = [(qk, sim, vo) for (qk, sim), vo in itertools.product(QK_SIM, VOS)]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("qk,similarity,vo", ALL)
@pytest.mark.parametrize("dim,heads", [(12, 1), (12, 3), (8, 4)])
def test_attention_parameter_count_matches_formula(qk, similarity, vo, dim, heads):
    layer = ReducedSelfAttention(dim, heads, qk=qk, similarity=similarity, vo=vo)
    n, h = dim, heads
    # The formulas written out independently of the implementation's lookup table.
    expected_qk = {
        ("separate", "general"): 2 * n * n,
        ("separate", "symmetric"): n * n,
        ("collapsed", "general"): h * n * n,
        ("collapsed", "symmetric"): h * (n * n + n) / 2,
    }[(qk, similarity)]
    expected_vo = {"separate": 2 * n * n, "collapsed": h * n * n, "none": 0}[vo]
    assert _count(layer) == expected_qk + expected_vo
    assert ReducedSelfAttention.parameter_count(dim, heads, qk, similarity, vo) == _count(layer)


def test_paper_single_head_counts():
    n = 16
    full = ReducedSelfAttention(n, 1)
    collapsed = ReducedSelfAttention(n, 1, qk="collapsed", vo="collapsed")
    minimal = ReducedSelfAttention(n, 1, qk="collapsed", similarity="symmetric", vo="none")
    assert _count(full) == 4 * n * n  # standard attention, 4N^2
    assert _count(collapsed) == 2 * n * n  # W^QK and W^VO, 2N^2
    assert _count(minimal) == n * (n + 1) // 2  # Cholesky factor only


@pytest.mark.parametrize("qk,similarity,vo", ALL)
@pytest.mark.parametrize("mlp", [True, False])
def test_block_parameter_count_matches_formula(qk, similarity, vo, mlp):
    n, h, ratio = 8, 2, 3.0
    block = ReducedTransformerBlock(n, h, qk, similarity, vo, mlp=mlp, mlp_ratio=ratio)
    hidden = int(ratio * n)
    expected = ReducedSelfAttention.parameter_count(n, h, qk, similarity, vo) + 2 * n
    if mlp:
        expected += (n * hidden + hidden) + (hidden * n + n) + 2 * n
    assert _count(block) == expected
    assert ReducedTransformerBlock.parameter_count(n, h, qk, similarity, vo, mlp, ratio) == expected


def _reference(layer: ReducedSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Float64 loop over batch and heads, from the effective bilinear forms (Eq. 1-2)."""
    forms = layer.bilinear_forms().double()
    x = x.double()
    h, d = layer.heads, layer.head_dim
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        xb = x[b]
        heads_out = []
        for k in range(h):
            s = xb @ forms[k] @ xb.T / math.sqrt(d)
            a = torch.softmax(s, dim=-1)
            if layer.vo == "separate":
                heads_out.append(a @ xb @ layer.w_v.double()[:, k * d : (k + 1) * d])
            elif layer.vo == "collapsed":
                heads_out.append(a @ xb @ layer.w_vo.double()[k])
            else:
                heads_out.append(a @ xb[:, k * d : (k + 1) * d])
        if layer.vo == "separate":
            out[b] = torch.cat(heads_out, dim=-1) @ layer.w_o.double()
        elif layer.vo == "collapsed":
            out[b] = sum(heads_out)
        else:
            out[b] = torch.cat(heads_out, dim=-1)
    return out


@pytest.mark.parametrize("qk,similarity,vo", ALL)
@pytest.mark.parametrize("heads", [1, 2])
def test_forward_matches_float64_reference(qk, similarity, vo, heads):
    torch.manual_seed(0)
    layer = ReducedSelfAttention(8, heads, qk=qk, similarity=similarity, vo=vo)
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(layer(x).double(), _reference(layer, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("qk", ["separate", "collapsed"])
@pytest.mark.parametrize("heads", [1, 4])
def test_symmetric_similarity_gives_symmetric_scores(qk, heads):
    torch.manual_seed(1)
    layer = ReducedSelfAttention(16, heads, qk=qk, similarity="symmetric", vo="none")
    with torch.no_grad():  # move away from the initialisation
        for p in layer.parameters():
            p.add_(torch.randn_like(p))
    s = layer.scores(torch.randn(2, 7, 16))
    assert torch.equal(s, s.transpose(-1, -2))
    # positive semi-definite: the form is U U^T
    assert torch.linalg.eigvalsh(s.double()).min() > -1e-6 * s.abs().max()
    forms = layer.bilinear_forms()
    torch.testing.assert_close(forms, forms.transpose(1, 2))


@pytest.mark.parametrize("heads", [1, 3])
def test_general_similarity_is_not_symmetric(heads):
    torch.manual_seed(2)
    for qk in ("separate", "collapsed"):
        layer = ReducedSelfAttention(12, heads, qk=qk, similarity="general")
        s = layer.scores(torch.randn(2, 6, 12))
        assert (s - s.transpose(-1, -2)).abs().max() > 1e-3


def test_cholesky_factor_is_lower_triangular_and_trainable():
    layer = ReducedSelfAttention(6, 2, qk="collapsed", similarity="symmetric", vo="none")
    t = layer.triangular_factor()
    assert t.shape == (2, 6, 6)
    assert torch.equal(t, torch.tril(t))
    assert torch.count_nonzero(t) == layer.t_packed.numel()
    layer(torch.randn(2, 4, 6)).square().sum().backward()
    assert layer.t_packed.grad is not None and layer.t_packed.grad.abs().sum() > 0


@pytest.mark.parametrize("qk,similarity,vo", ALL)
@pytest.mark.parametrize("mlp", [True, False])
def test_block_token_permutation_equivariance(qk, similarity, vo, mlp):
    torch.manual_seed(3)
    block = ReducedTransformerBlock(8, 2, qk, similarity, vo, mlp=mlp).double().eval()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    perm = torch.randperm(9)
    torch.testing.assert_close(block(x[:, perm]), block(x)[:, perm])
    # the same through the public checker, for several permutations at once
    perms = [permute_points(torch.randperm(9), dim=1) for _ in range(3)]
    assert_equivariant(block, x, perms, perms)


@pytest.mark.parametrize("qk,similarity,vo", ALL)
@pytest.mark.parametrize("mlp", [True, False])
def test_block_forward_backward(qk, similarity, vo, mlp):
    torch.manual_seed(4)
    block = ReducedTransformerBlock(8, 2, qk, similarity, vo, mlp=mlp, dropout=0.1)
    x = torch.randn(3, 5, 8, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_none_vo_outputs_convex_combinations():
    torch.manual_seed(5)
    layer = ReducedSelfAttention(4, 1, qk="collapsed", similarity="symmetric", vo="none")
    x = torch.randn(1, 6, 4)
    y = layer(x)
    # each output lies inside the per-channel range of the inputs
    assert (y <= x.max(dim=1, keepdim=True).values + 1e-6).all()
    assert (y >= x.min(dim=1, keepdim=True).values - 1e-6).all()


def test_key_padding_mask_ignores_masked_tokens():
    torch.manual_seed(6)
    layer = ReducedSelfAttention(8, 2, qk="collapsed", similarity="symmetric", vo="collapsed")
    x = torch.randn(1, 5, 8)
    mask = torch.tensor([[False, False, False, True, True]])
    changed = x.clone()
    changed[:, 3:] = torch.randn(1, 2, 8) * 10
    torch.testing.assert_close(layer(x, mask)[:, :3], layer(changed, mask)[:, :3])
    assert torch.allclose(layer.attention(x, mask)[..., 3:], torch.zeros(()))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="heads must divide dim"):
        ReducedSelfAttention(10, 3)
    with pytest.raises(ValueError, match="qk must be one of"):
        ReducedSelfAttention(8, qk="shared")
    with pytest.raises(ValueError, match="vo must be one of"):
        ReducedSelfAttention(8, vo="identity")
    with pytest.raises(ValueError, match="similarity must be one of"):
        ReducedSelfAttention(8, similarity="cosine")
    with pytest.raises(ValueError, match=r"expected tokens of shape \(B, L, 8\)"):
        ReducedSelfAttention(8)(torch.randn(2, 3, 5))
    with pytest.raises(AttributeError, match="triangular_factor"):
        ReducedSelfAttention(8).triangular_factor()
