"""The rendered MattingMFIF dataset on disk: one directory per complete scene."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import VaeedofError


def rendered_scenes(folder: str | os.PathLike) -> list[Path]:
    """Scene directories of a split, in name order; only complete ones (scene.json written last)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VaeedofError(f"{folder}: rendered split not found (run the render stage first)")
    return sorted(p for p in folder.iterdir() if (p / "scene.json").exists())
