"""Render a whole split (the DVC stage): every scene of the split in order, skipping those whose
renders are current, then removing scene folders no longer in the scene list."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import scenes
from ..logs import get_logger
from .renderer import render_scene, rendered_here


def render_split(params: dict, split: str, scenes_dir: str | os.PathLike, out: str | os.PathLike,
                 threads: int = 1, blender_log: str | os.PathLike | None = None,
                 force: bool = False) -> None:
    log = get_logger()
    ids = scenes.scene_ids(split, params["scenes"][split])
    for position, scene_id in enumerate(ids, 1):
        spec = scenes.read_scene(scenes.scene_path(scenes_dir, split, scene_id))
        scenes.check_ranges(spec, params)
        render_scene(spec, params, Path(out) / scene_id, threads, blender_log, force)
        log.info("render %s: %d/%d scenes", split, position, len(ids))
    remove_stale(Path(out), set(ids))


def remove_stale(out: Path, keep: set[str]) -> None:
    """Delete rendered scene folders whose scene is no longer part of the split: only folders
    `render` wrote (`rendered_here`); anything else there is left alone."""
    if out.is_dir():
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink() and child.name not in keep and rendered_here(child):
                get_logger().info("removing %s (no longer in the scene list)", child)
                shutil.rmtree(child)
