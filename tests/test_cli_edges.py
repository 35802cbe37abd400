"""Edges of the ``geozoo`` command a new user meets first."""

from __future__ import annotations

import os
import subprocess
import urllib.error
from pathlib import Path

import pytest

from geozoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "configs/cnn_mnist.yaml"


def test_help_mentions_zoo_commands_without_the_args_warning(tmp_path, geozoo_command) -> None:
    done = subprocess.run(
        [*geozoo_command, "--help"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "geozoo zoo list|show|eval|train" in " ".join(done.stdout.split())
    assert "usage: geozoo " in done.stdout
    assert "args parameter" not in done.stderr


def test_unimportable_class_path_is_the_first_line(capsys) -> None:
    objective = "--model.init_args.objectives=[{class_path: no_such_package.MyLoss}]"
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", RECIPE, objective])
    assert info.value.code == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("geozoo fit: error: cannot import class_path 'no_such_package.MyLoss'")
    assert "No module named 'no_such_package'" in first and "PYTHONPATH" in first


def test_misspelt_class_name_gets_a_suggestion(capsys) -> None:
    objective = "--model.init_args.objectives=[{class_path: geozoo.objectives.CrossEntropi}]"
    with pytest.raises(SystemExit):
        main(["fit", "--config", RECIPE, objective])
    first = capsys.readouterr().err.splitlines()[0]
    assert "has no attribute 'CrossEntropi'" in first and "Did you mean CrossEntropy" in first


def test_unimportable_optimizer_is_the_first_line_too(capsys) -> None:
    # callable arguments word jsonargparse's message differently from class arguments
    optimizer = "--model.init_args.optimizer={class_path: no_such_package.MyOptimizer}"
    with pytest.raises(SystemExit):
        main(["fit", "--config", RECIPE, optimizer])
    first = capsys.readouterr().err.splitlines()[0]
    assert "cannot import class_path 'no_such_package.MyOptimizer'" in first
    optimizer = "--model.init_args.optimizer={class_path: geozoo.nn.RiemanianAdam}"
    with pytest.raises(SystemExit):
        main(["fit", "--config", RECIPE, optimizer])
    first = capsys.readouterr().err.splitlines()[0]
    assert "Did you mean RiemannianAdam" in first  # the lazily imported optimizer is listed


def test_cifar10_offline_says_how_to_point_data_dir_at_local_files(tmp_path, monkeypatch) -> None:
    from geozoo.data import cifar

    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("GEOZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cifar.urllib.request, "urlopen", offline)
    with pytest.raises(cifar.CIFAR10NotFoundError) as info:
        cifar.resolve_cifar10()
    message = str(info.value)
    assert "name resolution" in message
    assert "--data.init_args.data_dir=/path/to/cifar-10-batches-bin" in message
