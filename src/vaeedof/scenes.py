"""Scene sampling, exactly as the paper's Algorithm 1, into one scene.json per scene.

Geometry (Blender world, Z up): the camera sits at the origin looking along +Y; every plane is
fronto-parallel at depth `distance_m` along +Y, so focusing on a plane means focus distance =
its depth. Planes are listed near to far; the last one is the background plane, which fills the
view plus the widest defocus blur any focus setting of the scene can produce.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from . import atomic
from .errors import VaeedofError

SPLITS = ("train", "test")
SCENE_FORMAT = 1


def scene_ids(split: str, count: int) -> list[str]:
    return [f"{split}_{index:05d}" for index in range(count)]


def view_half_width(distance_m: float, focal_length_mm: float, sensor_width_mm: float) -> float:
    """Half the width of the (square) view at a given depth."""
    return distance_m * (sensor_width_mm / 2.0) / focal_length_mm


def max_blur_margin(aperture_m: float, nearest_focus_m: float, depth_m: float) -> float:
    """Lateral reach of defocus at `depth_m` when focused on the nearest plane: half the blur
    cone's diameter, aperture * |depth - focus| / focus / 2 (thin lens)."""
    return aperture_m * abs(depth_m - nearest_focus_m) / nearest_focus_m / 2.0


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    # One independent stream per scene: a scene does not change when the scene count does.
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _r(value: float) -> float:
    return round(float(value), 6)


def _credit(asset: dict) -> dict:
    # Photographs carry an attribution that must travel with every scene using them.
    return {"credit": asset["credit"]} if asset.get("credit") else {}


def sample_scene(params: dict, split: str, index: int, assets: dict) -> dict:
    """One scene's parameters (Algorithm 1) from the seed; pure function of its arguments."""
    cfg = params["scenes"]
    subjects = assets["subjects"][split]
    backgrounds = assets["backgrounds"][split]
    hdris = assets["hdris"]
    if not subjects or not backgrounds or not hdris:
        raise VaeedofError(f"asset index: no subjects/backgrounds/HDRIs for split '{split}'")
    rng = _rng(params["seed"], split, index)
    fstop = rng.uniform(*cfg["fstop"])
    focal = rng.uniform(*cfg["focal_length_mm"])
    sensor = cfg["sensor_width_mm"]
    n = cfg["planes"]
    picks = rng.choice(len(subjects), size=n, replace=len(subjects) < n)
    planes = []
    for pick in picks:
        distance = rng.uniform(*cfg["plane_distance_m"])
        half = view_half_width(distance, focal, sensor)
        asset = subjects[int(pick)]
        height = rng.uniform(*cfg["subject_height"]) * 2 * half
        planes.append({
            "kind": "subject",
            "asset": asset["id"],
            "image": asset["path"],
            "sha256": asset["sha256"],
            "distance_m": _r(distance),
            "center_m": [_r(rng.uniform(-half, half)), _r(rng.uniform(-half, half))],
            "height_m": _r(height),
            "width_m": _r(height * asset["width"] / asset["height"]),
            "rotation_deg": _r(rng.uniform(*cfg["rotation_deg"])),
            **_credit(asset),
        })
    planes.sort(key=lambda plane: plane["distance_m"])
    depth = cfg["background_distance_m"]
    aperture = focal / 1000.0 / fstop
    half_view = view_half_width(depth, focal, sensor)
    margin = max_blur_margin(aperture, planes[0]["distance_m"], depth) * 1.1 + 0.02 * half_view
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    planes.append({
        "kind": "background",
        "asset": background["id"],
        "image": background["path"],
        "sha256": background["sha256"],
        "distance_m": _r(depth),
        "center_m": [0.0, 0.0],
        # The image covers exactly the view; the plane extends by the blur margin (mirrored).
        "view_size_m": _r(2 * half_view),
        "height_m": _r(2 * (half_view + margin)),
        "width_m": _r(2 * (half_view + margin)),
        "rotation_deg": 0.0,
        **_credit(background),
    })
    hdri = hdris[int(rng.integers(len(hdris)))]
    crop = _sample_crop(rng, params["render"], planes, focal, sensor, split)
    return {
        "format": SCENE_FORMAT,
        "scene_id": f"{split}_{index:05d}",
        "split": split,
        "camera": {
            "fstop": _r(fstop),
            "focal_length_mm": _r(focal),
            "sensor_width_mm": _r(sensor),
            "aperture_m": _r(aperture),
        },
        "world": {
            "asset": hdri["id"],
            "hdri": hdri["path"],
            "sha256": hdri["sha256"],
            "rotation_deg": _r(rng.uniform(*cfg["hdri_rotation_deg"])),
            "strength": _r(rng.uniform(*cfg["world_strength"])),
            **_credit(hdri),
        },
        "planes": planes,
        # focus_k.png is focused on planes[k]; the index map uses the same numbering.
        "focus_order": list(range(len(planes))),
        "render_seed": int(rng.integers(0, 2**31 - 1)),
        "crop": crop,
    }


def _sample_crop(rng: np.random.Generator, render: dict, planes: list[dict], focal: float,
                 sensor: float, split: str) -> list[float] | None:
    """Normalised [x0, y0, x1, y1] (y from the top) of the rendered window, or None for the
    whole frame. A crop renders `render.crop` pixels of a `render.resolution` frame: defocus
    blur and texture detail keep their full-resolution size in pixels at a fraction of the cost
    (as the paper trains on 512 px patches of 4096 px renders). The window is centred on a
    random subject (jittered), so a crop holds subjects and not only the background."""
    if not render.get("crop"):
        return None
    # The test split may render larger windows: MS-SSIM and IW-SSIM need at least 161 px.
    pixels = render["test_crop"] if split == "test" and render.get("test_crop") else render["crop"]
    side = pixels / render["resolution"]
    subject = planes[int(rng.integers(len(planes) - 1))]
    half = view_half_width(subject["distance_m"], focal, sensor)
    # Image coordinates of the subject's centre: x right, y down, in [0, 1].
    cx = 0.5 + subject["center_m"][0] / (2 * half) + rng.uniform(-side / 2, side / 2)
    cy = 0.5 - subject["center_m"][1] / (2 * half) + rng.uniform(-side / 2, side / 2)
    x0 = float(np.clip(cx - side / 2, 0.0, 1.0 - side))
    y0 = float(np.clip(cy - side / 2, 0.0, 1.0 - side))
    return [_r(x0), _r(y0), _r(x0 + side), _r(y0 + side)]


def scene_path(scenes_dir: str | os.PathLike, split: str, scene_id: str) -> Path:
    return Path(scenes_dir) / split / f"{scene_id}.json"


def read_scene(path: str | os.PathLike) -> dict:
    return atomic.read_json(path, "run `vaeedof scenes`")


def parse_scene_id(scene_id: str) -> tuple[str, int]:
    split, _, number = scene_id.partition("_")
    if split not in SPLITS or not number.isdigit():
        raise VaeedofError(f"scene id '{scene_id}': expected <train|test>_<number>")
    return split, int(number)


def write_scenes(params: dict, assets: dict, out_dir: str | os.PathLike,
                 only: list[str] | None = None) -> list[Path]:
    """Write every split's scene.json files (or only the named scenes); unchanged files are
    rewritten byte-identically."""
    if only:
        targets = [parse_scene_id(scene_id) for scene_id in only]
    else:
        targets = [(split, index) for split in SPLITS for index in range(params["scenes"][split])]
    written = []
    for split, index in targets:
        spec = sample_scene(params, split, index, assets)
        path = scene_path(out_dir, split, spec["scene_id"])
        atomic.write_json(path, spec)
        written.append(path)
    return written


def check_ranges(spec: dict, params: dict) -> None:
    """Assert a scene lies within Algorithm 1's ranges (used by tests and `render`)."""
    cfg = params["scenes"]
    cam = spec["camera"]
    problems = []
    if not cfg["fstop"][0] <= cam["fstop"] <= cfg["fstop"][1]:
        problems.append(f"fstop {cam['fstop']}")
    if not cfg["focal_length_mm"][0] <= cam["focal_length_mm"] <= cfg["focal_length_mm"][1]:
        problems.append(f"focal length {cam['focal_length_mm']}")
    for plane in spec["planes"][:-1]:
        if not cfg["plane_distance_m"][0] <= plane["distance_m"] <= cfg["plane_distance_m"][1]:
            problems.append(f"plane distance {plane['distance_m']}")
        half = view_half_width(plane["distance_m"], cam["focal_length_mm"], cam["sensor_width_mm"])
        if max(abs(c) for c in plane["center_m"]) > half + 1e-6:
            problems.append(f"plane centre {plane['center_m']} outside the view")
    if not math.isclose(spec["planes"][-1]["distance_m"], cfg["background_distance_m"]):
        problems.append("background distance")
    if problems:
        raise VaeedofError(f"scene {spec['scene_id']}: outside Algorithm 1 ranges: {problems}")
