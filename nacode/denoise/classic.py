"""Classical denoisers used as baselines: Gaussian blur and non-local means.

Both are tuned on validation pairs by grid search on median PSNR
(:func:`tune`), then frozen for the test set — the honest baselines the calf paper lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from nacode.evaluate.metrics import psnr


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


def tune(method: Callable[[np.ndarray, float], np.ndarray], values: Iterable[float],
         noisy: np.ndarray, clean: np.ndarray) -> tuple[float, dict[float, float]]:
    """The parameter value of ``method`` with the best median PSNR on validation pairs.

    Returns
    -------
    best : float
        The chosen value.
    scores : dict of float to float
        Median validation PSNR (dB) per value tried.
    """
    scores = {}
    for value in values:
        out = method(noisy, value)
        scores[float(value)] = float(np.median([psnr(c, o) for c, o in zip(clean, out,
                                                                             strict=True)]))
    best = max(scores, key=scores.get)
    return best, scores
