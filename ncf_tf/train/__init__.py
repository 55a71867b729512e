"""Training: configuration, optimisers, the per-epoch loop, checkpoints, devices, one run."""
