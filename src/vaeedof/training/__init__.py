"""Training the Fusion U-Net: patches, the latent cache, augmentation, EMA, checkpoints,
distributed processes and the training loop."""
