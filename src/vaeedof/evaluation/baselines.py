"""The methods the evaluation compares (`fusion_methods`): the model's output modes, classical
baselines (the mean of the inputs, Laplacian-pyramid max-contrast fusion, guided-filter fusion
(GFF), enfuse when installed) and the commands of `external.py`. Images are (3, H, W) float
tensors in [0, 1]."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import VaeedofError
from ..logs import get_logger
from .external import MethodFailed, command_methods

# The model's two output modes as methods of the evaluation, named as `vaeedof fuse --mode` names them.
LATENT, HYBRID = "latent", "hybrid"
# The references `vaeedof infer` adds (infer.py says what they are).
CEILING, LATENT_ORACLE = "vae_ceiling", "latent_selection_oracle"
# Names no external method may take: each names a folder of the fused images.
BUILT_IN = (LATENT, HYBRID, "mean", "laplacian", "gff", "enfuse", CEILING, LATENT_ORACLE)

ENFUSE_ARGS = ["--exposure-weight=0", "--saturation-weight=0", "--contrast-weight=1", "--hard-mask"]


def mean_fusion(stack: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(stack).mean(0)


def laplacian_pyramid_fusion(stack: list[torch.Tensor], levels: int = 5) -> torch.Tensor:
    """Per pyramid level, the coefficient of largest magnitude (summed over colour) wins; the
    coarsest level is averaged (Burt & Adelson style multi-focus fusion)."""
    import cv2

    images = [s.permute(1, 2, 0).numpy().astype(np.float32) for s in stack]
    height, width = images[0].shape[:2]
    levels = max(1, min(levels, int(np.log2(max(2, min(height, width)))) - 2))

    def pyramid(image):
        gaussians = [image]
        for _ in range(levels):
            gaussians.append(cv2.pyrDown(gaussians[-1]))
        laplacians = [g - cv2.pyrUp(n, dstsize=(g.shape[1], g.shape[0]))
                      for g, n in zip(gaussians[:-1], gaussians[1:], strict=True)]
        return laplacians + [gaussians[-1]]

    pyramids = [pyramid(image) for image in images]
    fused = []
    for level in range(levels):
        coefficients = np.stack([p[level] for p in pyramids])  # (n, h, w, 3)
        winner = np.abs(coefficients).sum(axis=-1).argmax(axis=0)
        fused.append(np.take_along_axis(coefficients, winner[None, ..., None], axis=0)[0])
    result = np.mean([p[levels] for p in pyramids], axis=0)
    for level in reversed(range(levels)):
        result = cv2.pyrUp(result, dstsize=(fused[level].shape[1], fused[level].shape[0])) + fused[level]
    return torch.from_numpy(np.clip(result, 0, 1)).permute(2, 0, 1)


def gff_available() -> bool:
    """GFF needs OpenCV's contrib module ximgproc (opencv-contrib-python-headless)."""
    import cv2

    return hasattr(cv2, "ximgproc")


def guided_filter_fusion(stack: list[torch.Tensor], r1: int = 45, eps1: float = 0.3,
                         r2: int = 7, eps2: float = 1e-6) -> torch.Tensor:
    """GFF (Li, Kang, Hu 2013, "Image fusion with guided filtering"): two-scale decomposition
    (31x31 mean filter), saliency = Gaussian-smoothed |Laplacian|, binary max-saliency maps
    refined by OpenCV's guided filter (ximgproc) with each source as guide: (r1, eps1) for the
    base layers, (r2, eps2) for the detail layers; weights normalised per pixel."""
    import cv2

    images = [s.permute(1, 2, 0).numpy().astype(np.float32) for s in stack]
    greys = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in images]
    bases = [cv2.blur(image, (31, 31), borderType=cv2.BORDER_REFLECT) for image in images]
    details = [image - base for image, base in zip(images, bases, strict=True)]
    saliency = np.stack([cv2.GaussianBlur(np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=3)), (11, 11), 5)
                         for grey in greys])
    winners = saliency.argmax(axis=0)
    weights_base, weights_detail = [], []
    for index, grey in enumerate(greys):
        mask = (winners == index).astype(np.float32)
        weights_base.append(cv2.ximgproc.guidedFilter(grey, mask, r1, eps1))
        weights_detail.append(cv2.ximgproc.guidedFilter(grey, mask, r2, eps2))

    def normalised(weights):
        weights = np.clip(np.stack(weights), 0, None) + 1e-12
        return weights / weights.sum(axis=0, keepdims=True)

    wb, wd = normalised(weights_base), normalised(weights_detail)
    fused = sum(wb[i][..., None] * bases[i] + wd[i][..., None] * details[i] for i in range(len(images)))
    return torch.from_numpy(np.clip(fused, 0, 1)).permute(2, 0, 1)


def fusion_methods(fuser=None, evaluate: dict | None = None) -> dict:
    """Every method the evaluation compares that can run here, name -> function(stack) -> image:
    the model's two output modes (when a fuser is given), the classical baselines, enfuse when
    installed, then the peers and external commands of the `evaluate` params (`external.py`)."""
    methods = {}
    if fuser is not None:
        methods[LATENT] = lambda stack: fuser.fuse(stack, mode=LATENT)
        if fuser.hybrid_trained:
            methods[HYBRID] = lambda stack: fuser.fuse(stack, mode=HYBRID)
    methods.update(mean=mean_fusion, laplacian=laplacian_pyramid_fusion)
    if gff_available():
        methods["gff"] = guided_filter_fusion
    if enfuse_available():
        methods["enfuse"] = enfuse_fusion
    methods.update(command_methods(evaluate or {}, set(BUILT_IN))[0])
    return methods


def unavailable_methods(evaluate: dict | None = None) -> dict:
    """The methods the evaluation would compare that cannot run here, name -> why: for the tables,
    which list them instead of leaving them out."""
    unavailable = {}
    if not gff_available():
        unavailable["gff"] = "needs OpenCV's ximgproc (opencv-contrib-python-headless)"
    if not enfuse_available():
        unavailable["enfuse"] = "not installed (Debian package 'enfuse')"
    return unavailable | command_methods(evaluate or {})[1]


# A method's status in a report row (throughput.csv, real_metrics.csv, the studies' rows): it
# fused, it failed on that stack (no number), or it cannot run here (no number).
OK = "ok"


def failed_status(reason: str) -> str:
    return f"failed: {reason}"


def not_run_status(reason: str) -> str:
    return f"not run: {reason}"


def fuse_each(methods: dict, stack: list[torch.Tensor], where: str) -> tuple[dict, dict]:
    """Every method on one stack: (name -> image, name -> why it failed). A method that fails on
    a stack (MethodFailed) is logged in one line naming it and the stack, and the others go on."""
    results, failed = {}, {}
    for name, fuse in methods.items():
        try:
            results[name] = fuse(stack)
        except MethodFailed as exc:
            failed[name] = str(exc)
            get_logger().warning("method %s failed on %s: %s", name, where, exc)
    return results, failed


def enfuse_available() -> bool:
    return shutil.which("enfuse") is not None


def enfuse_fusion(stack: list[torch.Tensor]) -> torch.Tensor:
    """enfuse's focus-stacking mode (contrast weight only, hard mask), through 16-bit TIFFs."""
    import cv2

    if not enfuse_available():
        raise VaeedofError("enfuse: not installed (Debian package 'enfuse')")
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for index, image in enumerate(stack):
            name = str(Path(tmp) / f"in_{index:03d}.tif")
            data = (image.permute(1, 2, 0).numpy() * 65535 + 0.5).astype(np.uint16)[..., ::-1]
            cv2.imwrite(name, data)
            names.append(name)
        out = str(Path(tmp) / "out.tif")
        result = subprocess.run(["enfuse", *ENFUSE_ARGS, "-o", out, *names], capture_output=True,
                                text=True, timeout=600)
        if result.returncode != 0:
            raise VaeedofError(f"enfuse failed: {result.stderr.strip().splitlines()[-1:]}")
        fused = cv2.imread(out, cv2.IMREAD_UNCHANGED)
    fused = fused[..., :3][..., ::-1].astype(np.float32) / (65535.0 if fused.dtype == np.uint16 else 255.0)
    return torch.from_numpy(np.ascontiguousarray(fused)).permute(2, 0, 1)
