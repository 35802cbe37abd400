"""The README's examples run as written: extracted from README.md, so the test fails if the
README drifts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```(?P<lang>\w+)\n(?P<body>.*?)```", re.DOTALL)


def readme_blocks() -> list[tuple[str, str]]:
    return [(m["lang"], m["body"]) for m in BLOCK.finditer((ROOT / "README.md").read_text())]


def test_custom_objective_example_runs_from_a_fresh_folder(tmp_path, geozoo_command) -> None:
    files = {}
    for _, body in readme_blocks():
        first = body.partition("\n")[0]
        if re.fullmatch(r"# [\w.]+\.(py|yaml)", first):
            files[first[2:]] = body
    assert {"my_package.py", "my_recipe.yaml"} <= set(files), sorted(files)
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    commands = [
        line.split("  #")[0].strip()
        for lang, body in readme_blocks()
        if lang == "bash"
        for line in body.splitlines()
        if "--config my_recipe.yaml" in line and "fast_dev_run" in line
    ]
    assert len(commands) == 1, commands
    argv = shlex.split(commands[0])
    assert argv[0] == "geozoo"
    # the worktree's geozoo, not the folder, on the path: as for an installed package
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GEOZOO_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [*geozoo_command, *argv[1:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LightningCLI's args parameter" not in done.stderr
