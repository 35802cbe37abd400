"""scripts/reproduce_soft_equivariance.py and scripts/bench_soft_equivariance.py write their
tables between ``<!-- softeq-... -->`` markers through ``geozoo.zoo.cards.replace_marked_block``."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="module")
def script(load_script):
    # the bench imports the reproduction script as a module (its dataclasses need sys.modules)
    load_script("bench_soft_equivariance")
    return sys.modules["reproduce_soft_equivariance"]


def test_write_doc_fills_the_blocks_a_file_has_and_refuses_a_file_without(script, tmp_path):
    begin, end = script.markers("table")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{begin}\nold\n{end}\nrest {begin} stays\n")
    script.write_doc(str(readme), {"results": "everything", "table": "| a |"})
    assert readme.read_text() == f"intro\n{begin}\n| a |\n{end}\nrest {begin} stays\n"
    doc = tmp_path / "doc.md"
    results, table = script.markers("results"), script.markers("table")
    doc.write_text(f"{results[0]}\n{results[1]}\nx\n{table[0]}{table[1]}\n")
    script.write_doc(str(doc), {"results": "full", "table": "main"})
    expected = f"{results[0]}\nfull\n{results[1]}\nx\n{table[0]}\nmain\n{table[1]}\n"
    assert doc.read_text() == expected
    bare = tmp_path / "bare.md"
    bare.write_text(f"only a begin {begin}\n")
    with pytest.raises(ValueError, match="softeq-results or softeq-table"):
        script.write_doc(str(bare), {"results": "full", "table": "main"})
    assert bare.read_text() == f"only a begin {begin}\n"


def test_the_bench_writes_its_block_with_the_same_markers(load_script, tmp_path):
    bench = load_script("bench_soft_equivariance")
    begin, end = bench.markers("bench")
    assert (begin, end) == ("<!-- softeq-bench:begin -->", "<!-- softeq-bench:end -->")
