"""Pretraining: presets and config, the log-mel cache and pair sampling, view
augmentations, the two objectives (NT-Xent, masked foil) and the training loop."""
