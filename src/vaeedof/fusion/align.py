"""Aligning hand-held focus stacks before fusion: `vaeedof align` and `vaeedof fuse --align`.

Each frame is registered to its neighbour in the stack (consecutive focus frames look alike) by
phase correlation of blocks, iterated (`register_pair`): phase correlation ignores gain, offset
and any symmetric blur, where intensity-based registration (ECC) reads a defocus difference as
a scale change of a few tenths of a pixel and so misaligns registered stacks. The neighbour
transforms are chained towards the middle frame, the reference that keeps its geometry.
Motion models: `similarity` (shift,
rotation and scale: focus breathing, the magnification change with focus distance, is the
scale), `affine` and `homography`; each frame's scale is reported explicitly.

After warping, each frame's per-channel gain is matched to the reference from the ratios of
smoothed images in flat regions, when those agree across the frame (an exposure change is one
gain; the light defocus moves around, across the frame's edge too, is not; `exposure`), so
exposure drift does not steer the fusion and defocus does not tint a frame. Borders: uncovered
pixels are filled by replicating the nearest valid pixel; the transforms JSON gives the box every
frame covers, for those who prefer to crop.

`auto` warps only on evidence that defocus cannot fake (`evidence`: a consistent motion of 2 px
or more in the blocks sharp in both neighbouring frames); without it the frames stay in place, bit
for bit, with one line giving the apparent motion and `--align on` (which always registers). A
stack that did not move still has its exposure matched when a frame's gain differs by 2 % or more
(cameras re-meter between focus frames: MFFW).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import VaeedofError
from ..images import as_float
from ..logs import get_logger
from .blocks import block_shifts
from .evidence import PairEvidence, corner_shifts, neighbour_evidence
from .exposure import frame_gains, thumbnail
from .options import ALIGN_MODES as MODES
from .options import MOTION_MODELS as MODELS

MOTION_THRESHOLD_PX = 0.1  # a confirmed estimate smaller than this is not worth a resampling
ESTIMATION_SIDE = 1024  # the finest pyramid level: sub-pixel there is a fraction of a pixel here
MIN_SIDE = 32  # smaller frames hold too little to register (auto leaves them as they are)


@dataclass
class Alignment:
    """Per frame: the 3x3 transform taking reference pixel coordinates to the frame's, its
    scale (focus breathing), gain and offset per channel; the box all frames cover."""

    transforms: list[np.ndarray]
    gains: list[np.ndarray]
    offsets: list[np.ndarray]
    reference: int
    valid_box: tuple[int, int, int, int]  # x0, y0, x1, y1
    applied: bool = True
    max_shift_px: float = 0.0

    @property
    def exposure_change(self) -> float:
        """The largest change (fraction) any gain or offset makes to a frame."""
        return max(max(float(abs(g - 1).max()), float(abs(o).max())) for g, o in zip(self.gains, self.offsets,
                                                                                     strict=True))

    def as_json(self, names: list[str]) -> dict:
        frames = [{"name": name, "matrix": np.round(t, 8).tolist(), "scale": round(scale_of(t), 6),
                   "rotation_deg": round(rotation_of(t), 5), "gain": np.round(g, 6).tolist(),
                   "offset": np.round(o, 6).tolist()}
                  for name, t, g, o in zip(names, self.transforms, self.gains, self.offsets, strict=True)]
        return {"reference": names[self.reference], "applied": self.applied,
                "max_displacement_px": round(self.max_shift_px, 4), "valid_box_xyxy": list(self.valid_box),
                "frames": frames}


def scale_of(matrix: np.ndarray) -> float:
    return float(math.sqrt(abs(np.linalg.det(matrix[:2, :2]))))


def rotation_of(matrix: np.ndarray) -> float:
    return float(math.degrees(math.atan2(matrix[1, 0] - matrix[0, 1], matrix[0, 0] + matrix[1, 1])))


def _grey(image: torch.Tensor, side: int) -> tuple[np.ndarray, float]:
    """Grey float32 copy at most `side` px on its longer side, and the factor it was shrunk by."""
    import cv2

    pixels = as_float(image).mean(0).numpy()
    factor = min(1.0, side / max(pixels.shape))
    if factor < 1.0:
        size = (max(1, round(pixels.shape[1] * factor)), max(1, round(pixels.shape[0] * factor)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(pixels, np.float32), factor


def rescale_transform(matrix: np.ndarray, factor: float) -> np.ndarray:
    """The same transform in pixel coordinates of the image resized by `factor` (pixel centres:
    x' = factor x - (1 - factor) / 2, as INTER_AREA resizing and pyrDown place them)."""
    shift = -(1 - factor) / 2
    scale = np.array([[factor, 0, shift], [0, factor, shift], [0, 0, 1.0]])
    return scale @ matrix @ np.linalg.inv(scale)


def _to_similarity(matrix: np.ndarray) -> np.ndarray:
    """The closest similarity (shift, rotation, uniform scale) to an affine transform."""
    a = (matrix[0, 0] + matrix[1, 1]) / 2
    b = (matrix[1, 0] - matrix[0, 1]) / 2
    out = np.eye(3)
    out[:2, :2] = [[a, -b], [b, a]]
    out[:2, 2] = matrix[:2, 2]
    return out


def _fit(model: str, src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares (outlier-robust) transform taking the points src to dst, 3x3."""
    import cv2

    if model == "homography":
        if len(src) < 8:
            return None
        matrix, _ = cv2.findHomography(src, dst, cv2.LMEDS)
        return matrix
    if len(src) < (3 if model == "similarity" else 4):
        return None
    estimator = cv2.estimateAffinePartial2D if model == "similarity" else cv2.estimateAffine2D
    matrix, _ = estimator(src, dst, method=cv2.LMEDS)
    return None if matrix is None else np.vstack([matrix, [0, 0, 1]])


def _agreeing(matrix: np.ndarray, src: np.ndarray, dst: np.ndarray) -> int:
    """How many block shifts the transform explains to within a pixel (parallax in macro stacks
    spreads real ones by a pixel or two around any global model)."""
    moved = np.c_[src, np.ones(len(src))] @ matrix.T
    moved = moved[:, :2] / moved[:, 2:3]
    return int((np.linalg.norm(moved - dst, axis=1) < 1.0).sum())


def _refine(reference: np.ndarray, moving: np.ndarray, model: str, matrix: np.ndarray, block: int
            ) -> tuple[np.ndarray | None, bool]:
    """Warp the moving frame by the estimate, phase-correlate blocks, fit the residual transform
    and compose it in, while that keeps shrinking it (what remains then is measurement noise,
    which adding again and again would only accumulate). Also whether the frames match: most
    textured blocks agree with the last fit."""
    import cv2

    previous = math.inf
    for _ in range(8):
        src, dst, tried = block_shifts(reference, _warp(moving, matrix, cv2.INTER_CUBIC), block)
        residual = _fit(model, src, dst)
        if residual is None:
            return None, False
        size = _displacement(residual, *reference.shape)
        if size >= 0.9 * previous:
            break
        matrix, previous = matrix @ residual, size
        if size < 0.02:  # the block measurements' noise: more passes only cost time
            break
    return matrix, _agreeing(residual, src, dst) >= max(4, tried // 3)


def register_pair(reference: np.ndarray, moving: np.ndarray, model: str) -> np.ndarray | None:
    """3x3 transform T with moving(T p) ~ reference(p), or None when the frames do not match:
    refined from no motion, or, failing that, from the shift a global phase correlation finds."""
    import cv2

    cv2.setRNGSeed(0)  # the robust fits sample at random: the same frames give the same result
    block = _block_size(reference.shape)
    matrix, matched = _refine(reference, moving, model, np.eye(3), block)
    if matched:
        return matrix
    window = cv2.createHanningWindow(reference.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(reference, moving, window)
    start = np.eye(3)
    start[:2, 2] = (dx, dy)
    matrix, matched = _refine(reference, moving, model, start, block)
    return matrix if matched else None


def _displacement(matrix: np.ndarray, height: int, width: int) -> float:
    """Largest displacement (px) of the image corners and centre under the transform."""
    return float(np.abs(corner_shifts(matrix, height, width)).max())


def _chain(greys: list[np.ndarray], names: list[str], reference: int, model: str) -> list[np.ndarray]:
    """Transforms from the reference's coordinates to each frame's, neighbour by neighbour."""
    transforms: list[np.ndarray | None] = [None] * len(greys)
    transforms[reference] = np.eye(3)
    order = [(k, k - 1) for k in range(reference + 1, len(greys))] + \
        [(k, k + 1) for k in range(reference - 1, -1, -1)]
    for frame, neighbour in order:
        pair = register_pair(greys[neighbour], greys[frame], model)
        if pair is None:
            raise VaeedofError(f"{names[frame]}: cannot be aligned to {names[neighbour]} (too little "
                               "texture or too much motion); fuse without alignment: --align off")
        transforms[frame] = pair @ transforms[neighbour]
    return transforms  # type: ignore[return-value]


def _warp(pixels: np.ndarray, matrix: np.ndarray, interpolation: int) -> np.ndarray:
    """frame(T p) for every reference pixel p; uncovered pixels replicate the nearest valid one."""
    import cv2

    height, width = pixels.shape[:2]
    flags = interpolation | cv2.WARP_INVERSE_MAP
    if np.allclose(matrix[2], [0, 0, 1]):
        return cv2.warpAffine(pixels, matrix[:2], (width, height), flags=flags,
                              borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpPerspective(pixels, matrix, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def _exposure(images: list[torch.Tensor], transforms: list[np.ndarray], reference: int
              ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per frame and channel, the gain matching it to the reference over the area both cover
    (`exposure.frame_gains`); offsets stay 0: a local fit read defocus as exposure."""
    import cv2

    thumbs = [thumbnail(image) for image in images]
    warped = [_warp(thumb, rescale_transform(matrix, factor), cv2.INTER_LINEAR)
              for (thumb, factor), matrix in zip(thumbs, transforms, strict=True)]
    gains = frame_gains(warped, thumbs[reference][0])
    return gains, [np.zeros(3) for _ in gains]


def _valid_box(transforms: list[np.ndarray], height: int, width: int) -> tuple[int, int, int, int]:
    """The box of reference pixels that every frame covers (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = 0.0, 0.0, float(width), float(height)
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], dtype=np.float64)
    for matrix in transforms:
        back = corners @ np.linalg.inv(matrix).T
        back = back[:, :2] / back[:, 2:3]
        x0, x1 = max(x0, back[[0, 2], 0].max()), min(x1, back[[1, 3], 0].min())
        y0, y1 = max(y0, back[[0, 1], 1].max()), min(y1, back[[2, 3], 1].min())
    left, top = math.ceil(x0), math.ceil(y0)
    return left, top, max(left, math.floor(x1)), max(top, math.floor(y1))


def estimation_greys(images: list[torch.Tensor]) -> list[tuple[np.ndarray, float]]:
    """The frames as registration sees them: grey, ESTIMATION_SIDE px at most (`_grey`)."""
    return [_grey(image, ESTIMATION_SIDE) for image in images]


def motion_evidence(images: list[torch.Tensor], names: list[str],
                    shrunk: list[tuple[np.ndarray, float]] | None = None) -> list[PairEvidence]:
    """Per neighbour pair, the evidence of motion that defocus cannot fake (`evidence`);
    `shrunk`: the frames' `estimation_greys` when already made."""
    shrunk = shrunk or estimation_greys(images)
    greys = [grey for grey, _ in shrunk]
    return neighbour_evidence(greys, shrunk[0][1], _block_size(greys[0].shape), names)


def _block_size(shape: tuple[int, int]) -> int:
    """Phase-correlation blocks: 64 px, smaller for small frames (a quarter of the short side)."""
    return int(min(64, 2 ** math.floor(math.log2(max(16, min(shape) // 4)))))


def estimate(images: list[torch.Tensor], names: list[str], model: str = "similarity",
             shrunk: list[tuple[np.ndarray, float]] | None = None) -> Alignment:
    """The alignment of a stack to its middle frame (nothing is warped here); `shrunk`: the
    frames' `estimation_greys` when already made."""
    if model not in MODELS:
        raise VaeedofError(f"motion model {model!r}: expected one of {', '.join(MODELS)}")
    height, width = images[0].shape[-2:]
    reference = _reference(len(images))
    shrunk = shrunk or estimation_greys(images)
    factor = shrunk[0][1]
    small = _chain([g for g, _ in shrunk], names, reference, model)
    transforms = [rescale_transform(t, 1 / factor) for t in small]
    gains, offsets = _exposure(images, transforms, reference)
    shift = max(_displacement(t, height, width) for t in transforms)
    return Alignment(transforms, gains, offsets, reference, _valid_box(transforms, height, width),
                     max_shift_px=shift)


def _reference(count: int) -> int:
    return (count - 1) // 2  # the middle frame (the first of the two middle ones)


def needs_alignment(alignment: Alignment) -> bool:
    # Gains are exactly 1 unless they change a frame by exposure.MIN_GAIN or more.
    return alignment.max_shift_px > MOTION_THRESHOLD_PX or alignment.exposure_change > 0


def match_exposure(images: list[torch.Tensor]) -> Alignment:
    """The alignment of a stack that did not move: identity transforms, exposure gains only."""
    height, width = images[0].shape[-2:]
    identity = [np.eye(3) for _ in images]
    gains, offsets = _exposure(images, identity, _reference(len(images)))
    return Alignment(identity, gains, offsets, _reference(len(images)), (0, 0, width, height))


def apply(images: list[torch.Tensor], alignment: Alignment) -> list[torch.Tensor]:
    """Warped and exposure-matched frames, in their stored dtype (uint8 or float)."""
    import cv2

    out = []
    for image, matrix, gain, offset in zip(images, alignment.transforms, alignment.gains, alignment.offsets,
                                           strict=True):
        identity = np.allclose(matrix, np.eye(3))
        if identity and np.allclose(gain, 1) and np.allclose(offset, 0):
            out.append(image)
            continue
        pixels = as_float(image).permute(1, 2, 0).numpy()
        # Lanczos: of OpenCV's kernels it keeps the most fine detail (0.1-0.5 dB over bicubic in
        # fused PSNR on experiments/handheld/photo_stacks.py's stacks); clipped below for its ringing.
        warped = pixels if identity else _warp(np.ascontiguousarray(pixels), matrix, cv2.INTER_LANCZOS4)
        corrected = np.clip(warped * gain.astype(np.float32) + offset.astype(np.float32), 0, 1)
        tensor = torch.from_numpy(np.ascontiguousarray(corrected)).permute(2, 0, 1)
        out.append((tensor * 255 + 0.5).to(torch.uint8) if image.dtype == torch.uint8 else tensor)
    return out


def warp(images: list[torch.Tensor], transforms: list[np.ndarray]) -> list[torch.Tensor]:
    """The frames resampled by given transforms (reference -> frame) as `apply` does, exposure
    untouched: to compare an estimate with known transforms."""
    unit = [np.ones(3)] * len(images), [np.zeros(3)] * len(images)
    return apply(images, Alignment(list(transforms), *unit, 0, (0, 0, 0, 0)))


def align_stack(images: list[torch.Tensor], names: list[str], mode: str = "auto", model: str = "similarity",
                strict: bool = False) -> tuple[list[torch.Tensor], Alignment | None]:
    """`off`: the frames as they are; `on`: aligned, or a one-line error naming the frame that
    cannot be; `auto`: aligned only on evidence of motion (`motion_evidence`; a stack without it
    has its exposure matched when that changed); a stack that moved but cannot be aligned is
    fused as it is, with a warning (an error with `strict`)."""
    if mode not in MODES:
        raise VaeedofError(f"--align {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "off" or len(images) < 2:
        return images, None
    if min(images[0].shape[-2:]) < MIN_SIDE:
        if mode == "on":
            raise VaeedofError(f"{names[0]}: frames smaller than {MIN_SIDE} px cannot be aligned; "
                               "use --align off")
        return images, None
    shrunk = estimation_greys(images)  # made once for the evidence and the estimate
    if mode == "auto":
        evidence = motion_evidence(images, names, shrunk)
        if not any(pair.confirmed for pair in evidence):
            _log_unconfirmed(evidence)
            alignment = match_exposure(images)
            return (apply(images, alignment), alignment) if needs_alignment(alignment) else (images, None)
    try:
        alignment = estimate(images, names, model, shrunk)
    except VaeedofError as exc:
        if mode == "on" or strict:
            raise
        get_logger().warning("%s; fusing the frames as they are (--align on makes this an error)",
                             str(exc).split("; fuse without")[0])
        return images, None
    if mode == "auto" and not needs_alignment(alignment):
        alignment.applied = False
        return images, alignment
    return apply(images, alignment), alignment


def _log_unconfirmed(evidence: list[PairEvidence]) -> None:
    """One line: the apparent motion `auto` did not act on, and how to align anyway."""
    largest = max(evidence, key=lambda pair: pair.apparent_px)
    get_logger().info("alignment check: apparent motion up to %.2f px (%s to %s), not borne out by detail "
                      "sharp in both frames (defocus moves what it blurs): frames left in place; "
                      "--align on registers them", largest.apparent_px, *largest.names)
