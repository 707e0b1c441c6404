"""The depth map's picture in docs/fusing.md: one real focal sweep fused by `vaeedof fuse
--depth-map` with the release model, beside its depth map in false colour (first frame blue, last
red) and the depth map shaded as a relief lit from the top left. From the project's root:

    python -m experiments.depth_maps.picture REAL_DATA/stacks/keyboard -o docs/depth-example.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from experiments.photo_stacks.picture import panel, save_strip
from vaeedof.errors import VaeedofError
from vaeedof.fusion.files import expand_inputs, load_stack
from vaeedof.fusion.loader import load_fuser

RELIEF_SMOOTHING_PX = 8.0  # the relief is shaded from the depth map smoothed this much (px)


def false_colour(depth: np.ndarray) -> torch.Tensor:
    """(H, W) in [0, 1] -> (3, H, W): OpenCV's turbo colour map (0 blue, 1 red)."""
    coloured = cv2.applyColorMap((depth * 255 + 0.5).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(coloured)).permute(2, 0, 1).float() / 255


def relief(depth: np.ndarray, height_px: float) -> torch.Tensor:
    """(H, W) in [0, 1] -> (3, H, W) grey: the depth as a surface `height_px` high, lit from the top
    left (Lambert shading)."""
    surface = cv2.GaussianBlur(depth.astype(np.float32), (0, 0), RELIEF_SMOOTHING_PX) * height_px
    dy, dx = np.gradient(surface)
    normal = np.stack([-dx, -dy, np.ones_like(surface)])
    normal /= np.linalg.norm(normal, axis=0)
    light = np.array([-1.0, -1.0, 1.5]) / np.linalg.norm([-1.0, -1.0, 1.5])
    shade = np.clip(np.tensordot(light, normal, axes=1), 0, 1)
    return torch.from_numpy(shade).float()[None].repeat(3, 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="a folder of frames in focus order")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/depth-example.jpg"))
    args = parser.parse_args()
    loaded = load_stack(expand_inputs([args.stack]))
    fuser = load_fuser(None, mode="hybrid")  # the release model, as `vaeedof fuse` without a project
    with torch.inference_mode():
        fused, index, _ = fuser.fuse_with_focus_index([image.data for image in loaded])
    depth = index.numpy() / max(len(loaded) - 1, 1)
    n = len(loaded)
    panels = [panel(fused, f"vaeedof fuse: {n} frames, all in focus"),
              panel(false_colour(depth), "--depth-map: frame taken (first blue, last red)"),
              panel(relief(depth, height_px=0.05 * max(depth.shape)), "depth map, shaded as a relief")]
    save_strip(panels, args.output)


if __name__ == "__main__":
    try:
        main()
    except VaeedofError as exc:  # bad input: one line naming it, no traceback
        raise SystemExit(f"picture: {exc}") from None
