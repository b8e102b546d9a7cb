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


def masked_psnr(reference: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    """The brain paper's pSNR (its equation 1) over the voxels of ``mask``, in dB.

    ``10 log10((max Ref − min Ref)² / MSE)``, the range and the MSE both taken inside the
    mask, so the peak is the reference's own dynamic range rather than a fixed one.
    """
    reference, image = _check(reference, image)
    if mask.shape != reference.shape or not mask.any():
        raise ValueError(f"mask must be a non-empty boolean array of shape {reference.shape}")
    ref = reference[mask]
    return psnr(ref, image[mask], data_range=float(ref.max() - ref.min()))


def masked_ssim(reference: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    """SSIM map (Gaussian window, σ = 1.5, 2D or 3D) averaged over the voxels of ``mask``.

    The data range is the reference's inside the mask, as for :func:`masked_psnr`; the map is
    computed on the whole array so that windows straddling the mask's edge see real
    neighbours (the brain paper's equation 3 with N the brain-mask voxels).
    """
    from skimage.metrics import structural_similarity

    reference, image = _check(reference, image)
    if mask.shape != reference.shape or not mask.any():
        raise ValueError(f"mask must be a non-empty boolean array of shape {reference.shape}")
    ref = reference[mask]
    _, smap = structural_similarity(reference, image, data_range=float(ref.max() - ref.min()),
                                    gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)
    return float(smap[mask].mean())


def relative_improvement(before: float, after: float) -> float:
    """``100 (after − before) / before``: the brain paper's improvement in %."""
    if before == 0:
        raise ValueError("relative improvement is undefined for a zero baseline")
    return float(100.0 * (after - before) / before)
