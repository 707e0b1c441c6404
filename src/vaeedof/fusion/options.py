"""The choices of `vaeedof fuse` and `vaeedof align`, in one place (no torch import: the
command line reads them before anything heavy loads)."""

OUTPUT_MODES = ("latent", "hybrid")  # latent: every pixel decoded (the paper); hybrid: ours
PRECISIONS = ("auto", "fp32", "bf16")
ALIGN_MODES = ("auto", "on", "off")
MOTION_MODELS = ("similarity", "affine", "homography")
# Tile sides (px) of tiled inference: the VAE's 8x times the U-Net's three 2x downsamplings.
TILE_MULTIPLE = 64
