"""Image-quality metrics on normalised images (data range 1 unless given).

PSNR and MSE follow their definitions; SSIM is scikit-image's
:func:`~skimage.metrics.structural_similarity` with a Gaussian 11 × 11 window (σ = 1.5), as
Wang et al. (2004) and TensorFlow's ``tf.image.ssim`` that the calf paper's code used.
"""

from __future__ import annotations

import numpy as np


def _check(reference: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference, image = np.asarray(reference, float), np.asarray(image, float)
    if reference.shape != image.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, image {image.shape}")
    if not (np.all(np.isfinite(reference)) and np.all(np.isfinite(image))):
        raise ValueError("images contain NaN or infinity")
    return reference, image


def mse(reference: np.ndarray, image: np.ndarray) -> float:
    """Mean squared error."""
    reference, image = _check(reference, image)
    return float(np.mean((reference - image) ** 2))


def psnr(reference: np.ndarray, image: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(L² / MSE)`` in dB."""
    error = mse(reference, image)
    return float("inf") if error == 0 else float(10 * np.log10(data_range**2 / error))


def ssim(reference: np.ndarray, image: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity (Gaussian window, σ = 1.5)."""
    from skimage.metrics import structural_similarity

    reference, image = _check(reference, image)
    return float(structural_similarity(reference, image, data_range=data_range,
                                       gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))
