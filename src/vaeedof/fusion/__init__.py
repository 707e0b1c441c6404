"""Fusing images with a trained model: the tiling engine, model loading, the file API behind
`vaeedof fuse`, and the VAE reconstruction check. `vaeedof.fusion.fuse(images)` fuses tensors."""


def fuse(*args, **kwargs):
    """`vaeedof.fusion.files.fuse`, imported on first use (the command line imports this package
    for its options without loading torch)."""
    from .files import fuse as fuse_images

    return fuse_images(*args, **kwargs)


__all__ = ["fuse"]
