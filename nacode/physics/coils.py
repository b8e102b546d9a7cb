"""Receive coils: sensitivity maps, smooth bias fields, sum-of-squares and adaptive combination.

Sensitivities come from :func:`sigpy.mri.birdcage_maps` (a ring of ``n_coils`` elements
around the field of view). The adaptive combination is Walsh, Gmitro & Marcellin (MRM 2000):
in each pixel, the dominant eigenvector of the noise-whitened signal correlation matrix,
estimated over a small neighbourhood, gives the SNR-optimal coil weights.
"""

from __future__ import annotations

import numpy as np


def coil_maps(shape: tuple[int, ...], n_coils: int = 8, *, radius: float = 1.5
              ) -> np.ndarray:
    """Birdcage-ring receive sensitivities (sigpy).

    Parameters
    ----------
    shape : tuple of int
        Image shape, 2D ``(Ny, Nx)`` or 3D.
    n_coils : int
        Number of elements (≥ 1).
    radius : float
        Ring radius relative to the field of view (sigpy's ``r``).

    Returns
    -------
    ndarray, shape ``(n_coils, *shape)``, complex128
        Maps normalised so that the root-sum-of-squares is 1 at its maximum.
    """
    import sigpy.mri

    if n_coils < 1:
        raise ValueError(f"n_coils must be ≥ 1, got {n_coils}")
    if len(shape) not in (2, 3):
        raise ValueError(f"coil maps need a 2D or 3D shape, got {shape}")
    maps = np.asarray(sigpy.mri.birdcage_maps((n_coils, *shape), r=radius, nzz=n_coils),
                      dtype=np.complex128)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(0)).max()


def bias_field(shape: tuple[int, ...], coefficients: np.ndarray) -> np.ndarray:
    """Smooth multiplicative field ``b = exp(Σ c_k φ_k)`` on a low-order polynomial basis.

    Parameters
    ----------
    shape : tuple of int
        2D image shape ``(Ny, Nx)``.
    coefficients : ndarray, shape (n_basis,)
        Weights of :func:`polynomial_basis` (``n_basis`` = 6 for order 2).

    Returns
    -------
    ndarray, shape ``shape``, float64, positive
    """
    basis = polynomial_basis(shape, order=_order_for(len(coefficients)))
    return np.exp(np.tensordot(np.asarray(coefficients, dtype=float), basis, axes=1))


def _order_for(n_basis: int) -> int:
    for order in range(8):
        if (order + 1) * (order + 2) // 2 == n_basis:
            return order
    raise ValueError(f"{n_basis} coefficients match no 2D polynomial order (1, 3, 6, 10, …)")


def polynomial_basis(shape: tuple[int, int], order: int = 2) -> np.ndarray:
    """2D monomials ``y^i x^j`` (i + j ≤ order) on [-1, 1]², shape (n_basis, Ny, Nx)."""
    if len(shape) != 2:
        raise ValueError(f"polynomial_basis is 2D, got shape {shape}")
    y, x = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]),
                       indexing="ij")
    return np.stack([y**i * x**(d - i) for d in range(order + 1) for i in range(d + 1)])


def sum_of_squares(images: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares combination over the coil axis 0."""
    return np.sqrt((np.abs(images) ** 2).sum(axis=0))


def walsh_maps(images: np.ndarray, *, window: int = 5) -> np.ndarray:
    """Coil sensitivities by Walsh's method: the dominant eigenvector of the local signal
    correlation of each voxel (unit norm over the coils), phase-referenced to the strongest
    coil so that the maps are smooth in phase.

    Parameters
    ----------
    images : ndarray, shape ``(n_coils, *shape)``, complex
        Coil images, already whitened if their noise is correlated.
    window : int
        Side of the cubic/square neighbourhood over which correlations are averaged.

    Returns
    -------
    ndarray, shape ``(n_coils, *shape)``, complex128
        ``v`` with ``Σ_c |v_c|² = 1`` per voxel; ``vᴴ x`` is the Walsh combination and ``v``
        the maps of a SENSE reconstruction (whose image is then in the same units).
    """
    from scipy.ndimage import uniform_filter

    n_coils = images.shape[0]
    flat = images.reshape(n_coils, -1)
    corr = flat[:, None, :] * flat[None, :, :].conj()  # (C, C, n)
    size = (1, 1, *([window] * (images.ndim - 1)))
    corr = corr.reshape(n_coils, n_coils, *images.shape[1:])
    corr = uniform_filter(corr.real, size=size) + 1j * uniform_filter(corr.imag, size=size)
    corr = np.moveaxis(corr.reshape(n_coils, n_coils, -1), -1, 0)  # (n, C, C)
    _, vectors = np.linalg.eigh(corr)
    v = vectors[..., -1]  # dominant eigenvector per pixel, (n, C)
    reference = v[:, [int(np.argmax(np.abs(v).sum(0)))]]
    v = v * np.exp(-1j * np.angle(reference))
    return v.T.reshape(images.shape)


def walsh(images: np.ndarray, covariance: np.ndarray | None = None, *, window: int = 5
          ) -> np.ndarray:
    """Adaptive (Walsh) coil combination.

    Parameters
    ----------
    images : ndarray, shape ``(n_coils, *shape)``, complex
        Coil images.
    covariance : ndarray, shape (n_coils, n_coils), optional
        Noise covariance Ψ (identity if omitted); the data are whitened with it first.
    window : int
        Side of the cubic/square neighbourhood over which signal correlations are averaged.

    Returns
    -------
    ndarray, shape ``shape``, complex128
        ``vᴴ x̃`` with ``x̃ = L⁻¹ x`` (Ψ = L Lᴴ) and ``v`` the dominant eigenvector of the local
        correlation of ``x̃`` (:func:`walsh_maps`).
    """
    n_coils = images.shape[0]
    if covariance is not None:
        chol = np.linalg.cholesky(np.asarray(covariance))
        images = np.linalg.solve(chol, images.reshape(n_coils, -1)).reshape(images.shape)
    return (walsh_maps(images, window=window).conj() * images).sum(axis=0)
