"""scripts/ablate_affine.py: the table of a run log (one recipe and budget at a time) and its
place between the ``<!-- ablate-affine -->`` markers of a document; no training here."""

import json
import runpy
from pathlib import Path
from types import SimpleNamespace

from geozoo.zoo.cards import replace_marked_block

ROOT = Path(__file__).resolve().parents[1]


def _script() -> SimpleNamespace:
    return SimpleNamespace(**runpy.run_path(str(ROOT / "scripts" / "ablate_affine.py")))


def _run(variant, seed, wide, epochs=4, changes=None):
    return {
        "recipe": "affconv_gl2_mnist",
        "variant": variant,
        "changes": changes or {},
        "seed": seed,
        "epochs": epochs,
        "limit_train": 800,
        "scores": {"clean": 90.0 + seed, "affnist": 80.0, "wide": wide},
    }


def test_table_only_keeps_one_budget_and_writes_the_doc(tmp_path, capsys):
    script = _script()
    log = tmp_path / "ablate.jsonl"
    runs = [
        _run("recipe", 0, 90.0),
        _run("recipe", 1, 94.0),
        _run("recipe", 2, 92.0),
        _run("pos2", 0, 70.0, changes={"positives": 2}),
        _run("recipe", 0, 10.0, epochs=1),  # another budget: left out
        _run("no_canon", 0, 50.0),  # not asked for: left out
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in runs))
    doc = tmp_path / "affine.md"
    doc.write_text(f"# Ablation\n{script.BEGIN}\n{script.END}\n")
    budget = ["--epochs", "4", "--limit-train", "800"]
    outputs = ["--log", str(log), "--table-only", "--write-doc", str(doc)]
    script.main(["--variants", "pos2", "recipe", *budget, *outputs])
    printed = capsys.readouterr().out
    assert (
        "| recipe | (recipe) | 0, 1, 2 | 91.00 ± 1.00 | 80.00 ± 0.00 | 92.00 ± 2.00 |  |  |"
        in printed
    )
    # the transformed scores against the recipe run of the same seed (seed 0: wide 90.0)
    assert "| pos2 | positives=2 | 0 | 90.00 | 80.00 | 70.00 | 0.00 | -20.00 |" in printed
    assert "no_canon" not in printed and "[(4, 800)]" in printed
    assert printed.index("| pos2 |") < printed.index("| recipe |")  # the asked order
    assert printed.strip() in doc.read_text()


def test_overrides_reach_the_recipe_network_as_given():
    """Strings (``group_kernel=mlp``), ``None`` and numbers arrive as the values they name."""
    from geozoo.zoo.recipes import _parse, recipe_path

    script = _script()
    recipe = recipe_path("affconv_gl2_mnist")
    for name in ("no_canon", "centroid_only", "mlp_kernel", "pos2"):
        changes = script.ABLATIONS[name]
        overrides = script.overrides_for(changes, epochs=1, limit_train=64, batch_size=32)
        _, config = _parse(recipe, overrides)
        arguments = config["model"]["init_args"]["network"]["init_args"]
        assert {k: arguments[k] for k in changes} == changes, name
        assert config["trainer"]["max_epochs"] == 1


def test_docs_affine_has_the_table_block(tmp_path):
    """The command docs/affine.md gives (``--write-doc docs/affine.md``) finds its markers."""
    script = _script()
    doc = tmp_path / "affine.md"
    doc.write_text((ROOT / "docs" / "affine.md").read_text())
    replace_marked_block(doc, script.BEGIN, script.END, "| table |")
    assert f"{script.BEGIN}\n| table |\n{script.END}" in doc.read_text()


def test_docs_table_is_the_one_the_log_prints(capsys):
    """docs/affine.md's ablation table is what the documented command prints from the committed
    run log (rerun it with ``--write-doc docs/affine.md`` after adding runs)."""
    script = _script()
    doc = (ROOT / "docs" / "affine.md").read_text()
    command = doc[doc.index("python scripts/ablate_affine.py --variants recipe") :]
    variants = command[: command.index("--seeds")].split("--variants")[1].replace("\\", " ").split()
    log = ROOT / "docs" / "affine_ablation_runs.jsonl"
    recipe = command.split("--recipe")[1].split()[0]
    script.main(["--variants", *variants, "--recipe", recipe, "--log", str(log), "--table-only"])
    printed = capsys.readouterr().out.strip()
    block = doc[doc.index(script.BEGIN) + len(script.BEGIN) : doc.index(script.END)].strip()
    assert block == printed


def test_scored_runs_are_printed_and_logged_only_with_a_log(tmp_path, capsys):
    script, record = _script(), _run("published affconv_gl2_mnist", 0, 90.0)
    script._record(record, None)  # --published / --checkpoints without --log: printed only
    assert json.loads(capsys.readouterr().out) == record
    log = tmp_path / "runs.jsonl"
    script._record(record, log)
    script._record(record, log)
    assert [json.loads(line) for line in log.read_text().splitlines()] == [record, record]
