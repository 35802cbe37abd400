"""The seed-summary cell of the reproduce scripts' tables, and their marked-block writer."""

import statistics

import pytest

from geozoo.zoo.cards import mean_std, replace_marked_block


def test_mean_std_cells():
    values = [93.6, 92.1, 94.9]
    expected = f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"
    assert mean_std(values) == expected == "93.5 ± 1.4"
    assert mean_std([0.12345, 0.5], digits=2) == "0.31 ± 0.27"
    assert mean_std([97.04]) == "97.0"


def test_replace_marked_block_replaces_only_its_block(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- t:begin -->\nold\n<!-- t:end -->\nmid\n<!-- t:end -->\n")
    replace_marked_block(doc, "<!-- t:begin -->", "<!-- t:end -->", "| new |")
    assert (
        doc.read_text()
        == "before\n<!-- t:begin -->\n| new |\n<!-- t:end -->\nmid\n<!-- t:end -->\n"
    )
    replace_marked_block(doc, "<!-- t:begin -->", "<!-- t:end -->", "| newer |")
    assert "| new |" not in doc.read_text() and "| newer |" in doc.read_text()


@pytest.mark.parametrize("text", ["no markers", "<!-- t:end --> <!-- t:begin -->"])
def test_replace_marked_block_needs_both_markers_in_order(tmp_path, text):
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    with pytest.raises(ValueError, match=r"has no <!-- t:begin --> \.\.\. <!-- t:end --> block"):
        replace_marked_block(doc, "<!-- t:begin -->", "<!-- t:end -->", "| table |")
    assert doc.read_text() == text
