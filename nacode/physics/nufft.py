"""NUFFT operators, Pipe–Menon density compensation and gridding reconstruction (sigpy).

Conventions: images are complex arrays on the acquisition matrix (2D ``(Ny, Nx)`` or 3D),
k-space coordinates in grid units (:mod:`nacode.physics.trajectory`), and sigpy's NUFFT is
orthonormal (a fully sampled Cartesian NUFFT equals the centred unitary FFT). Density weights
``w`` are normalised so that they sum to the area (2D) or volume (3D) of the sampled k-space
disk or ball in grid units: then ``w ≈ 1`` per Cartesian cell and the gridding
reconstruction ``A^H (w · A x)`` preserves intensities.
"""

from __future__ import annotations

import numpy as np

from nacode.physics.trajectory import Trajectory

#: NUFFT grid oversampling and Kaiser–Bessel kernel width: relative error ≈ 4e-4 against an
#: exact non-uniform DFT (sigpy's defaults, 1.25 and 4, give ≈ 7e-3).
OVERSAMP = 1.25
WIDTH = 6


def _flat(coord: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(coord.reshape(-1, coord.shape[-1]), dtype=np.float64)


def nufft_op(shape: tuple[int, ...], coord: np.ndarray):
    """NUFFT linear operator from an image of ``shape`` to the samples at ``coord``.

    Parameters
    ----------
    shape : tuple of int
        Image shape; its last ``coord.shape[-1]`` axes are image axes, any leading ones are
        batch axes (e.g. coils) transformed independently.
    coord : ndarray, shape (..., ndim)
        Sample positions in grid units of ``shape``.

    Returns
    -------
    sigpy.linop.Linop
        Forward ``A`` (image → flat samples, shape (*batch, n)); ``A.H`` is its adjoint.
    """
    import sigpy as sp

    shape = tuple(int(n) for n in shape)
    if coord.shape[-1] > len(shape):
        raise ValueError(f"coord has {coord.shape[-1]} dimensions, image shape {shape}")
    return sp.linop.NUFFT(shape, _flat(coord), oversamp=OVERSAMP, width=WIDTH)


def disk_measure(matrix: tuple[int, ...]) -> float:
    """Area (2D) or volume (3D) of the k-space disk/ball of radius N/2, in grid units."""
    radius = min(matrix) / 2
    return float(np.pi * radius**2 if len(matrix) == 2 else 4 / 3 * np.pi * radius**3)


def density_compensation(traj: Trajectory, *, max_iter: int = 30) -> np.ndarray:
    """Pipe–Menon density compensation weights, normalised to the sampled k-space measure.

    The iteration ``w ← w / |G^H G w|`` runs on a grid oversampled twice (coordinates and
    matrix doubled): on the plain matrix the kernel is too wide relative to the sample
    spacing and the weights near k = 0 come out up to 50 % too large (a point-spread function
    whose integral is 1.5 instead of 1); at 2× the gridding of a smooth disc is within ≈ 1 %.

    Parameters
    ----------
    traj : Trajectory
        The sampling pattern.
    max_iter : int
        Pipe–Menon iterations.

    Returns
    -------
    ndarray, shape ``traj.times_ms.shape``, float64
        Weights that sum to :func:`disk_measure` of the matrix (≈ 1 per Cartesian cell).
    """
    import sigpy.mri

    weights = np.abs(sigpy.mri.pipe_menon_dcf(
        2.0 * _flat(traj.coord), img_shape=tuple(2 * n for n in traj.matrix),
        max_iter=max_iter, show_pbar=False))
    if not np.all(np.isfinite(weights)) or weights.sum() <= 0:
        raise ValueError(f"density compensation failed for {traj.name}: non-finite weights")
    weights *= disk_measure(traj.matrix) / weights.sum()
    return weights.reshape(traj.times_ms.shape)


def gridding(kspace: np.ndarray, traj: Trajectory, weights: np.ndarray) -> np.ndarray:
    """Density-compensated adjoint NUFFT: ``A^H (w · y)``.

    Parameters
    ----------
    kspace : ndarray, shape ``traj.times_ms.shape`` or (n_coils, *that)
        Measured samples (complex).
    traj : Trajectory
        Where they were measured.
    weights : ndarray, shape ``traj.times_ms.shape``
        Output of :func:`density_compensation`.

    Returns
    -------
    ndarray, shape ``traj.matrix`` or (n_coils, *matrix), complex128
        The gridded image(s).
    """
    import sigpy as sp

    shape = traj.times_ms.shape
    if kspace.shape[-len(shape):] != shape:
        raise ValueError(f"k-space shape {kspace.shape} does not end with the trajectory's "
                         f"{shape}")
    if weights.shape != shape:
        raise ValueError(f"weights shape {weights.shape} != trajectory {shape}")
    coord = _flat(traj.coord)
    flat = (kspace * weights).reshape(*kspace.shape[: kspace.ndim - len(shape)], -1)
    lead = flat.shape[:-1]
    return sp.nufft_adjoint(flat.astype(np.complex128, copy=False), coord,
                            oshape=(*lead, *traj.matrix), oversamp=OVERSAMP, width=WIDTH)


def sample_image(image: np.ndarray, traj: Trajectory) -> np.ndarray:
    """Sample the Fourier transform of an image given on any grid covering the same FOV.

    ``image`` may be finer than the acquisition matrix (e.g. 320 × 320 for an 80 × 80
    acquisition): the coordinates (cycles per FOV) are the same, and the result is scaled by
    ``sqrt(prod(matrix) / prod(image.shape))`` so that it equals what the NUFFT of the same
    object drawn on the acquisition matrix would give.

    Parameters
    ----------
    image : ndarray, shape (M1, M2[, M3])
        Object on a grid with the trajectory's field of view.
    traj : Trajectory
        Sampling pattern.

    Returns
    -------
    ndarray, shape ``traj.times_ms.shape``, complex128
    """
    import sigpy as sp

    if image.ndim != len(traj.matrix):
        raise ValueError(f"image is {image.ndim}D, trajectory {len(traj.matrix)}D")
    if not np.all(np.isfinite(image)):
        raise ValueError("image contains NaN or infinity")
    scale = np.sqrt(np.prod(traj.matrix) / np.prod(image.shape))
    samples = sp.nufft(np.asarray(image, dtype=np.complex128), _flat(traj.coord),
                       oversamp=OVERSAMP, width=WIDTH)
    return (scale * samples).reshape(traj.times_ms.shape)
