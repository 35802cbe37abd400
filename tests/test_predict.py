"""``geozoo predict`` writes one CSV row per input and prints where."""

from __future__ import annotations

import csv

import pytest

from geozoo.cli import main

RECIPE = "configs/cnn_mnist.yaml"
SMALL = [
    "--model.init_args.network.init_args.widths=[4, 8]",
    "--data.init_args.offline_test_size=150",
    "--data.init_args.batch_size=64",
    "--data.init_args.test_sets=[clean]",
    "--trainer.enable_progress_bar=false",
]


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_writes_one_row_per_input(tmp_path, capsys) -> None:
    assert (
        main(["predict", "--config", RECIPE, *SMALL, f"--trainer.default_root_dir={tmp_path}"]) == 0
    )
    written = sorted(tmp_path.rglob("predictions.csv"))
    assert len(written) == 1
    assert f"wrote 150 predictions to {written[0]}" in capsys.readouterr().out
    rows = _rows(written[0])
    assert [int(r["index"]) for r in rows] == list(range(150))  # 3 batches, the last one partial
    probs = [[float(r[f"prob_{c}"]) for c in range(10)] for r in rows]
    assert all(abs(sum(p) - 1) < 1e-4 for p in probs)
    assert [int(r["predicted"]) for r in rows] == [p.index(max(p)) for p in probs]
    assert {int(r["target"]) for r in rows} == set(range(10))


def test_predict_output_path_from_the_command_line(tmp_path, capsys) -> None:
    output = tmp_path / "sub" / "preds.csv"
    args = [
        "--trainer.callbacks+=geozoo.callbacks.PredictionWriter",
        f"--trainer.callbacks.output={output}",
    ]
    assert (
        main(
            ["predict", "--config", RECIPE, *SMALL, *args, f"--trainer.default_root_dir={tmp_path}"]
        )
        == 0
    )
    assert len(_rows(output)) == 150
    assert not list(tmp_path.rglob("predictions.csv"))  # the explicit writer replaces the default
    assert str(output) in capsys.readouterr().out


def test_writer_refuses_non_tensor_predictions(tmp_path) -> None:
    from geozoo.callbacks import PredictionWriter

    writer = PredictionWriter(tmp_path / "p.csv")
    with pytest.raises(TypeError, match="predict_step returned dict"):
        writer.write_on_batch_end(None, None, {"a": 1}, [0], None, 0)
