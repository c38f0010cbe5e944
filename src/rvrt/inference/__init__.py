"""Running trained models on real footage: frame/video input and output, tiling, the restore pipeline."""
