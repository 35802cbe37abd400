"""Suite-wide fixtures: the ``geozoo`` console script, the scripts as modules, and a guard that
the suite writes nothing (such as a Lightning ``config.yaml``) into the repository root."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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


@pytest.fixture(scope="session")
def load_script():
    """``load_script(NAME)`` imports ``scripts/NAME.py`` (scripts are not a package) once."""
    loaded: dict[str, ModuleType] = {}

    def load(name: str) -> ModuleType:
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
            loaded[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded[name])
        return loaded[name]

    return load
