"""Suite-wide fixtures: the ``geozoo`` console script, and a guard that the suite writes
nothing (such as a Lightning ``config.yaml``) into the repository root."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def geozoo_command() -> list[str]:
    """The ``geozoo`` console script of this interpreter's environment, or an equivalent that,
    like it, does not put the working directory on ``sys.path`` (``python -P``)."""
    script = Path(sys.executable).with_name("geozoo")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-P", "-c", "import sys; from geozoo.cli import main; sys.exit(main())"]


@pytest.fixture(autouse=True, scope="session")
def _repository_root_stays_clean():
    before = {p.name for p in ROOT.iterdir()}
    yield
    added = sorted(
        name
        for name in {p.name for p in ROOT.iterdir()} - before
        if not name.startswith((".", "__")) and name != "lightning_logs"
    )
    assert not added, f"the test suite wrote {added} into {ROOT}; write to tmp_path instead"
