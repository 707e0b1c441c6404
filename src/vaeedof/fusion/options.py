"""The choices of `vaeedof fuse` and `vaeedof align`, in one place (no torch import: the
command line reads them before anything heavy loads)."""

OUTPUT_MODES = ("latent", "hybrid")  # latent: every pixel decoded (the paper); hybrid: ours
PRECISIONS = ("auto", "fp32", "bf16")
# fast: the network decides on frames of more than WHOLE_SIDE squared pixels shrunk to VIEW_SIDE
# squared or less, the hybrid's pixel terms carry it to full resolution, and deep stacks are merged
# by focus first; max: the network sees every pixel of every frame.
QUALITIES = ("fast", "max")
WHOLE_SIDE = 768
VIEW_SIDE = 512
ALIGN_MODES = ("auto", "on", "off")
MOTION_MODELS = ("similarity", "affine", "homography")
# What `--align auto` takes for motion and for an exposure change (vaeedof.fusion.evidence and
# .exposure decide by them; the help text states them).
EVIDENT_MOTION_PX = 2.0  # of the full frame
# A gain this close to 1 is left at 1: defocus alone shifts flat regions of registered renders
# (no exposure change) by up to 1.0 %.
MIN_GAIN = 0.02
# Tile sides (px) of tiled inference: the VAE's 8x times the U-Net's three 2x downsamplings.
TILE_MULTIPLE = 64
