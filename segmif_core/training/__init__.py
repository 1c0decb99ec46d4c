"""Training of SegMiF and the baselines: losses and the training loop."""
