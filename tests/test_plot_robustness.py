"""scripts/plot_robustness.py: ``--entries`` restricts the comparison, ``--update-cards``
rewrites only the compared entries' notes (after the notes their builders declare) and reports
the wide affine test set."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from geozoo.zoo.hub import models_dir

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "plot_robustness", ROOT / "scripts" / "plot_robustness.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unknown_entries_are_explained(capsys):
    with pytest.raises(SystemExit):
        _script().main(["--entries", "cnn_mnist", "cnn_mnits"])
    assert "unknown entries ['cnn_mnits']: expected names from" in capsys.readouterr().err


def test_entries_and_update_cards(tmp_path, monkeypatch):
    shutil.copytree(models_dir() / "cnn_mnist", tmp_path / "models" / "cnn_mnist")
    monkeypatch.setenv("GEOZOO_MODELS_DIR", str(tmp_path / "models"))
    output = tmp_path / "robustness.png"
    _script().main(
        ["--limit", "8", "--entries", "cnn_mnist", "--output", str(output), "--update-cards"]
    )
    assert output.stat().st_size > 0
    notes = json.loads((tmp_path / "models" / "cnn_mnist" / "config.json").read_text())["notes"]
    assert notes.startswith("Trained on centred digits only")  # the builder's notes come first
    assert "--limit 8 --entries cnn_mnist --update-cards" in notes
    assert "affNIST-style | wide affine test sets" in notes
    assert "cnn_affaug_mnist" not in notes.split("Robustness sweeps")[1]
    assert notes in (tmp_path / "models" / "cnn_mnist" / "README.md").read_text()
