"""SteerableCNN: invariance via geozoo.testing (exact subgroup elements, and a measured budget
for resampled rotations), export = same logits, loading without escnn, golden logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from geozoo.nets.steerable import SteerableCNN, group_order
from geozoo.testing import (
    assert_equivariant,
    d4_elements,
    equivariance_error,
    rot90,
    rotate,
)
from geozoo.zoo import create_model, models_dir, save_checkpoint

SMALL = {"widths": (2, 3, 4), "kernel_sizes": (5, 3, 3), "pools": (True, True, False)}
# escnn samples kernel bases in float32, so float64 runs keep float32-level error (measured
# ~2e-7); the bound below is that budget, not float64 round-off.
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-6}


@pytest.fixture(scope="module")
def trained_like():
    """Small C8 and D4 networks with non-trivial batch-norm statistics, in eval mode."""
    pytest.importorskip("escnn")
    torch.manual_seed(0)
    nets = {}
    for group in ("c8", "d4"):
        net = SteerableCNN(group=group, input_size=(28, 28), **SMALL)
        net.train()
        with torch.no_grad():
            net(torch.rand(16, 1, 28, 28))
        nets[group] = net.eval()
    return nets


def _digits() -> torch.Tensor:
    torch.manual_seed(3)
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 8:20, 11:15] = 1.0  # a bar ...
    x[:, :, 8:11, 11:22] = 0.7  # ... with an asymmetric arm
    return x * (0.5 + 0.5 * torch.rand(4, 1, 1, 1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_invariance_on_subgroup_elements(trained_like, dtype):
    x = _digits()
    c8 = trained_like["c8"]
    assert_equivariant(
        c8, x, [rot90(k) for k in (1, 2, 3)], dtype=dtype, tolerance=TOLERANCE[dtype]
    )
    d4 = trained_like["d4"]
    assert_equivariant(d4, x, d4_elements(), dtype=dtype, tolerance=TOLERANCE[dtype])
    # C8 has no reflections: a mirrored digit is a different input
    with pytest.raises(AssertionError):
        assert_equivariant(c8, x, d4_elements()[3:], dtype=dtype, tolerance=TOLERANCE[dtype])


def test_continuous_rotation_budget(trained_like):
    # 45 degrees is in C8 but needs resampling: the error comes only from interpolation, and is
    # far below that of a generic CNN on the same inputs
    x = torch.nn.functional.avg_pool2d(_digits(), 3, 1, 1)
    c8 = equivariance_error(trained_like["c8"], x, rotate(45.0))
    generic = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 28 * 28, 10),
    )
    baseline = equivariance_error(generic, x, rotate(45.0))
    assert c8.max < 0.25, c8
    assert c8.max < baseline.max / 2, (c8, baseline)


def test_export_matches_and_is_plain_torch(trained_like):
    x = torch.rand(3, 1, 28, 28)
    for net in trained_like.values():
        plain = net.export()
        assert plain.exported and not any("escnn" in type(m).__module__ for m in plain.modules())
        with torch.no_grad():
            assert torch.allclose(plain(x), net(x), atol=1e-5)
        # the exported network is still invariant (its filters are the expanded ones)
        assert_equivariant(plain, _digits(), [rot90(1)], dtype=torch.float32)
    assert group_order("c8") == 8 and group_order("d4") == 8
    with pytest.raises(ValueError, match="'cN' or 'dN'"):
        group_order("so2")


_LOAD_WITHOUT_ESCNN = textwrap.dedent(
    """
    import importlib.abc, json, sys, torch

    class HideEscnn(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "escnn" or name.startswith("escnn."):
                raise ImportError("escnn is hidden for this test")
            return None

    sys.meta_path.insert(0, HideEscnn())
    import geozoo
    from geozoo.zoo import create_model
    name, folder, expected = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    model = create_model(name, pretrained=True, weights=folder if folder != "-" else None)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        logits = model(x)
    assert "escnn" not in sys.modules, "escnn was imported"
    print(json.dumps(logits.tolist()))
    """
)


def _load_in_clean_process(name: str, folder: str) -> torch.Tensor:
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_ESCNN, name, folder, "[]"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return torch.tensor(json.loads(out.stdout.strip().splitlines()[-1]))


def test_pretrained_form_loads_with_escnn_hidden(trained_like, tmp_path):
    net = trained_like["c8"]
    plain = net.export()
    arguments = {**net.config, "exported": True}
    save_checkpoint(
        plain,
        tmp_path,
        {
            "name": "steerable_c8_rotmnist",
            "architecture": "steerable_c8_rotmnist",
            "arguments": arguments,
        },
    )
    logits = _load_in_clean_process("steerable_c8_rotmnist", str(tmp_path))
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        assert torch.allclose(logits, net(x), atol=1e-5)


PUBLISHED = [
    n
    for n in ("steerable_c8_rotmnist", "steerable_d4_rotmnist")
    if (models_dir() / n / "config.json").is_file()
]


_ESCNN_FORM = textwrap.dedent(
    """
    import json, sys, torch
    from geozoo.zoo import create_model
    model = create_model(sys.argv[1], pretrained=True, exported=False)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        print(json.dumps(model(x).tolist()))
    """
)


# OpenBLAS kernels this CPU can run: the native one, and Haswell (AVX2), which every x86-64
# machine with AVX2 supports. The issue this guards against (a different D4 basis) was seen with
# the SkylakeX kernel of AVX-512 CPUs; where the CPU has no AVX-512 the native kernel is not
# SkylakeX, so that case itself is only covered on such machines.
KERNELS = [None, "Haswell"]


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k or "native")
@pytest.mark.parametrize("name", PUBLISHED)
def test_published_escnn_form_gives_the_golden_logits(name, kernel, tmp_path):
    """The fine-tuning (escnn) form loads the kernel bases it was trained with, so it is the
    published network whatever escnn computes here: fresh process, empty escnn cache, and each
    OpenBLAS kernel (escnn's numerical basis solver depends on it)."""
    pytest.importorskip("escnn")
    config = json.loads((models_dir() / name / "config.json").read_text())
    golden = torch.tensor(config["golden"]["outputs"])
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["GEOZOO_ESCNN_CACHE"] = str(tmp_path / "empty_cache")
    if kernel:
        env["OPENBLAS_CORETYPE"] = kernel
    out = subprocess.run(
        [sys.executable, "-c", _ESCNN_FORM, name], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    logits = torch.tensor(json.loads(out.stdout.strip().splitlines()[-1]))
    assert (logits - golden).abs().max() <= 1e-4
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        assert torch.allclose(create_model(name, pretrained=True)(x), golden, atol=1e-4)


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_entry_loads_without_escnn(name):
    config = json.loads((models_dir() / name / "config.json").read_text())
    logits = _load_in_clean_process(name, "-")
    assert torch.allclose(logits, torch.tensor(config["golden"]["outputs"]), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLISHED)
def test_zoo_eval_reproduces_card(name):
    from geozoo.cli import main

    assert main(["zoo", "eval", name]) == 0  # accuracy within 0.2 points of the card
