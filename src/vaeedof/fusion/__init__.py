"""Fusing images with a trained model: the tiling engine, model loading, the file API behind
`vaeedof fuse`, and the VAE reconstruction check. `vaeedof.fusion.fuse(images)` fuses tensors."""

from .files import fuse

__all__ = ["fuse"]
