"""Where the latent mode loses to the VAE ceiling (`run.py`): each method's error
by distance to the nearest edge between two planes (from a rendered scene's index.png), pooled
over a split's scenes.

Near an edge a near plane's defocus veils what lies behind it in every input, so no input holds
the answer there; far from edges the input focused on the plane holds it. The split tells how
much of the gap between the latent mode and the ceiling is made of either."""

from __future__ import annotations

import cv2
import numpy as np

# Distance bins (px) from the nearest plane edge: [0, 8), [8, 16), ... , [64, inf).
EDGE_BINS = (0, 8, 16, 32, 64)
ORACLE_WINDOW = 7  # px: the neighbourhood over which the input selection oracle compares inputs


def edge_distance(index: np.ndarray) -> np.ndarray:
    """(H, W) plane indices -> each pixel's distance (px) to the nearest pixel whose 4-neighbour
    belongs to another plane (0 on such pixels)."""
    edge = np.zeros(index.shape, bool)
    vertical, horizontal = index[1:] != index[:-1], index[:, 1:] != index[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    if not edge.any():  # one plane: every pixel is far from an edge
        return np.full(index.shape, np.inf, np.float32)
    return cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 5)


def edge_bins(index: np.ndarray) -> np.ndarray:
    """(H, W) bin number of each pixel (0 .. len(EDGE_BINS) - 1)."""
    return np.digitize(edge_distance(index), EDGE_BINS[1:])


def bin_labels() -> list[str]:
    ends = [*EDGE_BINS[1:], None]
    return [f"{a}-{b} px" if b else f"{a}+ px" for a, b in zip(EDGE_BINS, ends, strict=True)]


def input_selection_oracle(inputs: list[np.ndarray], gt: np.ndarray) -> np.ndarray:
    """(H, W, 3) images -> at every pixel the input with the least squared error against the
    ground truth over the ORACLE_WINDOW neighbourhood: the most a choice among the inputs' own
    pixels gives."""
    errors = np.stack([cv2.blur(((image - gt) ** 2).mean(axis=-1), (ORACLE_WINDOW, ORACLE_WINDOW))
                       for image in inputs])
    choice = errors.argmin(axis=0)[None, ..., None]
    return np.take_along_axis(np.stack(inputs), choice, axis=0)[0]


class GapAccumulator:
    """Squared error and pixel counts per method and bin, pooled over scenes."""

    def __init__(self):
        self.error: dict[str, np.ndarray] = {}
        self.count = np.zeros(len(EDGE_BINS))

    def add_scene(self, bins: np.ndarray) -> None:
        self.count += np.bincount(bins.ravel(), minlength=len(EDGE_BINS))

    def add(self, method: str, bins: np.ndarray, image: np.ndarray, gt: np.ndarray) -> None:
        """(H, W, 3) float images of one scene already counted by `add_scene`."""
        squared = ((image - gt) ** 2).mean(axis=-1)
        total = self.error.setdefault(method, np.zeros(len(EDGE_BINS)))
        total += np.bincount(bins.ravel(), weights=squared.ravel(), minlength=len(EDGE_BINS))

    def rows(self, split: str) -> list[dict]:
        share = self.count / self.count.sum()
        out = []
        for method, error in sorted(self.error.items()):
            for label, pixels, err, n in zip(bin_labels(), share, error, self.count, strict=True):
                # no pixels in the band: nan; no error in it: inf
                psnr = float("nan") if not n else float("inf") if err == 0 else 10 * np.log10(n / err)
                out.append({"split": split, "method": method, "bin": label,
                            "pixel_share": round(float(pixels), 4), "psnr": round(float(psnr), 2),
                            "error_share": round(float(err / error.sum()) if error.sum() else 0.0, 4)})
        return out


def summary(rows: list[dict]) -> list[str]:
    """Rows (strings from the CSV, or numbers) -> a markdown table: per split and method, the
    pooled PSNR in each distance bin (the bin's share of the pixels in the header)."""
    lines = []
    for split in sorted({r["split"] for r in rows}):
        mine = [r for r in rows if r["split"] == split]
        labels = list(dict.fromkeys(r["bin"] for r in mine))
        first = [r for r in mine if r["method"] == mine[0]["method"]]
        shares = {r["bin"]: float(r["pixel_share"]) for r in first}
        header = ["split", "method", *(f"{b} ({shares[b]:.0%})" for b in labels)]
        if not lines:
            lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        else:
            lines.append("| " + " | ".join(f"**{h}**" for h in header) + " |")
        for method in sorted({r["method"] for r in mine}):
            psnr = {r["bin"]: float(r["psnr"]) for r in mine if r["method"] == method}
            lines.append(f"| {split} | {method} | " + " | ".join(f"{psnr[b]:.2f}" for b in labels) + " |")
    return lines
