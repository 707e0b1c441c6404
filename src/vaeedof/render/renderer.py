"""Render one scene: a render focused on each plane, one all-in-focus ground truth, and the
per-pixel plane index; the scene directory appears only when complete."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .. import atomic
from ..errors import VaeedofError
from ..hashing import sha256_file, sha256_json
from ..logs import get_logger, redirect_fds
from . import layout

NO_PLANE = 255
RENDER_FORMAT = 1


def render_settings(params: dict) -> dict:
    """What the pixels depend on (threads do not change them)."""
    render = params["render"]
    return {
        "format": RENDER_FORMAT,
        "resolution": render["resolution"],
        "crop": render["crop"],
        "samples": render["samples"],
        "gt_samples": render["gt_samples"] or render["samples"],
        "denoise": render["denoise"],
        "device": render["device"],
    }


def fingerprint(spec: dict, settings: dict) -> str:
    """What a rendered scene depends on; threads do not change the pixels."""
    return sha256_json({"scene": spec, "settings": settings})


# A hidden copy of scene.json: Snakemake deletes a job's declared output (scene.json) before
# rerunning it, and a scene whose renders are still current must not be rendered again.
COMPLETE = ".complete.json"
STAGE = "render"  # the owner of every scene folder it writes (atomic.OWNER_FILE)


def rendered_here(folder: Path) -> bool:
    """Whether `render` wrote `folder`: its owner file, or (folders rendered before owner files
    existed) its completion record."""
    return atomic.owner_of(folder) == STAGE or (folder / COMPLETE).is_file()


def is_current(out_dir: Path, spec: dict, settings: dict) -> bool:
    """True when out_dir holds every render of `spec` with these settings; restores scene.json
    from the hidden copy if only that was removed."""
    marker = out_dir / COMPLETE
    if not marker.exists():
        return False
    try:
        meta = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    names = layout.image_files(spec) + [layout.INDEX_FILE]
    if meta.get("fingerprint") != fingerprint(spec, settings):
        return False
    if not all((out_dir / n).exists() for n in names):
        return False
    if not (out_dir / layout.SCENE_FILE).exists():
        atomic.write_json(out_dir / layout.SCENE_FILE, meta)
    return True


def _verified(path: str, sha256: str, scene_id: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise VaeedofError(f"{file}: asset of scene {scene_id} is missing (rerun `vaeedof assets`)")
    if sha256_file(file) != sha256:
        raise VaeedofError(f"{file}: asset of scene {scene_id} fails its checksum (tampered?)")
    return file


def decode_index(id_render: np.ndarray, planes: int) -> np.ndarray:
    """ID-pass grey levels (k + 1) * ID_STEP -> plane index k; anything else -> NO_PLANE."""
    from .blender_scene import ID_STEP

    grey = id_render[..., 0].astype(np.int32)
    code = np.rint(grey / ID_STEP).astype(np.int32) - 1
    valid = (code >= 0) & (code < planes) & (np.abs(grey - (code + 1) * ID_STEP) <= 3)
    return np.where(valid, code, NO_PLANE).astype(np.uint8)


def render_scene(spec: dict, params: dict, out_dir: str | os.PathLike, threads: int = 1,
                 blender_log: str | os.PathLike | None = None, force: bool = False) -> bool:
    """Render `spec` into out_dir; return False when it was already current (nothing done)."""
    import bpy

    from . import blender_scene as bs

    log = get_logger()
    out_dir = Path(out_dir)
    settings = render_settings(params)
    if not force and is_current(out_dir, spec, settings):
        log.info("%s: up to date", out_dir)
        return False
    planes = spec["planes"]
    hdri = _verified(spec["world"]["hdri"], spec["world"]["sha256"], spec["scene_id"])
    images = [_verified(p["image"], p["sha256"], spec["scene_id"]) for p in planes]
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if rendered_here(out_dir) and atomic.owner_of(out_dir) is None:
        atomic.mark_owner(out_dir, STAGE)  # rendered by an earlier version: ours to replace
    with atomic.atomic_directory(out_dir, STAGE) as tmp, redirect_fds(blender_log):
        bs.reset()
        device = bs.configure_render(settings["resolution"], settings["samples"],
                                     settings["denoise"], settings["device"], threads,
                                     spec["render_seed"], spec.get("crop"))
        camera = bs.add_camera(spec["camera"])
        bs.add_world(spec["world"], hdri)
        objects = [bs.add_plane(k, plane, image)
                   for k, (plane, image) in enumerate(zip(planes, images, strict=True))]
        for k in spec["focus_order"]:
            camera.data.dof.focus_distance = planes[k]["distance_m"]
            tick = time.perf_counter()
            bs.render_to(tmp / layout.focus_file(k))
            timings[f"focus_{k}"] = round(time.perf_counter() - tick, 3)
        camera.data.dof.use_dof = False
        bpy.context.scene.cycles.samples = settings["gt_samples"]
        tick = time.perf_counter()
        bs.render_to(tmp / layout.GT_FILE)
        timings["gt"] = round(time.perf_counter() - tick, 3)
        # Plane index: flat ID colours, one sample at the pixel centre, nothing blended.
        bs.use_id_materials(objects)
        scene = bpy.context.scene
        scene.cycles.samples = 1
        scene.cycles.use_denoising = False
        scene.cycles.filter_width = 0.01
        tick = time.perf_counter()
        bs.render_to(tmp / "id_raw.png")
        timings["index"] = round(time.perf_counter() - tick, 3)
        id_render = np.asarray(Image.open(tmp / "id_raw.png").convert("RGB"))
        (tmp / "id_raw.png").unlink()
        index = decode_index(id_render, len(planes))
        Image.fromarray(index, mode="L").save(tmp / layout.INDEX_FILE)
        meta = dict(spec)
        meta["render"] = dict(settings, device_used=device, threads=threads,
                              blender=bpy.app.version_string)
        meta["fingerprint"] = fingerprint(spec, settings)
        meta["render_seconds"] = dict(timings, total=round(time.perf_counter() - started, 3))
        atomic.write_json(tmp / layout.SCENE_FILE, meta)
        atomic.write_json(tmp / COMPLETE, meta)
    log.info("%s: rendered in %.1f s (%s)", out_dir, time.perf_counter() - started, device)
    return True
