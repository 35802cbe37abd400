"""Supervised fine-tuning of a policy: batches, the answer NLL, seeded fine-tunes of one
ancestor (the ingredients of a SALSA soup)."""

from __future__ import annotations

import functools

import pytest
import torch
from torch.utils.data import TensorDataset

from geozoo.rl import DigitSumEnvironment, DigitSumPolicy
from geozoo.rl.warmup import answer_nll, fine_tuned_policy, index_batches, supervised_warmup
from geozoo.tasks import RLTask

SMALL = {"dim": 16, "heads": 2, "layers": 1, "encoder_widths": (4, 8), "encoder": None}


class _Data:
    """A stand-in data module: ``datasets["train"]`` of ``(images, sums, labelled)``."""

    def __init__(self, labelled_rows: int = 8) -> None:
        g = torch.Generator().manual_seed(0)
        images = torch.rand(12, 1, 28, 56, generator=g)
        sums = torch.randint(0, 19, (12,), generator=g)
        labelled = torch.arange(12) < labelled_rows
        self.datasets = {"train": TensorDataset(images, sums, labelled)}


def test_index_batches_visit_every_index_once_per_epoch():
    g = torch.Generator().manual_seed(0)
    batches = list(index_batches(10, 4, 5, g))  # 20 indices: two epochs
    assert [len(b) for b in batches] == [4] * 5
    flat = torch.cat(batches)
    assert sorted(flat[:10].tolist()) == list(range(10))
    assert sorted(flat[10:].tolist()) == list(range(10))
    with pytest.raises(ValueError, match="count >= 1"):
        list(index_batches(0, 4, 1, g))


def test_answer_nll_is_the_task_warmup_loss_and_falls_when_fine_tuned():
    torch.manual_seed(0)
    policy, env = DigitSumPolicy(**SMALL), DigitSumEnvironment()
    images, sums, _ = _Data().datasets["train"][:]
    task = RLTask(policy, env, reference=None)
    before = answer_nll(policy, env, images, sums)
    assert torch.equal(before, task.warmup_loss(images, sums))
    supervised_warmup(policy, env, images, sums, steps=30, batch_size=6, lr=1e-2)
    assert answer_nll(policy, env, images, sums) < 0.7 * before
    with pytest.raises(ValueError, match="12 prompts but 3 targets"):
        supervised_warmup(policy, env, images, sums[:3], steps=1)


def test_fine_tunes_share_their_ancestor_and_differ_by_data_order():
    build = functools.partial(DigitSumPolicy, **SMALL)
    env, data = DigitSumEnvironment(), _Data()
    state = torch.random.get_rng_state()
    a0 = fine_tuned_policy(build, env, data, steps=0, init_seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is untouched
    b0 = fine_tuned_policy(build, env, data, steps=0, init_seed=3, order_seed=1)
    c0 = fine_tuned_policy(build, env, data, steps=0, init_seed=4)
    same = [torch.equal(v, b0.state_dict()[k]) for k, v in a0.state_dict().items()]
    assert all(same)
    assert not all(torch.equal(v, c0.state_dict()[k]) for k, v in a0.state_dict().items())
    a = fine_tuned_policy(build, env, data, steps=3, batch_size=4, init_seed=3, order_seed=0)
    again = fine_tuned_policy(build, env, data, steps=3, batch_size=4, init_seed=3, order_seed=0)
    b = fine_tuned_policy(build, env, data, steps=3, batch_size=4, init_seed=3, order_seed=1)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in a.state_dict().items())
    assert not all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_fine_tuned_policy_errors():
    build = functools.partial(DigitSumPolicy, **SMALL)
    env = DigitSumEnvironment()
    with pytest.raises(ValueError, match="marks no training prompt as labelled"):
        fine_tuned_policy(build, env, _Data(labelled_rows=0), steps=1)
    unlabelled = _Data()
    unlabelled.datasets["train"] = TensorDataset(*unlabelled.datasets["train"].tensors[:2])
    with pytest.raises(ValueError, match=r"\(prompts, targets, labelled\)"):
        fine_tuned_policy(build, env, unlabelled, steps=1)
    with pytest.raises(TypeError, match=r"must build an nn\.Module"):
        fine_tuned_policy(lambda: "policy", env, _Data(), steps=1)
