"""Denoising datasets: real noisy/clean pairs, clean folders with synthetic camera noise, built-in photos.

Public API: :func:`load_data` returns a :class:`DenoiseData` of :class:`ImagePair` items;
:func:`add_camera_noise` / :func:`add_varied_camera_noise` / :func:`sample_noise_params` synthesise realistic camera noise.
"""

from nnsearch.train.datasets.formats import LAYOUTS
from nnsearch.train.datasets.images import read_image
from nnsearch.train.datasets.loader import load_data
from nnsearch.train.datasets.noise import (
    NoiseParams,
    add_camera_noise,
    add_varied_camera_noise,
    sample_noise_params,
)
from nnsearch.train.datasets.types import DenoiseData, ImagePair, Pair

__all__ = [
    "LAYOUTS",
    "DenoiseData",
    "ImagePair",
    "NoiseParams",
    "Pair",
    "add_camera_noise",
    "add_varied_camera_noise",
    "load_data",
    "read_image",
    "sample_noise_params",
]
