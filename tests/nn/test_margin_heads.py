"""Margin heads against float64 references written from the papers' formulas in terms of the
angle itself (not of its cosine), at angles near 0 and pi and at random angles."""

from __future__ import annotations

import math
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from geozoo.nn import AdaFaceHead, ArcFaceHead, CosFaceHead

S = 64.0
EDGE_ANGLES = [
    0.0,
    1e-4,
    1e-3,
    0.1,
    math.pi - 0.5 - 1e-3,
    math.pi - 0.5 + 1e-3,
    math.pi - 1e-3,
    math.pi - 1e-4,
    math.pi,
]


def _setup(angles: torch.Tensor, dtype: torch.dtype, norms: torch.Tensor | None = None):
    """Class 0's centre is e1; each embedding makes angle ``theta`` with it (in the e1-e2
    plane) and has the given norm. Returns the embeddings and labels (all class 0)."""
    theta = angles.double()
    norms = torch.ones_like(theta) if norms is None else norms.double()
    embeddings = torch.zeros(len(theta), 4, dtype=torch.float64)
    embeddings[:, 0], embeddings[:, 1] = torch.cos(theta), torch.sin(theta)
    return (embeddings * norms[:, None]).to(dtype), torch.zeros(len(theta), dtype=torch.long)


def _head(cls, dtype, **kwargs):
    head = cls(4, 3, s=S, **kwargs)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    return head.to(dtype)


def _arcface_reference(theta: torch.Tensor, m: float, easy: bool) -> torch.Tensor:
    theta = theta.double()
    if easy:
        return S * torch.where(theta < math.pi / 2, torch.cos(theta + m), torch.cos(theta))
    return S * torch.where(
        theta < math.pi - m, torch.cos(theta + m), torch.cos(theta) - m * math.sin(m)
    )


def _angles() -> torch.Tensor:
    random = torch.rand(64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return torch.cat([torch.tensor(EDGE_ANGLES, dtype=torch.float64), random * math.pi])


@pytest.mark.parametrize("easy", [False, True])
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-6), (torch.float32, 5e-3)])
def test_arcface_matches_reference(easy: bool, dtype: torch.dtype, atol: float) -> None:
    theta = _angles()
    embeddings, labels = _setup(theta, dtype)
    logits = _head(ArcFaceHead, dtype, m=0.5, easy_margin=easy)(embeddings, labels)
    expected = _arcface_reference(theta, 0.5, easy)
    torch.testing.assert_close(logits[:, 0].double(), expected, atol=atol, rtol=0)
    # the other classes keep s * cos: e3 and e4 are orthogonal to every embedding
    assert torch.allclose(
        logits[:, 1:].double(), torch.zeros(len(theta), 2, dtype=torch.float64), atol=atol
    )


def test_arcface_target_logit_decreases_past_pi_minus_m() -> None:
    """Without the fallback cos(theta + m) would rise again beyond pi - m."""
    theta = torch.linspace(0, math.pi, 401, dtype=torch.float64)
    embeddings, labels = _setup(theta, torch.float64)
    target = _head(ArcFaceHead, torch.float64)(embeddings, labels)[:, 0]
    assert bool((target[1:] <= target[:-1] + 1e-12).all())


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_cosface_matches_reference(dtype: torch.dtype, atol: float) -> None:
    theta = _angles()
    embeddings, labels = _setup(theta, dtype)
    logits = _head(CosFaceHead, dtype, m=0.35)(embeddings, labels)
    torch.testing.assert_close(
        logits[:, 0].double(), S * (torch.cos(theta) - 0.35), atol=atol, rtol=0
    )


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-6), (torch.float32, 5e-3)])
def test_adaface_matches_reference(dtype: torch.dtype, atol: float) -> None:
    theta = _angles()
    norms = torch.linspace(0.5, 40, len(theta), dtype=torch.float64)
    embeddings, labels = _setup(theta, dtype, norms)
    head = _head(AdaFaceHead, dtype).eval()  # eval: the running statistics stay as set
    head.batch_mean.fill_(15.0)
    head.batch_std.fill_(6.0)
    logits = head(embeddings, labels)[:, 0].double()
    # ... which is clamping theta to [acos(1 - eps), acos(-1 + eps)]
    eps = 1e-3
    clamped = theta.clamp(math.acos(1 - eps), math.acos(-1 + eps))
    zeta = ((norms - 15.0) / (6.0 + eps) * 0.333).clamp(-1, 1)
    angle = (clamped - 0.4 * zeta).clamp(eps, math.pi - eps)
    expected = S * (torch.cos(angle) - (0.4 * zeta + 0.4))
    torch.testing.assert_close(logits, expected, atol=atol, rtol=0)


def test_adaface_running_statistics_update_in_training_only() -> None:
    head = AdaFaceHead(4, 3, momentum=0.1)
    embeddings = torch.randn(16, 4, generator=torch.Generator().manual_seed(1)) * 5
    norms = embeddings.norm(dim=1)
    head(embeddings, torch.zeros(16, dtype=torch.long))
    assert float(head.batch_mean) == pytest.approx(0.9 * 20 + 0.1 * float(norms.mean()), rel=1e-6)
    assert float(head.batch_std) == pytest.approx(0.9 * 100 + 0.1 * float(norms.std()), rel=1e-6)
    state = head.state_dict()
    assert {"batch_mean", "batch_std"} <= set(state)
    before = head.batch_mean.clone()
    head.eval()(embeddings, torch.zeros(16, dtype=torch.long))
    assert torch.equal(head.batch_mean, before)
    fresh = AdaFaceHead(4, 3)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.batch_mean, head.batch_mean)


def test_adaface_statistics_are_exact_for_norms_much_larger_than_their_spread() -> None:
    """Sums of squares in float32 gave a std of 0.0087 for norms 50 +- 0.001."""
    g = torch.Generator().manual_seed(0)
    norms = 50 + 1e-3 * torch.randn(512, generator=g, dtype=torch.float64)
    directions = torch.randn(512, 4, generator=g, dtype=torch.float64)
    embeddings = (directions / directions.norm(dim=1, keepdim=True) * norms[:, None]).float()
    head = AdaFaceHead(4, 3, momentum=1.0)  # the statistics of this batch alone
    head(embeddings, torch.zeros(512, dtype=torch.long))
    exact = embeddings.double().norm(dim=1)
    assert float(head.batch_std) == pytest.approx(float(exact.std()), rel=1e-3)
    assert float(head.batch_mean) == pytest.approx(float(exact.mean()), rel=1e-7)


@pytest.mark.parametrize("cls", [ArcFaceHead, CosFaceHead, AdaFaceHead])
def test_without_labels_the_heads_return_scaled_cosines(cls) -> None:
    head = cls(8, 5)
    embeddings = torch.randn(6, 8)
    expected = (
        S * torch.nn.functional.normalize(embeddings) @ torch.nn.functional.normalize(head.weight).T
    )
    torch.testing.assert_close(head(embeddings), expected)


@pytest.mark.parametrize("cls", [ArcFaceHead, CosFaceHead, AdaFaceHead])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_values_and_gradients_at_cos_plus_minus_one(cls, dtype: torch.dtype) -> None:
    theta = torch.tensor([0.0, math.pi, 0.0, math.pi, 1.0])
    embeddings, labels = _setup(theta, dtype)
    embeddings = embeddings.clone().requires_grad_(True)
    head = _head(cls, dtype)
    logits = head(embeddings, labels)
    assert logits.dtype == torch.float32
    assert bool(torch.isfinite(logits).all())
    torch.nn.functional.cross_entropy(logits, labels).backward()
    assert bool(torch.isfinite(embeddings.grad.float()).all())
    assert bool(torch.isfinite(head.weight.grad.float()).all())
    # a zero embedding has no direction, but must not produce NaN either
    zero = torch.zeros(2, 4, dtype=dtype, requires_grad=True)
    out = head(zero, torch.tensor([0, 1]))
    out.sum().backward()
    assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(zero.grad.float()).all())


@pytest.mark.parametrize("cls", [ArcFaceHead, CosFaceHead, AdaFaceHead])
def test_autocast_does_not_lower_the_precision_of_the_logits(cls) -> None:
    """Lightning's "bf16-mixed" runs the step under autocast, which would compute the cosines
    (a matmul) in bf16: errors of ~0.1 on logits whose margin is s * m."""
    torch.manual_seed(0)
    head = cls(64, 10)
    embeddings, labels = torch.randn(8, 64), torch.randint(0, 10, (8,))
    expected = head.eval()(embeddings, labels), head(embeddings)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(embeddings, labels), head(embeddings)
    for got, want in zip(logits, expected, strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_heads_reject_bad_labels_and_shapes() -> None:
    head = ArcFaceHead(4, 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        head(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="integer labels"):
        head(torch.randn(2, 4), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        head(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="margin"):
        ArcFaceHead(4, 3, m=2.0)


def _ddp_worker(rank: int, world: int, path: str) -> None:
    # a file store: no TCP port to find
    store = f"file://{os.path.join(path, 'store')}"
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=world)
    head = AdaFaceHead(4, 3, momentum=0.5)
    embeddings = torch.randn(8, 4, generator=torch.Generator().manual_seed(rank)) * (1 + rank)
    head(embeddings, torch.zeros(8, dtype=torch.long))
    torch.save(
        {"mean": head.batch_mean, "std": head.batch_std, "x": embeddings},
        os.path.join(path, f"rank{rank}.pt"),
    )
    dist.destroy_process_group()


@pytest.mark.slow
def test_adaface_statistics_are_those_of_the_global_batch_under_ddp() -> None:
    with tempfile.TemporaryDirectory() as path:
        mp.spawn(_ddp_worker, args=(2, path), nprocs=2, join=True)
        r0, r1 = (torch.load(os.path.join(path, f"rank{r}.pt")) for r in (0, 1))
    norms = torch.cat([r0["x"], r1["x"]]).norm(dim=1)
    assert torch.equal(r0["mean"], r1["mean"]) and torch.equal(r0["std"], r1["std"])
    assert float(r0["mean"]) == pytest.approx(0.5 * 20 + 0.5 * float(norms.mean()), rel=1e-5)
    assert float(r0["std"]) == pytest.approx(0.5 * 100 + 0.5 * float(norms.std()), rel=1e-5)
