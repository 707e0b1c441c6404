"""The depth map of `vaeedof fuse --depth-map` against the truth of rendered MattingMFIF scenes:
each scene's `index.png` says which plane every pixel shows and `scene.json` which plane each frame
is focused on (`focus_order`), so the right frame of a pixel is known. Scored over textured pixels
(where the ground truth's local Laplacian energy, the hybrid's focus measure, is above the mix's
focus floor: on flat ones every frame is as right as any other), and over all pixels: the share
whose depth map, rounded to the nearest frame, names the right one; and, as planes a few cm apart
are in focus in either frame, the share naming a frame that shows the pixel's plane as sharp as the
right one does (the thin lens' circle of confusion from scene.json's camera, 1 px or less).

focus-stack's depth map is not scored: the tool is not installed where this was written, and its
map's scale could not be checked here. Prints the table; `--record` writes depth_maps.csv beside
this script and the `depth-maps` figure's table in results/. Asserts nothing. From the project's
root:

    python -m experiments.depth_maps.run RELEASE_DATA/mattingmfif/test \\
        --checkpoint src/vaeedof/release/fusion_release.safetensors --record
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from experiments.record import add_arguments, finish, run_study
from experiments.registered_stacks.run import set_label
from vaeedof.errors import VaeedofError
from vaeedof.fusion.loader import load_fuser
from vaeedof.images import read_image
from vaeedof.nets.hybrid import focus_energy
from vaeedof.render import layout

CSV = Path(__file__).parent / "depth_maps.csv"
SHARP_PX = 1.0  # a plane blurred by a circle of confusion this small looks in focus


def blur_px(meta: dict, plane: float, focus: float) -> float:
    """Diameter (px of the rendered frame) of the thin lens' circle of confusion of a plane at
    `plane` m with the camera focused at `focus` m (scene.json's camera and render width)."""
    camera = meta["camera"]
    f = camera["focal_length_mm"] / 1000
    on_sensor = camera["aperture_m"] * abs(plane - focus) / plane * f / (focus - f)
    return on_sensor / (camera["sensor_width_mm"] / 1000) * meta["render"]["resolution"]


def sharp_frames(meta: dict) -> np.ndarray:
    """[i, j]: whether the frame at position j shows the plane frame i is focused on as sharp as
    that frame does (circle of confusion SHARP_PX or less): planes a few cm apart are both in
    focus in either frame, and either frame is then right."""
    distances = [meta["planes"][k]["distance_m"] for k in meta["focus_order"]]
    return np.array([[blur_px(meta, d, focus) <= SHARP_PX for focus in distances] for d in distances])


def right_frame(scene: Path) -> tuple[list[torch.Tensor], torch.Tensor, np.ndarray]:
    """A rendered scene's frames in focus order, its ground truth, and per pixel the position in
    that order of the frame focused on the plane the pixel shows (-1: a plane no frame focuses on)."""
    meta = layout.read_meta(scene, needs=("focus_order", "planes"))
    frames = [read_image(scene / layout.focus_file(k)) for k in meta["focus_order"]]
    index_file = scene / layout.INDEX_FILE
    if not index_file.is_file():
        raise VaeedofError(f"{index_file}: missing; the scene's planes are unknown (render it again)")
    with Image.open(index_file) as image:  # plane numbers, not intensities
        planes = np.asarray(image)
    if planes.shape != tuple(frames[0].shape[-2:]):
        raise VaeedofError(f"{index_file}: {planes.shape[1]}x{planes.shape[0]}, the frames are "
                           f"{frames[0].shape[2]}x{frames[0].shape[1]}; render the scene again")
    truth = np.full(planes.shape, -1)
    for position, plane in enumerate(meta["focus_order"]):
        truth[planes == plane] = position
    return frames, read_image(scene / layout.GT_FILE), truth


def score_scene(fuser, scene: Path, focus_floor: float) -> dict:
    frames, gt, truth = right_frame(scene)
    _, index, _ = fuser.fuse_with_focus_index(frames)
    named = np.rint(index.numpy()).astype(int)
    textured = focus_energy(gt[None, None])[0, 0].numpy() > focus_floor
    known = truth >= 0
    right = named == truth
    sharp = sharp_frames(layout.read_meta(scene, needs=("focus_order", "planes")))[truth, named] & known
    return {"scene": scene.name, "frames": len(frames),
            "textured_share": round(float(textured[known].mean()), 4),
            "right_textured": round(float(right[known & textured].mean()), 4),
            "sharp_textured": round(float(sharp[known & textured].mean()), 4),
            "right_all": round(float(right[known].mean()), 4)}


def table(rows: list[dict], label: str) -> str:
    """The mean share of textured and of all pixels whose depth map names the right frame."""
    def mean(key: str) -> str:
        return f"{np.mean([float(r[key]) for r in rows]):.1%}"

    worst = min(rows, key=lambda r: float(r["right_textured"]))
    frames = sorted(int(r["frames"]) for r in rows)
    header = ["split", "scenes", "frames", "textured pixels", "right frame, textured pixels",
              f"a frame as sharp there (blur <= {SHARP_PX:g} px), textured pixels", "right frame, all pixels",
              "fewest right (textured)"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|",
             f"| {label} | {len(rows)} | {frames[0]}-{frames[-1]} | {mean('textured_share')} | "
             f"{mean('right_textured')} | {mean('sharp_textured')} | {mean('right_all')} | "
             f"{float(worst['right_textured']):.1%} ({worst['scene']}) |"]
    return "\n".join(lines) + "\n\nfocus-stack: not scored (not installed; its map's scale unchecked).\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split", type=Path, help="a rendered split (scenes with index.png and scene.json)")
    add_arguments(parser, CSV)
    args = parser.parse_args()
    fuser = load_fuser(args.checkpoint, mode="hybrid")
    floor = fuser.hybrid.focus_floor
    with torch.inference_mode():
        rows = [score_scene(fuser, scene, floor) for scene in layout.rendered_scenes(args.split)]
    finish("depth-maps", table(rows, set_label(args.split)), rows, CSV, args.record)


if __name__ == "__main__":
    run_study(main, "depth_maps")
