"""Whether a focus stack moved: the evidence `vaeedof fuse --align auto` needs before it warps.

Defocus moves content as well as blurring it: the halo of a near object spreads over what lies
behind it, and a blur disc that is off-centre or asymmetric (lens aberrations; the registered
gt-stacks show it) displaces what it blurs, even a layer that still looks sharp, by up to 1.4 px
there. Block shifts measured where a frame is defocused therefore read as motion of up to
several pixels on stacks that never moved, and a fit over all blocks warps them (up to 18 dB
lost); a missed sub-pixel motion costs little. So a neighbour pair shows motion only where it
cannot be defocus:

- shifts are trusted only in blocks sharp in both frames, each holding SHARP_SHARE of the most
  detail any frame of the stack has at that block;
- there are MIN_BLOCKS of them or more, one similarity explains AGREEING_SHARE of them to within
  AGREEING_PX;
- and that similarity moves a corner or the centre by EVIDENT_MOTION_PX or more.

Hand-held stacks meet this with room to spare (a macro stack's neighbours share sharp detail
where their depths of field overlap), registered ones do not: the counts on both kinds are in
docs/alignment.md (`experiments/handheld/align_decisions.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocks import block_shifts, detail_at, detail_map
from .options import EVIDENT_MOTION_PX

SHARP_SHARE = 0.8
MIN_BLOCKS = 16
AGREEING_SHARE = 0.6
AGREEING_PX = 0.5  # at the estimation scale


@dataclass
class PairEvidence:
    """What one neighbour pair shows: the median shift of all its textured blocks (what a fit over
    them would read as motion) and, in the blocks sharp in both frames, their count, the share
    one similarity explains and how far that similarity moves the frame (full-frame px)."""

    names: tuple[str, str]
    apparent_px: float
    sharp_blocks: int
    agreeing: float
    motion_px: float

    @property
    def confirmed(self) -> bool:
        return (self.sharp_blocks >= MIN_BLOCKS and self.agreeing >= AGREEING_SHARE
                and self.motion_px >= EVIDENT_MOTION_PX)


def neighbour_evidence(greys: list[np.ndarray], factor: float, block: int, names: list[str]
                       ) -> list[PairEvidence]:
    """The evidence of each neighbour pair of grey frames shrunk by `factor` (phase-correlation
    blocks of `block` px)."""
    import cv2

    evidence = []
    detail = [detail_map(grey, block) for grey in greys]  # each frame's once, for every pair
    for k in range(len(greys) - 1):
        src, dst, _ = block_shifts(greys[k], greys[k + 1], block)
        pair = (names[k], names[k + 1])
        if not len(src):
            evidence.append(PairEvidence(pair, 0.0, 0, 0.0, 0.0))
            continue
        details = np.stack([detail_at(frame, src) for frame in detail])
        sharp = details[[k, k + 1]].min(0) >= SHARP_SHARE * np.maximum(details.max(0), 1e-12)
        apparent = float(np.median(np.linalg.norm(dst - src, axis=1))) / factor
        agreeing, motion = 0.0, 0.0
        if sharp.sum() >= 3:
            cv2.setRNGSeed(0)  # LMedS samples at random: the same frames give the same decision
            fit, _ = cv2.estimateAffinePartial2D(src[sharp], dst[sharp], method=cv2.LMEDS)
            if fit is not None:
                matrix = np.vstack([fit, [0, 0, 1]])
                moved = np.c_[src[sharp], np.ones(sharp.sum())] @ matrix[:2].T
                agreeing = float((np.linalg.norm(moved - dst[sharp], axis=1) < AGREEING_PX).mean())
                motion = float(np.linalg.norm(corner_shifts(matrix, *greys[0].shape), axis=1).max()) / factor
        evidence.append(PairEvidence(pair, apparent, int(sharp.sum()), agreeing, motion))
    return evidence


def corner_shifts(matrix: np.ndarray, height: int, width: int) -> np.ndarray:
    """How far (x, y) the transform moves the image corners and centre, one row each."""
    points = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1],
                       [width / 2, height / 2, 1]], dtype=np.float64)
    moved = points @ matrix.T
    return moved[:, :2] / moved[:, 2:3] - points[:, :2]
