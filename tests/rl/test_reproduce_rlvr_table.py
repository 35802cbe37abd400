"""scripts/reproduce_rlvr.py: runs of the same seeds merge into one table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reproduce_rlvr.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("reproduce_rlvr", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(p1: float, p8: float, length: float | None = None) -> dict:
    test = {"pass@1": p1, "pass@8": p8}
    if length is not None:
        test["length"] = length
    return {"test": test}


def _seed(seed: int, rl: dict, warmup_length: float | None = None) -> dict:
    return {"seed": seed, "warmup": _row(50.0 + seed, 90.0, warmup_length), "rl": rl}


def test_merge_combines_rows_and_fills_missing_lengths(script):
    old = [_seed(s, {"none": _row(80.0, 93.0), "reverse_kl": _row(79.0 + s, 94.0)}) for s in (0, 1)]
    new = [
        _seed(s, {"reverse_kl": _row(79.0 + s, 94.0, 2.5), "dro": _row(75.0, 95.0, 2.4)}, 2.4)
        for s in (0, 1)
    ]
    merged = script.merge([old, new])
    assert list(merged[0]["rl"]) == ["none", "reverse_kl", "dro"]
    assert merged[1]["rl"]["reverse_kl"]["test"]["length"] == 2.5
    assert merged[0]["warmup"]["test"]["length"] == 2.4
    lines = script.table(merged).splitlines()
    assert lines[2].startswith("| warm-up (before RL) | 50.5 ± 0.7 | 90.0 ± 0.0 |")
    assert lines[2].endswith("| 2.40 ± 0.00 | 2 |")
    assert lines[3].endswith("| - | 2 |")  # "none" has no length in any run
    assert lines[5].startswith("| KL-DRO over prompts")
    assert lines[5].endswith("| 2.40 ± 0.00 | 2 |")


def test_merge_refuses_other_settings(script):
    base = [_seed(0, {"none": _row(80.0, 93.0)})]
    with pytest.raises(ValueError, match="warm-ups differ"):
        script.merge([base, [{**_seed(0, {}), "warmup": _row(1.0, 2.0)}]])
    with pytest.raises(ValueError, match="disagree on none"):
        script.merge([base, [_seed(0, {"none": _row(81.0, 93.0)})]])
    with pytest.raises(ValueError, match="seed 3 is missing"):
        script.merge([base, [_seed(3, {})]])


@pytest.mark.parametrize("method", ["apo", "vogue", "dro", "recap", "bon", "replay"])
def test_each_method_runs_through_the_script_loop(script, method):
    """Two RL steps of a tiny policy on random prompts, as ``rl_run`` takes them (SALSA's
    second warm-up lives in ``run_seed`` and trains through the same loop)."""
    import argparse

    import torch

    from geozoo.rl import DigitSumEnvironment, DigitSumPolicy

    args = argparse.Namespace(
        rl_steps=2, batch_size=4, group=2, beta=0.1, rl_lr=1e-3, dro_r=0.5, recap_window=4
    )
    g = torch.Generator().manual_seed(0)
    images, sums = torch.rand(12, 1, 28, 56, generator=g), torch.randint(0, 19, (12,), generator=g)
    torch.manual_seed(0)
    policy = DigitSumPolicy(dim=16, heads=2, layers=1, encoder_widths=(4, 8), encoder=None)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    splits = ((images[:8], sums[:8]), (images[8:], sums[8:]), (images[8:], sums[8:]))
    replay = (images[:4], sums[:4]) if method in script.REPLAYING else None
    objectives = script._methods(args)[method]
    result = script.rl_run(
        policy, DigitSumEnvironment(), objectives, "copy", splits, 0, args, replay
    )
    assert 0.0 <= result["test"]["pass@1"] <= result["test"]["pass@8"] <= 100.0
    assert result["test"]["length"] >= 1.0
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())
