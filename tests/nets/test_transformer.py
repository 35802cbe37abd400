"""Tests for the patch-embedding transformers and their registered variants."""

from __future__ import annotations

import itertools

import pytest
import torch

from geozoo.nets.transformer import PatchTransformer
from geozoo.testing import Transform, assert_equivariant
from geozoo.zoo import create_model, list_models

MNIST_VARIANTS = [
    "vit_tiny_mnist",
    "symformer_nomlp_mnist",
    "symformer_symvo_mnist",
    "symformer_wqk_mnist",
    "symformer_sym_mnist",
    "symformer_wqk_novo_mnist",
    "symformer_min1h_mnist",
    "symformer_min_mnist",
]
SMALL = {"dim": 16, "depth": 2}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_variants_are_registered():
    assert set(MNIST_VARIANTS) <= set(list_models("*_mnist"))
    assert {"vit_tiny_cifar10", "symformer_min_cifar10"} <= set(list_models("*cifar10"))


@pytest.mark.parametrize("name", [*MNIST_VARIANTS, "vit_tiny_cifar10", "symformer_min_cifar10"])
def test_parameter_count_matches_formula(name):
    model = create_model(name)
    args = {
        "in_channels": model.in_channels,
        "num_classes": model.num_classes,
        "input_size": model.input_size,
        "patch_size": model.patch_size,
        "dim": model.dim,
        "depth": model.depth,
        "pool": model.pool,
        "pos_embed": model.pos_embed is not None,
        "stem": model.stem,
        "stem_channels": model.stem_channels,
    }
    block = model.blocks[0]
    attn = block.attn
    args.update(heads=attn.heads, qk=attn.qk, similarity=attn.similarity, vo=attn.vo)
    args.update(mlp=block.mlp is not None)
    assert PatchTransformer.parameter_count(**args) == _count(model)


def test_full_and_minimal_counts_written_out():
    # Hand-derived for N=64, depth 6, a 1 -> 8 -> 64 stem of 3x3 convolutions (49 tokens),
    # CLS token, 10 classes.
    n, depth, tokens = 64, 6, 50
    stem = (9 * 8 + 8) + (9 * 8 * n + n) + n + tokens * n
    tail = 2 * n + n * 10 + 10
    full_block = 4 * n * n + (2 * 4 * n * n + 4 * n + n) + 4 * n
    min_block = lambda heads: heads * n * (n + 1) // 2 + 2 * n  # noqa: E731
    full = _count(create_model("vit_tiny_mnist"))
    assert full == stem + depth * full_block + tail
    assert _count(create_model("symformer_min1h_mnist")) == stem + depth * min_block(1) + tail
    minimal = _count(create_model("symformer_min_mnist"))
    assert minimal == stem + depth * min_block(4) + tail
    # the minimal model with W_V (N x N over the heads) and W_O kept
    symvo = _count(create_model("symformer_symvo_mnist"))
    assert symvo == minimal + depth * 2 * n * n
    assert minimal <= 0.2 * full  # the target: at least 80% fewer parameters


def test_counts_decrease_with_each_reduction():
    count = {name: _count(create_model(name)) for name in MNIST_VARIANTS}
    # 4-head variants off the 1-head chain: the minimal model and its step with W_V/W_O kept
    # (4 triangular T_h cost H N(N+1)/2 > 2 N^2, so that step is no smaller than W_Q, W_K)
    off_chain = ("symformer_min_mnist", "symformer_symvo_mnist")
    order = [name for name in MNIST_VARIANTS if name not in off_chain]
    counts = [count[name] for name in order]
    assert counts == sorted(set(counts), reverse=True), counts
    assert count["symformer_min_mnist"] < count["symformer_nomlp_mnist"]
    assert count["symformer_min_mnist"] < count["symformer_symvo_mnist"]


@pytest.mark.parametrize("name", MNIST_VARIANTS)
def test_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, dropout=0.1, **SMALL)
    x = torch.rand(4, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ["vit_tiny_cifar10", "symformer_min_cifar10"])
def test_cifar_variants_forward(name):
    model = create_model(name, **SMALL)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def perms(k: int, n: int) -> list[torch.Tensor]:
    return [torch.randperm(n) for _ in range(k)]


def _permute_patches(x: torch.Tensor, patch: int, perm: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    p = x.reshape(b, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, -1)
    p = p[:, perm]
    return p.reshape(b, gh, gw, c, patch, patch).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


@pytest.mark.parametrize("name", ["vit_tiny_mnist", "symformer_min_mnist", "symformer_sym_mnist"])
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_patch_permutation_without_positions(name, pool):
    # the patch stem sees each patch alone; the convolutional stem's 3x3 windows straddle patches
    torch.manual_seed(1)
    model = create_model(name, pos_embed=False, pool=pool, stem="patch", **SMALL).double().eval()
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    patch, n = model.patch_size, model.num_patches
    perm = torch.randperm(n)
    xp = _permute_patches(x, patch, perm)
    assert not torch.equal(x, xp)
    # tokens are permuted (after the class token), logits unchanged
    offset = int(pool == "cls")
    tokens, tokens_p = model.tokens(x), model.tokens(xp)
    torch.testing.assert_close(tokens_p[:, offset:], tokens[:, offset:][:, perm])
    torch.testing.assert_close(model(xp), model(x))
    shuffles = [
        Transform(lambda t, q=q: _permute_patches(t, patch, q), "shuffle") for q in perms(3, n)
    ]
    assert_equivariant(model, x, shuffles)  # invariant logits


def test_position_embeddings_break_permutation_invariance():
    torch.manual_seed(2)
    model = create_model("symformer_min_mnist", **SMALL).double().eval()
    with torch.no_grad():
        model.pos_embed.normal_()
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    xp = _permute_patches(x, model.patch_size, torch.randperm(model.num_patches))
    assert (model(xp) - model(x)).abs().max() > 1e-6


@pytest.mark.parametrize("patch_size, convs", [(2, 1), (4, 2), (8, 3)])
def test_conv_stem_makes_the_patch_stems_tokens(patch_size, convs):
    conv = PatchTransformer(input_size=(32, 32), patch_size=patch_size, stem="conv", **SMALL)
    patch = PatchTransformer(input_size=(32, 32), patch_size=patch_size, **SMALL)
    x = torch.rand(3, 1, 32, 32)
    assert conv.tokens(x).shape == patch.tokens(x).shape
    convolutions = [m for m in conv.patch_embed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride) for c in convolutions] == [((3, 3), (2, 2))] * convs
    # hand count: 1 -> 8 -> ... -> 8 -> 16 channels, 3x3 kernels with biases
    chain = [1] + [8] * (convs - 1) + [16]
    stem = sum(9 * a * b + b for a, b in itertools.pairwise(chain))
    assert _count(conv) - _count(patch) == stem - (patch_size**2 * 16 + 16)
    args = {"input_size": (32, 32), "patch_size": patch_size, "stem": "conv", **SMALL}
    assert PatchTransformer.parameter_count(**args) == _count(conv)


def test_bad_input_and_arguments():
    model = create_model("symformer_min_mnist", **SMALL)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 28, 28\)"):
        model(torch.rand(2, 1, 40, 40))
    with pytest.raises(ValueError, match="multiples of patch_size"):
        PatchTransformer(input_size=(30, 28), patch_size=7)
    with pytest.raises(ValueError, match="one value per channel"):
        PatchTransformer(in_channels=3)
    with pytest.raises(ValueError, match="power of two >= 2, got 7"):
        PatchTransformer(patch_size=7, stem="conv")
    with pytest.raises(ValueError, match="stem must be 'patch' or 'conv', got 'cnn'"):
        PatchTransformer(patch_size=4, stem="cnn")
    with pytest.raises(ValueError, match="power of two >= 2, got 6"):
        PatchTransformer.parameter_count(patch_size=6, stem="conv")  # the formula checks too


def test_short_training_lowers_the_loss():
    torch.manual_seed(3)
    model = create_model("symformer_min_mnist", **SMALL)
    # two separable classes: bright top half vs bright bottom half, plus noise
    x = torch.rand(64, 1, 28, 28) * 0.3
    y = torch.randint(0, 2, (64,))
    x[y == 0, :, :14] += 0.7
    x[y == 1, :, 14:] += 0.7
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
