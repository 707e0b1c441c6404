"""Phase correlation of blocks, the measurement `vaeedof.fusion.align` fits its transforms to:
where each textured block of one frame is found in the other. Phase correlation is blind to
gain, offset and (nearly) to defocus differences, which intensity-based registration reads as
motion."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def block_shifts(reference: np.ndarray, warped: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Block centres c in the reference and where each block is found in `warped` (c + shift),
    by phase correlation: blind to gain, offset and (nearly) to defocus differences, which
    intensity-based registration reads as motion. Also the number of textured blocks tried.
    Rows of blocks run on a thread each core (OpenCV releases the GIL; same result, in order)."""
    import cv2

    window = cv2.createHanningWindow((block, block), cv2.CV_32F)
    height, width = reference.shape
    step = block // 4
    textured = _textured(reference, block) & _textured(warped, block)

    def row(y: int) -> tuple[list, list, int]:
        src, dst, tried = [], [], 0
        for x in range(block // 4, width - block - block // 4 + 1, step):
            if not textured[y, x]:
                continue  # flat: nothing to correlate
            # Contiguous copies: OpenCV's phaseCorrelate misreads strided views of larger arrays.
            a = np.ascontiguousarray(reference[y:y + block, x:x + block])
            b = np.ascontiguousarray(warped[y:y + block, x:x + block])
            tried += 1
            (dx, dy), response = cv2.phaseCorrelate(a, b, window)
            if response > 0.05 and abs(dx) < block / 4 and abs(dy) < block / 4:
                centre = (x + (block - 1) / 2, y + (block - 1) / 2)
                src.append(centre)
                dst.append((centre[0] + dx, centre[1] + dy))
        return src, dst, tried

    rows = range(block // 4, height - block - block // 4 + 1, step)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with ThreadPoolExecutor(cores) as pool:
        results = list(pool.map(row, rows))
    src = [c for r in results for c in r[0]]
    dst = [c for r in results for c in r[1]]
    return np.float32(src).reshape(-1, 2), np.float32(dst).reshape(-1, 2), sum(r[2] for r in results)


def _textured(image: np.ndarray, block: int) -> np.ndarray:
    """Per top-left corner (y, x): whether the block there has a standard deviation of at least
    1e-3 (box filters: one pass instead of a std per block, half of the estimation time)."""
    import cv2

    pixels = image.astype(np.float64)
    kernel = dict(ddepth=-1, ksize=(block, block), anchor=(0, 0), borderType=cv2.BORDER_REFLECT)
    mean, mean_square = cv2.boxFilter(pixels, **kernel), cv2.boxFilter(pixels * pixels, **kernel)
    return mean_square - mean * mean >= 1e-6


def detail_map(image: np.ndarray, block: int) -> np.ndarray:
    """Fine detail around every pixel: the mean squared Laplacian over a block (defocus removes it
    first)."""
    import cv2

    return cv2.blur(cv2.Laplacian(image, cv2.CV_32F) ** 2, (block, block))


def detail_at(detail: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The `detail_map` at the blocks centred at `centres` (x, y)."""
    x = np.clip(np.round(centres[:, 0]).astype(int), 0, detail.shape[1] - 1)
    y = np.clip(np.round(centres[:, 1]).astype(int), 0, detail.shape[0] - 1)
    return detail[y, x]
