"""A fusion method outside the package, as the evaluation runs one: frames in, one image out.

An example of the contract of `evaluate.external` (docs/fusing.md#your-own-method), and the tool
the CI scale compares (config/ci.yaml):

    python examples/external_method.py --out fused.png frame_0.png frame_1.png ...

Per pixel, the frame with the most local detail (squared Laplacian, averaged over a window)
gives the pixel. Only NumPy and Pillow, so it runs wherever vaeedof does; exit status 1 and one
line on stderr when it cannot read a frame."""

from __future__ import annotations

import argparse
import sys

import numpy as np
from PIL import Image, UnidentifiedImageError


def box_mean(values: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges repeated, by cumulative sums."""
    side = 2 * radius + 1
    padded = np.pad(values, radius, mode="edge")
    sums = np.pad(padded.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return (sums[side:, side:] - sums[:-side, side:] - sums[side:, :-side] + sums[:-side, :-side]) / side**2


def detail(grey: np.ndarray, radius: int) -> np.ndarray:
    padded = np.pad(grey, 1, mode="edge")
    laplacian = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * grey)
    return box_mean(laplacian**2, radius)


def fuse(frames: list[np.ndarray], radius: int = 4) -> np.ndarray:
    stack = np.stack(frames)  # (n, h, w, 3)
    energy = np.stack([detail(frame.mean(axis=2), radius) for frame in stack])
    winner = energy.argmax(axis=0)
    return np.take_along_axis(stack, winner[None, ..., None], axis=0)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the fused image to write (PNG)")
    parser.add_argument("--radius", type=int, default=4, help="window radius of the detail measure")
    parser.add_argument("frames", nargs="+", help="the stack's frames, same size")
    args = parser.parse_args()
    frames = []
    for path in args.frames:
        try:
            with Image.open(path) as image:
                frames.append(np.asarray(image.convert("RGB"), dtype=np.float32))
        except (OSError, UnidentifiedImageError) as exc:
            print(f"{path}: cannot read: {exc}", file=sys.stderr)
            return 1
    if len({frame.shape for frame in frames}) != 1:
        print("the frames differ in size", file=sys.stderr)
        return 1
    fused = fuse(frames, args.radius)
    Image.fromarray(fused.round().clip(0, 255).astype(np.uint8)).save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
