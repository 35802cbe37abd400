"""Where checkpoints come from: the zoo's own folder (``models/`` of a source checkout, or its
copy shipped inside the installed package), another local folder, a URL, or a Hugging Face
repository pinned by revision.  Downloads land in a cache folder and are
checked against the sha256 in the checkpoint's config like any local file."""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from pathlib import Path

from geozoo.cache import cache_dir as geozoo_cache_dir
from geozoo.zoo.weights import CONFIG_FILE, WEIGHTS_FILE, load_config

__all__ = ["cache_dir", "has_checkpoint", "models_dir", "resolve_checkpoint", "shipped_dir"]


def models_dir() -> Path:
    """The folder holding the zoo's published checkpoints.

    ``$GEOZOO_MODELS_DIR`` if set; else ``models/`` next to the ``geozoo`` package (a source
    checkout or an editable install); else the copy the wheel ships as package data
    (``geozoo/_shipped/models``).
    """
    env = os.environ.get("GEOZOO_MODELS_DIR")
    if env:
        return Path(env)
    return shipped_dir("models")


def shipped_dir(kind: str) -> Path:
    """``models`` or ``configs``: the repository's folder in a source checkout (or editable
    install), else the copy inside the installed package, ``geozoo/_shipped/KIND``."""
    package = Path(__file__).resolve().parents[1]
    root = package.parent
    if (root / "pyproject.toml").is_file() and (root / kind).is_dir():
        return root / kind
    return package / "_shipped" / kind


def cache_dir() -> Path:
    """Download cache: ``$GEOZOO_CACHE`` or ``~/.cache/geozoo``."""
    return geozoo_cache_dir()


def has_checkpoint(name: str) -> bool:
    return (models_dir() / name / CONFIG_FILE).is_file()


def resolve_checkpoint(name: str, weights: str | os.PathLike | None = None) -> Path:
    """Return a local folder holding ``config.json`` and ``model.safetensors``.

    Args:
        name: registered model name (used when ``weights`` is ``None``).
        weights: ``None`` for the zoo's own checkpoint; a local folder; an ``http(s)://`` URL of
            a folder; or ``hf://OWNER/REPO@REVISION`` (needs ``huggingface_hub``).
    """
    if weights is None:
        folder = models_dir() / name
        if not (folder / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"no published checkpoint for {name!r}: looked for {folder / CONFIG_FILE}. "
                f"Train one with `geozoo zoo train {name}` or pass weights=FOLDER."
            )
        return folder
    spec = str(weights)
    if spec.startswith(("http://", "https://")):
        return _download_url_folder(spec)
    if spec.startswith("hf://"):
        return _download_hf(spec[len("hf://") :])
    folder = Path(spec)
    if folder.is_file():
        folder = folder.parent
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"weights={spec!r}: expected a folder with {CONFIG_FILE} and {WEIGHTS_FILE}, "
            "an http(s) URL of such a folder, or hf://OWNER/REPO@REVISION"
        )
    return folder


def _weight_files(folder: Path) -> list[str]:
    """The weight files a downloaded ``config.json`` lists (published form and other forms)."""
    config = load_config(folder)
    return [config["weights"]["file"], *(f["file"] for f in config.get("forms", {}).values())]


def _download_url_folder(url: str) -> Path:
    base = url.rstrip("/")
    target = cache_dir() / "url" / urllib.parse.quote(base, safe="")
    target.mkdir(parents=True, exist_ok=True)

    def fetch(filename: str) -> None:
        destination = target / filename
        if not destination.is_file():
            partial = destination.with_suffix(".partial")
            urllib.request.urlretrieve(f"{base}/{filename}", partial)
            partial.replace(destination)

    fetch(CONFIG_FILE)
    for filename in _weight_files(target):
        fetch(filename)
    return target


def _download_hf(spec: str) -> Path:
    repo_id, _, revision = spec.partition("@")
    if not revision:
        raise ValueError(
            f"hf://{spec}: pin a revision (hf://OWNER/REPO@COMMIT) so the weights cannot change"
        )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as error:
        raise ImportError("loading from hf:// needs `pip install huggingface_hub`") from error

    def fetch(filename: str) -> Path:
        local = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir() / "hf")
        return Path(local).parent

    folder = fetch(CONFIG_FILE)
    for filename in _weight_files(folder):
        fetch(filename)
    return folder
