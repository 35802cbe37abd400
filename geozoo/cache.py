"""geozoo's one cache folder for downloads (data sets, checkpoints fetched by URL)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """``$GEOZOO_CACHE`` (default ``~/.cache/geozoo``), joined with ``parts``."""
    root = Path(os.environ.get("GEOZOO_CACHE", Path.home() / ".cache" / "geozoo"))
    return root.joinpath(*parts)
