"""Classical denoisers used as baselines: Gaussian blur and non-local means.

Both are tuned on validation pairs by the shared protocol
(:func:`nacode.evaluate.tuning.tune_filter`: median PSNR over a grid of two decades whose
winner is not on its edge), then frozen for the test set — the honest baselines the calf
paper lacks.
"""

from __future__ import annotations

import numpy as np


def gaussian(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each (H, W) image of an (n, H, W) stack; ``sigma`` in pixels."""
    from scipy.ndimage import gaussian_filter

    if sigma < 0:
        raise ValueError(f"sigma must be ≥ 0 pixels, got {sigma}")
    return np.stack([gaussian_filter(image, sigma, mode="reflect") for image in images])


def nlm(images: np.ndarray, h: float, *, patch_size: int = 3, patch_distance: int = 5
        ) -> np.ndarray:
    """Non-local means (scikit-image, fast mode) of each image; ``h`` in intensity units."""
    from skimage.restoration import denoise_nl_means

    if h <= 0:
        raise ValueError(f"h must be > 0, got {h}")
    return np.stack([denoise_nl_means(image, h=h, patch_size=patch_size,
                                      patch_distance=patch_distance, fast_mode=True)
                     for image in images]).astype(np.float32)


def nlm_volume(volume: np.ndarray, h: float, mask: np.ndarray | None = None, *,
               patch_size: int = 3, patch_distance: int = 3) -> np.ndarray:
    """3D non-local means (scikit-image, fast mode) with ``h`` in units of the noise SD.

    The noise SD is estimated from the volume itself (:func:`skimage.restoration.estimate_sigma`,
    wavelet MAD), so ``h`` transfers between acquisitions of different noise levels. With a
    ``mask`` only its bounding box (plus the search margin) is filtered; voxels outside the
    mask keep their input values.

    Parameters
    ----------
    volume : ndarray, shape (X, Y, Z)
    h : float
        Filter strength relative to the estimated noise SD (> 0).
    mask : ndarray of bool, shape (X, Y, Z), optional
    patch_size, patch_distance : int
        Patch side and search radius, voxels.

    Returns
    -------
    ndarray, shape (X, Y, Z), float32
    """
    from skimage.restoration import denoise_nl_means, estimate_sigma

    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {volume.shape}")
    if h <= 0:
        raise ValueError(f"h must be > 0, got {h}")
    sigma = float(estimate_sigma(volume))
    region = tuple(slice(None) for _ in range(3))
    if mask is not None:
        coords = np.argwhere(mask)
        margin = patch_distance + patch_size
        low = np.maximum(coords.min(axis=0) - margin, 0)
        high = np.minimum(coords.max(axis=0) + 1 + margin, volume.shape)
        region = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    out = volume.copy()
    filtered = denoise_nl_means(volume[region], h=h * sigma, sigma=sigma, fast_mode=True,
                                patch_size=patch_size, patch_distance=patch_distance)
    out[region] = filtered if mask is None else np.where(mask[region], filtered, out[region])
    return out


def bm4d_volume(volume: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray | None:
    """BM4D with its own noise estimate, or None when the optional ``bm4d`` is not installed."""
    try:
        from bm4d import bm4d
    except ImportError:
        return None
    from skimage.restoration import estimate_sigma

    volume = np.asarray(volume, dtype=np.float32)
    out = np.asarray(bm4d(volume, float(estimate_sigma(volume))), dtype=np.float32)
    return out if mask is None else np.where(mask, out, volume)
