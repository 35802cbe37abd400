"""Distillation objectives: references from the definitions, teacher handling, small training."""

from __future__ import annotations

import math
from itertools import permutations

import pytest
import torch
from torch import nn

import geozoo
from geozoo.objectives import divergences as D
from geozoo.objectives.base import StepContext
from geozoo.objectives.distillation import (
    BalancedDivergenceDistillation,
    Distillation,
    OFADistillation,
    PlackettLuceDistillation,
    SinkhornDistillation,
    ofa_loss,
)
from geozoo.zoo import save_checkpoint


class TinyCNN(nn.Module):
    def __init__(self, classes: int = 5, width: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TinyTokens(nn.Module):
    """A transformer-like student: 4x4 patches -> tokens -> one encoder layer -> mean -> head."""

    def __init__(self, classes: int = 5, dim: int = 8) -> None:
        super().__init__()
        self.embed = nn.Linear(16, dim)
        self.block = nn.TransformerEncoderLayer(dim, 2, 16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = x.unfold(2, 4, 4).unfold(3, 4, 4).reshape(x.shape[0], -1, 16)
        return self.head(self.block(self.embed(patches)).mean(1))


def _ctx(network, x, y=None, **extras) -> StepContext:
    return StepContext(inputs=x, targets=y, outputs=network(x), network=network, extras=extras)


def _data(n: int = 16, classes: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, classes, (n,), generator=g)


# ------------------------------------------------------------------ Distillation


@pytest.mark.parametrize("divergence", ["kl", "reverse_kl", "js", "hellinger2", "alpha"])
def test_distillation_value_is_t2_batchmean(divergence: str) -> None:
    torch.manual_seed(0)
    teacher, student = TinyCNN(), TinyCNN()
    x, _ = _data()
    params = {"alpha": 0.5} if divergence == "alpha" else {}
    kd = Distillation(teacher, divergence, temperature=3.0, divergence_params=params)
    ctx = _ctx(student, x)
    out = kd(ctx)
    with torch.no_grad():
        t = teacher.eval()(x)
    s = ctx.outputs.detach()
    # reference: per-row sums over classes in float64, mean over rows, times T^2
    pt, ps = torch.softmax(t.double() / 3, -1), torch.softmax(s.double() / 3, -1)
    per_row = {
        "kl": (pt * (pt / ps).log()).sum(-1),
        "reverse_kl": (ps * (ps / pt).log()).sum(-1),
        "js": 0.5 * (pt * (2 * pt / (pt + ps)).log() + ps * (2 * ps / (pt + ps)).log()).sum(-1),
        "hellinger2": ((pt.sqrt() - ps.sqrt()) ** 2).sum(-1),
        "alpha": (1 - (pt.sqrt() * ps.sqrt()).sum(-1)) / 0.25,
    }[divergence]
    assert out.loss.item() == pytest.approx(9 * per_row.mean().item(), rel=1e-4, abs=1e-7)
    if divergence == "kl":  # torch's own batchmean KL, the classic recipe
        ref = 9 * nn.functional.kl_div(
            torch.log_softmax(s / 3, -1),
            torch.log_softmax(t / 3, -1),
            log_target=True,
            reduction="batchmean",
        )
        assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_teacher_frozen_eval_hidden_and_gets_no_gradient() -> None:
    torch.manual_seed(1)
    teacher, student = TinyCNN(), TinyCNN()
    teacher.train()
    kd = Distillation(teacher, "kl", temperature=2.0)
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert len(list(kd.parameters())) == 0 and len(kd.state_dict()) == 0
    kd.train()  # the task switching modes must not touch the teacher
    assert not teacher.training
    x, _ = _data()
    running = teacher.features[1].running_mean.clone()
    out = kd(_ctx(student, x))
    out.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    torch.testing.assert_close(teacher.features[1].running_mean, running)


def test_teacher_from_zoo_name_and_checkpoint(tmp_path) -> None:
    torch.manual_seed(2)
    source = geozoo.create_model("cnn_mnist", widths=(4, 8), input_size=(8, 8))
    save_checkpoint(
        source,
        tmp_path,
        {"architecture": "cnn_mnist", "arguments": {"widths": [4, 8], "input_size": [8, 8]}},
    )
    kd = Distillation("cnn_mnist", "js", teacher_weights=str(tmp_path))
    loaded = kd.teacher_module
    assert not loaded.training and all(not p.requires_grad for p in loaded.parameters())
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(loaded(x), source.eval()(x))


def test_precomputed_teacher_logits_and_shape_errors() -> None:
    class Boom(nn.Module):
        def forward(self, x):
            raise AssertionError("teacher must not run when logits are given")

    student = TinyCNN()
    x, _ = _data()
    given = torch.randn(16, 5)
    kd = Distillation(Boom(), "kl", temperature=1.0)
    out = kd(_ctx(student, x, teacher_logits=given))
    assert out.loss.item() == pytest.approx(
        D.kl(given, student(x), reduction="mean").item(), rel=1e-5
    )
    with pytest.raises(ValueError, match="must match"):
        Distillation(TinyCNN(classes=3), "kl")(_ctx(student, x))
    with pytest.raises(KeyError, match="valid names"):
        Distillation(TinyCNN(), "kullback")
    with pytest.raises(TypeError, match=r"zoo model name or an nn\.Module"):
        Distillation(3.0, "kl")


def test_distillation_trains_student_towards_teacher() -> None:
    torch.manual_seed(3)
    teacher, student = TinyCNN(), TinyTokens()
    x, _ = _data(32)
    kd = Distillation(teacher, "kl", temperature=1.0)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    first = None
    for _ in range(25):
        loss = kd(_ctx(student, x)).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


# ------------------------------------------------------------------ PLD


def _pl_nll(scores: list[float], order: list[int], weights: list[float]) -> float:
    total = 0.0
    for k in range(len(order)):
        rest = order[k:]
        total += weights[k] * (math.log(sum(math.exp(scores[j]) for j in rest)) - scores[order[k]])
    return total


def test_pld_matches_plackett_luce_definition() -> None:
    g = torch.Generator().manual_seed(4)
    s = torch.randn(6, 5, generator=g, dtype=torch.float64)
    t = torch.randn(6, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=g)
    got = PlackettLuceDistillation.loss_from_logits(s, t, y, teacher_temperature=2.0)
    want = 0.0
    for i in range(6):
        label = int(y[i])
        others = sorted((c for c in range(5) if c != label), key=lambda c: -float(t[i, c]))
        order = [label, *others]
        q = torch.softmax(t[i] / 2.0, -1)
        want += _pl_nll(s[i].tolist(), order, [float(q[c]) for c in order])
    assert got.item() == pytest.approx(want / 6, rel=1e-5)


def test_pld_special_cases_and_invariance() -> None:
    g = torch.Generator().manual_seed(5)
    s = torch.randn(8, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (8,), generator=g)
    # a teacher with all mass on the label: PLD is cross-entropy
    t = 50.0 * nn.functional.one_hot(y, 4).double()
    ce = nn.functional.cross_entropy(s, y)
    assert PlackettLuceDistillation.loss_from_logits(s, t, y).item() == pytest.approx(
        ce.item(), rel=1e-6
    )
    # invariant to shifting the student's logits
    t = torch.randn(8, 4, generator=g, dtype=torch.float64)
    a = PlackettLuceDistillation.loss_from_logits(s, t, y)
    b = PlackettLuceDistillation.loss_from_logits(s + 7.0, t, y)
    assert a.item() == pytest.approx(b.item(), rel=1e-9)
    # the target permutation is the most likely one under a student equal to the ranking
    i = 0
    order = [
        int(y[i]),
        *sorted((c for c in range(4) if c != int(y[i])), key=lambda c: -float(t[i, c])),
    ]
    scores = torch.zeros(4, dtype=torch.float64)
    scores[order] = torch.tensor([3.0, 2.0, 1.0, 0.0], dtype=torch.float64)
    best = min(permutations(range(4)), key=lambda o: _pl_nll(scores.tolist(), list(o), [1.0] * 4))
    assert list(best) == order


# ------------------------------------------------------------------ BD-KD


def test_bdkd_weights_and_reference() -> None:
    torch.manual_seed(6)
    teacher, student = TinyCNN(), TinyCNN()
    x, y = _data()
    bd = BalancedDivergenceDistillation(teacher, temperature=2.0, online=False, sharpness=3.0)
    ctx = _ctx(student, x, y)
    out = bd(ctx)
    with torch.no_grad():
        t = teacher.eval()(x).double()
    s = ctx.outputs.detach().double()
    pt, ps = torch.softmax(t / 2, -1), torch.softmax(s / 2, -1)
    ht, hs = -(pt * pt.log()).sum(-1), -(ps * ps.log()).sum(-1)
    w = torch.sigmoid(3.0 * (ht - hs))
    fkl, rkl = (pt * (pt / ps).log()).sum(-1), (ps * (ps / pt).log()).sum(-1)
    want = 4 * (w * fkl + (1 - w) * rkl).mean()
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-5)
    # an over-confident student (low entropy) gets mostly forward KL, an unsure one reverse KL
    sharp, flat = torch.tensor([[10.0, 0, 0, 0, 0]]), torch.zeros(1, 5)
    mid = torch.tensor([[1.0, 0.5, 0, 0, 0]])
    assert bd.balance_weights(sharp, mid).item() > 0.5 > bd.balance_weights(flat, mid).item()


def test_bdkd_online_trains_teacher_too() -> None:
    torch.manual_seed(7)
    teacher, student = TinyCNN(), TinyCNN()
    bd = BalancedDivergenceDistillation(teacher, online=True)
    assert set(bd.state_dict()) and all(p.requires_grad for p in bd.parameters())
    x, y = _data()
    out = bd(_ctx(student, x, y))
    out.loss.backward()
    assert all(p.grad is not None for p in teacher.parameters())
    assert {"teacher_ce", "teacher_acc", "forward_weight"} <= set(out.logs)
    with pytest.raises(ValueError, match="targets"):
        bd(_ctx(student, x))


# ------------------------------------------------------------------ OFA-KD


def test_ofa_loss_reference() -> None:
    g = torch.Generator().manual_seed(8)
    s, t = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (5,), generator=g)
    for eps in (1.0, 1.5):
        got = ofa_loss(s, t, y, epsilon=eps)
        ps, pt = torch.softmax(s, -1), torch.softmax(t, -1)
        want = 0.0
        for i in range(5):
            for c in range(4):
                wgt = (1 + pt[i, c]) ** eps - 1 if c == int(y[i]) else pt[i, c] ** eps
                want -= float(wgt) * math.log(float(ps[i, c]))
        assert got.item() == pytest.approx(want / 5, rel=1e-9)
    # eps = 1: plain soft cross-entropy with the teacher's distribution
    soft = -(torch.softmax(t, -1) * torch.log_softmax(s, -1)).sum(-1).mean()
    assert ofa_loss(s, t, y, 1.0).item() == pytest.approx(soft.item(), rel=1e-9)


def test_ofa_heterogeneous_pair_hooks_and_projectors() -> None:
    torch.manual_seed(9)
    teacher = TinyCNN(width=6)  # convolutional teacher
    student = TinyTokens(dim=8)  # token student: stages of shape (N, L, C) and (N, C)
    ofa = OFADistillation(teacher, stages={"embed": 8, "block": 8}, num_classes=5, epsilon=1.5)
    x, y = _data()
    calls = []
    student.register_forward_hook(lambda *a: calls.append(1))
    out = ofa(_ctx(student, x, y))
    assert len(calls) == 2  # the task's forward plus one to fill the hooks on the first call
    out.loss.backward()
    assert all(p.grad is not None for p in ofa.projectors.parameters())
    assert student.embed.weight.grad is not None
    assert {"logits", "stage_embed", "stage_block"} <= set(out.logs)
    calls.clear()
    ofa(_ctx(student, x, y))
    assert len(calls) == 1  # later steps reuse the task's forward
    # projector parameters belong to the objective (and so to the task's optimizer)
    assert any(k.startswith("projectors.") for k in ofa.state_dict())
    assert not any(k.startswith("_hooked") for k in ofa.state_dict())
    # a CNN student works the same way, with (N, C, H, W) stages
    cnn = TinyCNN(width=4)
    ofa2 = OFADistillation(TinyTokens(), stages={"features.2": 4, "features": 4}, num_classes=5)
    assert torch.isfinite(ofa2(_ctx(cnn, x, y)).loss)
    with pytest.raises(KeyError, match="no modules named"):
        OFADistillation(teacher, stages={"nope": 4}, num_classes=5)(_ctx(cnn, x, y))


# ------------------------------------------------------------------ SinKD


def test_sinkd_objective() -> None:
    torch.manual_seed(10)
    teacher, student = TinyCNN(), TinyCNN()
    x, _ = _data()
    sk = SinkhornDistillation(teacher)
    out = sk(_ctx(student, x))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_objectives_in_classification_task() -> None:
    from geozoo.tasks import ClassificationTask

    torch.manual_seed(11)
    teacher, student = TinyCNN(), TinyTokens()
    task = ClassificationTask(
        student,
        objectives=[
            Distillation(teacher, "js", temperature=2.0),
            OFADistillation(teacher, stages={"block": 8}, num_classes=5),
            BalancedDivergenceDistillation(TinyCNN(), online=True),
        ],
        num_classes=5,
    )
    optimizer = task.configure_optimizers()
    params = {id(p) for group in optimizer.param_groups for p in group["params"]}
    bd_teacher = task.objectives[2].teacher
    assert all(id(p) in params for p in task.objectives[1].projectors.parameters())
    assert all(id(p) in params for p in bd_teacher.parameters())
    assert not any(id(p) in params for p in teacher.parameters())
    assert not any(k.startswith("objectives.0.") for k in task.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    ["kd_js", "kd_alpha", "pld", "bdkd", "ofa", "sinkd"],
)
def test_distill_configs_train_through_the_cli(config: str, tmp_path) -> None:
    if not geozoo.list_models("cnn_mnist", pretrained=True):
        pytest.skip("the zoo's cnn_mnist checkpoint is not published")
    from geozoo.cli import main

    main(
        [
            "fit",
            "--config",
            f"configs/distill_{config}_mnist.yaml",
            "--trainer.fast_dev_run=true",
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",  # the saved config.yaml goes here
        ]
    )
