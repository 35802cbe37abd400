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
