"""The paper's Table 1 metrics against the ground truth: pyiqa where it has them (PSNR, SSIM,
MS-SSIM, LPIPS, DISTS, PieAPP), piq for the rest (HaarPSI, MDSI, IW-SSIM, MS-GMSD), MSE directly.

A metric that cannot be computed (learned metrics without their weights on this machine, or an
image below a metric's minimum size) is reported as unavailable with the reason, never as a
number. Learned metrics are only built when their weight files are already in the torch hub
cache: nothing is downloaded here.
"""

from __future__ import annotations

import torch

from ..assets.fetch import torch_hub_dir

# name -> (higher is better, minimum side in pixels)
METRICS: dict[str, tuple[bool, int]] = {
    "DISTS": (False, 32), "PieAPP": (False, 64), "HaarPSI": (True, 16), "IW-SSIM": (True, 161),
    "LPIPS": (False, 16), "MDSI": (False, 16), "MSE": (False, 1), "MS-SSIM": (True, 161),
    "MS-GMSD": (False, 16), "PSNR": (True, 1), "SSIM": (True, 11),
}

# Weight files pyiqa would download for the learned metrics (torch hub cache layout).
_LEARNED = {
    "LPIPS": ("lpips", ["checkpoints/alexnet-owt-7be5be79.pth", "pyiqa/LPIPS_v0.1_alex-df73285e.pth"]),
    "DISTS": ("dists", ["checkpoints/vgg16-397923af.pth", "pyiqa/DISTS_weights-f5e65c96.pth"]),
    "PieAPP": ("pieapp", ["pyiqa/PieAPPv0.1-0937b014.pth"]),
}


def higher_is_better(name: str) -> bool:
    return METRICS[name][0]


class MetricSuite:
    """Builds each metric once; `unavailable` maps a metric to the reason it cannot be computed."""

    def __init__(self, device: str = "cpu"):
        import pyiqa

        self.device = device
        self.unavailable: dict[str, str] = {}
        self._pyiqa = {name: pyiqa.create_metric(key, device=device, as_loss=False)
                       for name, key in (("PSNR", "psnr"), ("SSIM", "ssim"), ("MS-SSIM", "ms_ssim"))}
        hub = torch_hub_dir()
        for name, (key, files) in _LEARNED.items():
            missing = [f for f in files if not (hub / f).exists()]
            if missing:
                self.unavailable[name] = (f"weights not on this machine ({', '.join(missing)} under "
                                          f"{hub}); no download is attempted (prefetch: vaeedof assets "
                                          "fetch metric/... on a connected machine)")
                continue
            try:
                self._pyiqa[name] = pyiqa.create_metric(key, device=device, as_loss=False)
            except Exception as exc:  # noqa: BLE001 - a broken learned metric is reported, not fatal
                self.unavailable[name] = f"could not be built: {type(exc).__name__}: {exc}"

    def __call__(self, pred: torch.Tensor, gt: torch.Tensor) -> dict[str, float | None]:
        """(3, H, W) in [0, 1] -> metric values (None where unavailable for this image)."""
        import piq

        x, y = pred[None].clamp(0, 1).to(self.device), gt[None].clamp(0, 1).to(self.device)
        side = min(x.shape[-2:])
        scores: dict[str, float | None] = {}
        with torch.no_grad():
            for name, (_, minimum) in METRICS.items():
                if name in self.unavailable or side < minimum:
                    scores[name] = None
                elif name == "MSE":
                    scores[name] = float(torch.mean((x - y) ** 2))
                elif name in self._pyiqa:
                    scores[name] = float(self._pyiqa[name](x, y))
                else:
                    fn = {"HaarPSI": piq.haarpsi, "MDSI": piq.mdsi,
                          "IW-SSIM": piq.information_weighted_ssim, "MS-GMSD": piq.multi_scale_gmsd}[name]
                    scores[name] = float(fn(x, y, data_range=1.0))
        return scores

    def size_reasons(self, side: int) -> dict[str, str]:
        return {name: f"needs images of at least {minimum} px (these are {side} px)"
                for name, (_, minimum) in METRICS.items() if side < minimum and name not in self.unavailable}
