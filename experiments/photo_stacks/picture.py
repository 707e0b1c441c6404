"""The README's picture: one focus stack made from a held-out photograph (three occluding planes,
one frame focused on each, the thin lens' disc blur of `stacks.py`), and what `vaeedof fuse` makes
of it with the release model, side by side. From the project's root:

    python -m experiments.photo_stacks.picture PHOTOS -o docs/fusion-example.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from experiments.photo_stacks.stacks import held_out_crops, layered_stack
from vaeedof import atomic
from vaeedof import params as params_module
from vaeedof.errors import VaeedofError
from vaeedof.fusion.loader import load_fuser
from vaeedof.images import as_float

STREAM = 53  # this script's random stream (run.py uses 47)
LABEL_PX = 22


def panel(image: torch.Tensor, label: str) -> Image.Image:
    pixels = (image.float().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    out = Image.new("RGB", (pixels.shape[1], pixels.shape[0] + LABEL_PX), "white")
    out.paste(Image.fromarray(pixels), (0, LABEL_PX))
    ImageDraw.Draw(out).text((6, 5), label, fill="black")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="folder holding the held-out photographs (<stem>.jpg)")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/fusion-example.jpg"))
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--photo", type=int, default=1,
                        help="which held-out photograph (its place in the parameters' list)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = params_module.load(args.params)
    crops = held_out_crops(args.photos, params, 1, STREAM)
    _, photo, rng = next(item for index, item in enumerate(crops) if index == args.photo)
    _, frames = layered_stack(photo, rng, args.size, max_radius=12.0, planes=(3, 3))
    fuser = load_fuser(None, mode="hybrid")  # the release model, as `vaeedof fuse` without a project
    with torch.inference_mode():
        fused = fuser.fuse([as_float(frame) for frame in frames])
    panels = [panel(as_float(frame), f"input {i + 1}: focused on plane {i + 1} of 3")
              for i, frame in enumerate(frames)] + [panel(fused, "vaeedof fuse: all in focus")]
    save_strip(panels, args.output)


def save_strip(panels: list[Image.Image], output: Path) -> None:
    """Same-size panels side by side, 8 px apart, written atomically (JPEG quality 88)."""
    width = sum(p.width for p in panels) + 8 * (len(panels) - 1)
    strip = Image.new("RGB", (width, panels[0].height), "white")
    for index, part in enumerate(panels):
        strip.paste(part, (index * (part.width + 8), 0))
    with atomic.atomic_path(output, suffix=output.suffix) as tmp:
        strip.save(tmp, quality=88)
    print(f"wrote {output}")


if __name__ == "__main__":
    try:
        main()
    except VaeedofError as exc:  # bad input: one line naming it, no traceback
        raise SystemExit(f"picture: {exc}") from None
