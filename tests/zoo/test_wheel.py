"""The zoo from an installed package: a wheel built from this checkout, installed into a fresh
virtual environment and run from outside the checkout, lists and loads every pretrained entry
(weights and recipes ship as package data) and finds the shipped recipes by name."""

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import geozoo
from geozoo.zoo.hub import models_dir

ROOT = Path(geozoo.__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "setup.py", "README.md", "LICENSE", "geozoo", "models", "configs"]

CHECK = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    import geozoo
    from geozoo.zoo.pretrained import InputSpec
    from geozoo.zoo.recipes import recipe_path

    names = geozoo.list_models(pretrained=True)
    outputs = {}
    for name in names:
        config = geozoo.card(name)
        model = geozoo.create_model(name, pretrained=True)  # sha256-checked
        golden = config["golden"]
        x = InputSpec.from_dict(config["input"]).example(golden["batch"], seed=golden["seed"])
        with torch.no_grad():
            out = model(x).reshape(golden["batch"], -1)
        outputs[name] = float((out - torch.tensor(golden["outputs"])).abs().max())
    print(json.dumps({
        "package": geozoo.__file__,
        "names": names,
        "golden_gaps": outputs,
        "recipe": str(recipe_path("affconv_gl2_mnist")),
    }))
    """
)


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GEOZOO_MODELS_DIR")}
    env["PIP_NO_INDEX"] = "1"  # nothing is downloaded: the build and install are local
    return env


def test_wheel_ships_and_loads_every_pretrained_entry(tmp_path):
    if not (ROOT / "setup.py").is_file():
        pytest.skip("not a source checkout")
    source = tmp_path / "source"
    source.mkdir()
    for item in SOURCES:
        path = ROOT / item
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.partial")
            shutil.copytree(path, source / item, ignore=ignore)
        else:
            shutil.copy2(path, source / item)
    env = _environment()
    run = {"env": env, "capture_output": True, "text": True, "cwd": tmp_path}
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    out = subprocess.run([*build, "-q", "-w", str(wheels), str(source)], **run)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = wheels.glob("geozoo-*.whl")
    venv = tmp_path / "venv"
    out = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], **run)
    assert out.returncode == 0, out.stderr[-3000:]
    python = venv / "bin" / "python"
    # the dependencies (and pip) come from this interpreter's site-packages, listed after the
    # new environment's own; plain path lines, so its .pth files (such as an editable install
    # of this checkout) are not run
    out = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"], **run
    )
    own = Path(out.stdout.strip())
    (own / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall"]
    out = subprocess.run([*install, str(wheel)], **run)
    assert out.returncode == 0, out.stderr[-3000:]

    out = subprocess.run([str(python), "-c", CHECK], **run)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(result["package"]).is_relative_to(venv), result["package"]
    published = sorted(p.parent.name for p in models_dir().glob("*/config.json"))
    assert result["names"] == published
    assert all(gap <= 1e-4 for gap in result["golden_gaps"].values()), result["golden_gaps"]
    assert Path(result["recipe"]).is_relative_to(venv)

    geozoo_command = venv / "bin" / "geozoo"
    out = subprocess.run(
        [str(geozoo_command), "fit", "--config", "affconv_gl2_mnist", "--print_config"], **run
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "geozoo.nets.AffConvNet" in out.stdout
