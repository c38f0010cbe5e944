"""Data: benchmark degradations (MATLAB bicubic, blur-downsampling, noise) and frame folders."""

from rvrt.data.degradations import add_gaussian_noise, bd_degrade, imresize
from rvrt.data.frames import find_sequences, list_frames, read_image, write_image

__all__ = ["add_gaussian_noise", "bd_degrade", "find_sequences", "imresize", "list_frames", "read_image", "write_image"]
