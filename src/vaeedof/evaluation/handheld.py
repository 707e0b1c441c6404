"""`vaeedof handheld`: a hand-held copy of the rendered test split, to evaluate alignment.

Every focus frame of a scene is warped as a hand-held camera would have moved it, seeded per
scene: focus breathing (a scale drifting linearly across the stack, up to `max_scale`), shake
(shift up to `max_shift_px`, rotation up to `max_rotation_deg`). The middle frame of the focus
order, the reference alignment chains towards, is left as rendered, so the ground truth still
matches it. Warping reflects the image at its edges (the renders do not extend further). Each
scene folder has the rendered layout (`vaeedof.render.layout`), its scene.json records the
transforms; manifest.json is written last.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np

from .. import atomic
from ..logs import progress
from ..render import layout

STAGE = "handheld"  # the owner of the hand-held split's folder (atomic.OWNER_FILE)


def hand_held_transforms(count: int, size: tuple[int, int], rng: np.random.Generator,
                         max_scale: float, max_shift_px: float, max_rotation_deg: float) -> list[np.ndarray]:
    """3x3 maps, frame k holding rendered(M_k p) at p; identity for the middle frame."""
    height, width = size
    reference = (count - 1) // 2
    drift = rng.uniform(-max_scale, max_scale)  # total scale change across the stack
    centre = np.array([[1, 0, -(width - 1) / 2], [0, 1, -(height - 1) / 2], [0, 0, 1.0]])
    out = []
    for k in range(count):
        if k == reference:
            out.append(np.eye(3))
            continue
        scale = 1 + drift * (k - reference) / max(1, count - 1)
        angle = math.radians(rng.uniform(-max_rotation_deg, max_rotation_deg))
        cos, sin = scale * math.cos(angle), scale * math.sin(angle)
        matrix = np.linalg.inv(centre) @ np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]]) @ centre
        matrix[:2, 2] += rng.uniform(-max_shift_px, max_shift_px, 2)
        out.append(matrix)
    return out


def make_split(data_dir: str | os.PathLike, out_dir: str | os.PathLike, params: dict) -> Path:
    """Write the hand-held copy of every rendered scene of data_dir into out_dir
    (`evaluate.handheld` of the parameters, seeded by `seed`)."""
    cfg, seed = params["evaluate"]["handheld"], params["seed"]
    import cv2
    from PIL import Image

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    scenes = layout.rendered_scenes(data_dir)
    with atomic.atomic_directory(out_dir, STAGE, [data_dir]) as tmp:
        for index, scene in enumerate(progress(scenes, desc="hand-held")):
            meta = layout.read_meta(scene)
            rgb = [np.asarray(Image.open(scene / layout.focus_file(k)).convert("RGB"))
                   for k in meta["focus_order"]]
            rng = np.random.default_rng([seed, 41, index])
            transforms = hand_held_transforms(len(rgb), rgb[0].shape[:2], rng, cfg["max_scale"],
                                              cfg["max_shift_px"], cfg["max_rotation_deg"])
            target = tmp / scene.name
            target.mkdir()
            for k, pixels, matrix in zip(meta["focus_order"], rgb, transforms, strict=True):
                height, width = pixels.shape[:2]
                warped = cv2.warpAffine(pixels, matrix[:2], (width, height), borderMode=cv2.BORDER_REFLECT,
                                        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
                Image.fromarray(warped).save(target / layout.focus_file(k))
            for name in (layout.GT_FILE, layout.INDEX_FILE):
                shutil.copyfile(scene / name, target / name)
            meta = dict(meta, handheld={"transforms": [np.round(m, 8).tolist() for m in transforms], **cfg})
            atomic.write_json(target / layout.SCENE_FILE, meta)
        atomic.write_json(tmp / "manifest.json", {"scenes": [s.name for s in scenes], "params": cfg,
                                                  "seed": seed})
    return out_dir / "manifest.json"
