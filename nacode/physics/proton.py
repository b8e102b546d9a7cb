"""The calf paper's preparation of a 1H image as a sodium-like ground truth.

Section 2.1 of the paper: reflection-pad the image to a square, downsample it to 80 × 80 by
cropping its k-space, and superimpose a bright disc that mimics the 100 mM reference tube:
diameter 12 pixels, intensity 7.5 × the image mean, blurred with a Gaussian of σ = 0.6 pixel,
in a random corner of the image, 9–15 pixels from the edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PreparedProton:
    """A prepared 1H image.

    Attributes
    ----------
    image : ndarray, shape (matrix, matrix), float64
        Downsampled magnitude image with the tube.
    tube : ndarray, shape (matrix, matrix), float64
        The blurred disc profile in [0, 1] (1 inside the tube).
    centre : tuple of int
        Tube centre (row, column).
    """

    image: np.ndarray
    tube: np.ndarray
    centre: tuple[int, int]


def reflect_pad_square(image: np.ndarray) -> np.ndarray:
    """Reflection-pad a 2D image to a square (the padding split evenly on both sides)."""
    if image.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    size = max(image.shape)
    pads = [((size - n) // 2, size - n - (size - n) // 2) for n in image.shape]
    return np.pad(image, pads, mode="reflect")


def kspace_downsample(image: np.ndarray, matrix: int = 80) -> np.ndarray:
    """Magnitude of the image after keeping only the central ``matrix²`` k-space samples.

    Intensities are preserved (a constant image keeps its value).
    """
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"expected a square 2D image, got shape {image.shape}")
    size = image.shape[0]
    if matrix > size:
        raise ValueError(f"cannot downsample a {size}² image to {matrix}²")
    spectrum = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image), norm="ortho"))
    start = size // 2 - matrix // 2
    crop = spectrum[start:start + matrix, start:start + matrix]
    small = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(crop), norm="ortho"))
    return np.abs(small) * matrix / size


def tube_disc(matrix: int, centre: tuple[int, int], diameter: float = 12.0,
              sigma: float = 0.6) -> np.ndarray:
    """A disc of ``diameter`` pixels at ``centre`` (row, column), Gaussian-blurred, in [0, 1]."""
    from scipy.ndimage import gaussian_filter

    rows, cols = np.mgrid[:matrix, :matrix]
    disc = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= (diameter / 2) ** 2)
    return np.clip(gaussian_filter(disc.astype(float), sigma), 0.0, 1.0)


def add_tube(image: np.ndarray, rng: np.random.Generator, *, diameter: float = 12.0,
             scale: float = 7.5, sigma: float = 0.6, distance: tuple[int, int] = (9, 15)
             ) -> PreparedProton:
    """Superimpose the simulated reference tube in a random corner.

    The disc's centre lies ``distance`` pixels (uniform integers, inclusive) from the two
    edges of a randomly chosen corner; its intensity is ``scale`` × the image mean.
    """
    n = image.shape[0]
    low, high = distance
    offsets = rng.integers(low, high + 1, size=2)
    corner = rng.integers(0, 4)
    row = offsets[0] if corner in (0, 1) else n - 1 - offsets[0]
    col = offsets[1] if corner in (0, 2) else n - 1 - offsets[1]
    disc = tube_disc(n, (int(row), int(col)), diameter, sigma)
    level = scale * float(image.mean())
    return PreparedProton(image * (1 - disc) + level * disc, disc, (int(row), int(col)))


def prepare_proton(image: np.ndarray, rng: np.random.Generator, *, matrix: int = 80
                   ) -> PreparedProton:
    """Pad to square, k-space downsample to ``matrix``, add the tube (the paper's 2.1)."""
    image = np.asarray(image, dtype=np.float64)
    if not np.all(np.isfinite(image)):
        raise ValueError("1H image contains NaN or infinity")
    return add_tube(kspace_downsample(reflect_pad_square(image), matrix), rng)
