"""Thermal noise: complex Gaussian k-space noise, signal averaging (NSA), multi-coil noise.

σ is the standard deviation of each of the real and imaginary parts of one sample of one
replicate. The calf paper sets it per image as ``σ = 0.038 · max|k|`` (:func:`paper_sigma`)
and averages NSA replicates. Two equivalent ways to average:

``exact``
    draw NSA replicates and average them, as the paper (retrospective subsets: the first n);
``fast``
    one draw with σ/√NSA — equal in distribution, NSA times cheaper.
"""

from __future__ import annotations

import numpy as np

MODES = ("exact", "fast")


def _check_nsa(nsa) -> int:
    if isinstance(nsa, bool) or int(nsa) != nsa or nsa < 1:
        raise ValueError(f"NSA must be a positive integer number of averages, got {nsa!r}")
    return int(nsa)


def paper_sigma(kspace: np.ndarray, factor: float = 0.038) -> float:
    """The calf paper's per-image noise level ``σ = factor · max|k|``."""
    if not np.all(np.isfinite(kspace)):
        raise ValueError("k-space contains NaN or infinity")
    return float(factor * np.abs(kspace).max())


def complex_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator
                  ) -> np.ndarray:
    """Complex Gaussian noise with standard deviation ``sigma`` in each of Re and Im."""
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite value ≥ 0, got {sigma!r}")
    draws = rng.standard_normal((2, *shape))
    return sigma * (draws[0] + 1j * draws[1])


def average(kspace: np.ndarray, sigma: float, nsa: int, rng: np.random.Generator,
            mode: str = "fast") -> np.ndarray:
    """Noisy k-space averaged over ``nsa`` replicates.

    Parameters
    ----------
    kspace : ndarray, complex
        Noiseless samples (any shape).
    sigma : float
        Noise standard deviation of one replicate (each of Re, Im).
    nsa : int
        Number of signal averages (≥ 1).
    rng : numpy.random.Generator
        Noise source.
    mode : {"fast", "exact"}
        One draw with σ/√NSA, or NSA replicates averaged.

    Returns
    -------
    ndarray, same shape as ``kspace``, complex128
    """
    nsa = _check_nsa(nsa)
    if mode == "fast":
        return kspace + complex_noise(kspace.shape, sigma / np.sqrt(nsa), rng)
    if mode == "exact":
        return averages(kspace, sigma, [nsa], rng)[nsa]
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def averages(kspace: np.ndarray, sigma: float, nsas, rng: np.random.Generator
             ) -> dict[int, np.ndarray]:
    """Retrospective averages from one set of replicates, as in a real multi-average scan.

    Draws ``max(nsas)`` noise replicates once and returns, for each n in ``nsas``, the mean of
    the first n — so the 10-average image is a subset of the 150-average one (exact mode).

    Returns
    -------
    dict of int to ndarray
        NSA → averaged noisy k-space.
    """
    wanted = sorted({_check_nsa(n) for n in nsas})
    running = np.zeros(kspace.shape, dtype=np.complex128)
    out: dict[int, np.ndarray] = {}
    for n in range(1, wanted[-1] + 1):
        running += complex_noise(kspace.shape, sigma, rng)
        if n in wanted:
            out[n] = kspace + running / n
    return out


def correlated_covariance(n_coils: int, correlation: float = 0.3, *, seed: int = 0
                          ) -> np.ndarray:
    """A Hermitian positive-definite coil noise covariance with neighbour correlation.

    ``Ψ_ij = g_i g_j ρ^{|i−j|_circ} e^{iφ_ij}``: channel gains ``g`` in [0.8, 1.2], correlation
    decaying with the circular distance between elements, random (antisymmetric) phases.
    """
    if n_coils < 1 or not 0 <= correlation < 1:
        raise ValueError("need n_coils ≥ 1 and 0 ≤ correlation < 1")
    rng = np.random.default_rng(seed)
    i = np.arange(n_coils)
    distance = np.minimum(np.abs(i[:, None] - i[None, :]), n_coils - np.abs(i[:, None] - i))
    phase = np.triu(rng.uniform(-np.pi, np.pi, (n_coils, n_coils)), 1)
    phase = phase - phase.T
    gains = rng.uniform(0.8, 1.2, n_coils)
    psi = np.outer(gains, gains) * correlation**distance * np.exp(1j * phase)
    # make it safely positive definite whatever the phases did
    eigenvalues, vectors = np.linalg.eigh(psi)
    eigenvalues = np.maximum(eigenvalues, 0.05 * eigenvalues.max())
    return (vectors * eigenvalues) @ vectors.conj().T


def coil_noise(shape: tuple[int, ...], covariance: np.ndarray, rng: np.random.Generator
               ) -> np.ndarray:
    """Multi-coil complex noise ``L z`` with ``Ψ = L L^H``, shape ``(n_coils, *shape)``.

    ``covariance`` is ``Ψ = E[n nᴴ] / 2``, so that its diagonal is the per-coil σ² of
    :func:`complex_noise` (σ in each of Re and Im).
    """
    covariance = np.asarray(covariance)
    if covariance.ndim != 2 or covariance.shape[0] != covariance.shape[1]:
        raise ValueError(f"covariance must be square (n_coils, n_coils), got {covariance.shape}")
    chol = np.linalg.cholesky(covariance)
    white = complex_noise((covariance.shape[0], int(np.prod(shape))), 1.0, rng)
    return (chol @ white).reshape(covariance.shape[0], *shape)


def gridded_noise_sd(sigma: float, weights: np.ndarray, matrix: tuple[int, ...]) -> float:
    """Standard deviation (of Re or Im) of a gridded image's noise from k-space noise σ.

    For ``x = Aᴴ(w · n)`` with the orthonormal NUFFT (``1/√N`` with N = prod(matrix)), each
    pixel is ``N^{-1/2} Σ_k w_k n_k e^{iφ_k}``, so its real part has variance
    ``σ² Σ_k w_k² / N``.
    """
    return float(sigma * np.sqrt((np.asarray(weights) ** 2).sum() / np.prod(matrix)))


#: Standard deviation of a Rayleigh-distributed magnitude per unit complex noise SD:
#: ``sqrt((4 − π) / 2)`` — the background SD of a magnitude image.
RAYLEIGH_SD = float(np.sqrt((4 - np.pi) / 2))


def sigma_for_snr(signal: float, snr: float, nsa: int, weights: np.ndarray,
                  matrix: tuple[int, ...]) -> float:
    """Per-replicate k-space σ giving an estimated SNR (signal / background SD) at ``nsa``.

    The estimate is the calf paper's: mean signal in a tissue ROI over the standard deviation
    of a background ROI of the magnitude image, where noise is Rayleigh distributed.
    """
    nsa = _check_nsa(nsa)
    if signal <= 0 or snr <= 0:
        raise ValueError("signal and target SNR must be positive")
    unit = gridded_noise_sd(1.0, weights, matrix) * RAYLEIGH_SD / np.sqrt(nsa)
    return float(signal / snr / unit)


def noise_covariance(prescan: np.ndarray) -> np.ndarray:
    """Coil noise covariance ``Ψ̂ = n nᴴ / (2 m)`` from a noise pre-scan ``(n_coils, m)``.

    The same convention as :func:`coil_noise` (``Ψ = E[n nᴴ] / 2``: its diagonal is the
    per-coil σ² of each of Re and Im), estimated from ``m`` samples taken with the RF off.
    """
    prescan = np.asarray(prescan)
    if prescan.ndim != 2 or prescan.shape[1] < 2 * prescan.shape[0]:
        raise ValueError(f"a noise pre-scan must be (n_coils, m) with m ≥ 2 n_coils, got "
                         f"{prescan.shape}")
    if not np.all(np.isfinite(prescan)):
        raise ValueError("the noise pre-scan contains NaN or infinity")
    return prescan @ prescan.conj().T / (2 * prescan.shape[1])


def whitening_matrix(covariance: np.ndarray) -> np.ndarray:
    """``W = √(mean diag Ψ) · L⁻¹`` with ``Ψ = L Lᴴ``: whitened noise has covariance
    ``(mean diag Ψ) · I`` — uncorrelated channels of the same average noise power.

    Apply it along the coil axis (:func:`whiten`) to the k-space of every method, so that
    sum-of-squares and least-squares reconstructions weight the channels optimally
    (Pruessmann et al. 1999; Roemer et al. 1990).
    """
    covariance = np.asarray(covariance)
    chol = np.linalg.cholesky(covariance)
    level = np.sqrt(np.real(np.diag(covariance)).mean())
    return level * np.linalg.inv(chol)


def whiten(kspace: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Mix the coils of ``kspace`` ``(n_coils, ...)`` by ``matrix`` ``(n_coils, n_coils)``."""
    shape = kspace.shape
    return (matrix @ kspace.reshape(shape[0], -1)).reshape(shape)
