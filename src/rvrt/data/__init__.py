"""Data for training and evaluation: frame sources, datasets, augmentations, degradations."""
