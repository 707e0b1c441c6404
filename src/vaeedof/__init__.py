"""VAEEDOF: multi-focus image fusion with a frozen tiny VAE, and the MattingMFIF dataset."""

__version__ = "0.1.0"
