"""The neural networks: the frozen tiny VAE, the Fusion U-Net and the hybrid output mix."""
