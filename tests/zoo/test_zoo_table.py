"""scripts/zoo_table.py: the README's zoo table is the one the cards print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("zoo_table")


def test_readme_table_is_printed_from_the_cards(script):
    block = re.search(
        re.escape(script.BEGIN) + r"\n(.*?)\n" + re.escape(script.END), README.read_text(), re.S
    )
    assert block, "README.md lost its zoo-table markers"
    assert block.group(1) == script.table(), "rerun `python scripts/zoo_table.py --write README.md`"


def test_metrics_cell_adds_the_seed_spread(script):
    config = {
        "metrics": {"clean/acc": 96.4, "clean/ece": 1.3, "wide/acc": 90.0},
        "seeds": {
            "seeds": [0, 1, 2],
            "mean": {"clean/acc": 96.633, "clean/ece": 1.5, "wide/acc": 89.0},
            "std": {"clean/acc": 0.49, "clean/ece": 0.4, "wide/acc": 1.0},
        },
    }
    assert (
        script.metrics_cell(config) == "clean 96.4, wide 90.0 (3 seeds: 96.63 ± 0.49, 89.00 ± 1.00)"
    )
    one_seed = {"metrics": {"clean/acc": 98.0}, "seeds": {"seeds": [0]}}
    assert script.metrics_cell(one_seed) == "clean 98.0"


def test_write_needs_the_markers(script, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("no table here\n")
    with pytest.raises(ValueError, match="has no <!-- zoo-table:begin -->"):
        script.write(doc, "| table |")
    doc.write_text(f"before\n{script.BEGIN}\nold\n{script.END}\nafter\n")
    script.write(doc, "| new |")
    assert doc.read_text() == f"before\n{script.BEGIN}\n| new |\n{script.END}\nafter\n"


def test_metrics_cell_leaves_out_a_partial_spread(script):
    config = {
        "metrics": {"clean/acc": 96.4, "wide/acc": 90.0},
        "seeds": {"seeds": [0, 1], "mean": {"clean/acc": 96.0}, "std": {"clean/acc": 0.4}},
    }
    assert script.metrics_cell(config) == "clean 96.4, wide 90.0"
