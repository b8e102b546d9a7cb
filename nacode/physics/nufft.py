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


#: Largest interpolation matrix (non-zeros) a plan stores; beyond it sigpy interpolates.
MAX_PLAN_NNZ = 20_000_000


def _flat(coord: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(coord.reshape(-1, coord.shape[-1]), dtype=np.float64)


class NufftPlan:
    """sigpy's NUFFT with its interpolation step precomputed as a sparse matrix.

    The algorithm is :func:`sigpy.nufft` / :func:`sigpy.nufft_adjoint` step by step —
    Kaiser–Bessel apodisation, zero-padding to the oversampled grid, centred FFT,
    interpolation with the Kaiser–Bessel kernel (same ``beta``, ``width``, coordinate scaling
    and normalisation) — but the interpolation weights are computed once per trajectory and
    stored in a :class:`scipy.sparse.csr_matrix`, so that each transform is an FFT and a
    sparse product (sigpy re-evaluates the kernel for every sample on every call, which made
    one 80 × 80 spiral NUFFT take ≈ 15 ms). The kernel uses :func:`scipy.special.i0` where
    sigpy uses a polynomial approximation: results agree with sigpy to ≈ 1e-7.

    Parameters
    ----------
    shape : tuple of int
        Image shape (the last ``coord.shape[-1]`` axes of the arrays transformed).
    coord : ndarray, shape (..., ndim)
        Sample positions in grid units.
    """

    def __init__(self, shape: tuple[int, ...], coord: np.ndarray, *,
                 oversamp: float = OVERSAMP, width: int = WIDTH) -> None:
        from math import ceil

        from scipy.sparse import csr_matrix
        from scipy.special import i0

        coord = _flat(coord)
        ndim = coord.shape[-1]
        self.shape = tuple(int(n) for n in shape[-ndim:])
        self.n_samples = coord.shape[0]
        self.os_shape = tuple(ceil(oversamp * n) for n in self.shape)
        beta = np.pi * (((width / oversamp) * (oversamp - 0.5)) ** 2 - 0.8) ** 0.5
        taps = int(width) + 1
        rows = np.repeat(np.arange(self.n_samples), taps**ndim)
        cols = np.zeros((self.n_samples, taps**ndim), dtype=np.int64)
        weights = np.ones((self.n_samples, taps**ndim))
        stride = 1
        for axis in reversed(range(ndim)):
            n, m = self.shape[axis], self.os_shape[axis]
            k = coord[:, axis] * (m / n) + m // 2
            index = np.ceil(k - width / 2)[:, None] + np.arange(taps)[None, :]
            x = (index - k[:, None]) / (width / 2)
            kernel = np.where(np.abs(x) <= 1, i0(beta * np.sqrt(np.clip(1 - x**2, 0, None))),
                              0.0)
            grid = np.mod(index.astype(np.int64), m)
            # outer product over axes: axis `axis` varies with period taps**(ndim-1-axis)
            shape_axis = [1] * ndim
            shape_axis[axis] = taps
            kernel = kernel.reshape(self.n_samples, *shape_axis)
            grid = grid.reshape(self.n_samples, *shape_axis)
            weights = weights * np.broadcast_to(kernel, (self.n_samples, *[taps] * ndim)
                                                ).reshape(self.n_samples, -1)
            cols = cols + stride * np.broadcast_to(grid, (self.n_samples, *[taps] * ndim)
                                                   ).reshape(self.n_samples, -1)
            stride *= m
        weights /= width**ndim
        self.matrix = csr_matrix((weights.ravel(), (rows, cols.ravel())),
                                 shape=(self.n_samples, int(np.prod(self.os_shape))))
        self.matrix_h = self.matrix.conj().T.tocsr()
        self.apodization = self._apodization(oversamp, width, beta)

    def _apodization(self, oversamp: float, width: int, beta: float) -> np.ndarray:
        apod = np.ones(self.shape)
        for axis, (n, m) in enumerate(zip(self.shape, self.os_shape, strict=True)):
            index = np.arange(n)
            a = (beta**2 - (np.pi * width * (index - n // 2) / m) ** 2) ** 0.5
            shape_axis = [1] * len(self.shape)
            shape_axis[axis] = n
            apod = apod * (a / np.sinh(a)).reshape(shape_axis)
        return apod

    def forward(self, image: np.ndarray) -> np.ndarray:
        """Samples of ``image``, shape ``(*batch, *shape)`` → ``(*batch, n_samples)``."""
        import sigpy as sp

        ndim = len(self.shape)
        batch = image.shape[: image.ndim - ndim]
        x = image * (self.apodization / np.sqrt(np.prod(self.shape)))
        x = sp.resize(x, (*batch, *self.os_shape))
        x = sp.fft(x, axes=tuple(range(-ndim, 0)), norm=None)
        flat = x.reshape(-1, int(np.prod(self.os_shape)))
        return (self.matrix @ flat.T).T.reshape(*batch, self.n_samples)

    def adjoint(self, samples: np.ndarray) -> np.ndarray:
        """Adjoint: ``(*batch, n_samples)`` → images ``(*batch, *shape)``."""
        import sigpy as sp

        ndim = len(self.shape)
        batch = samples.shape[:-1]
        grid = (self.matrix_h @ samples.reshape(-1, self.n_samples).T).T
        grid = grid.reshape(*batch, *self.os_shape)
        x = sp.ifft(grid, axes=tuple(range(-ndim, 0)), norm=None)
        x = sp.resize(x, (*batch, *self.shape))
        return x * (self.apodization * np.prod(self.os_shape) / np.sqrt(np.prod(self.shape)))


_PLANS: dict[tuple, NufftPlan] = {}


def plan_for(shape: tuple[int, ...], coord: np.ndarray) -> NufftPlan | None:
    """A cached :class:`NufftPlan`, or None when its matrix would exceed MAX_PLAN_NNZ."""
    import hashlib

    coord = _flat(coord)
    ndim = coord.shape[-1]
    if coord.shape[0] * (WIDTH + 1) ** ndim > MAX_PLAN_NNZ:
        return None
    key = (tuple(shape[-ndim:]), coord.shape, hashlib.sha1(coord.tobytes()).hexdigest())
    if key not in _PLANS:
        if len(_PLANS) >= 16:
            _PLANS.pop(next(iter(_PLANS)))
        _PLANS[key] = NufftPlan(shape, coord)
    return _PLANS[key]


def nufft(image: np.ndarray, coord: np.ndarray) -> np.ndarray:
    """Forward NUFFT of an image ``(..., *shape)`` at ``coord`` → ``(..., n)`` (planned)."""
    import sigpy as sp

    ndim = coord.shape[-1]
    plan = plan_for(image.shape[-ndim:], coord)
    image = np.asarray(image, dtype=np.complex128)
    if plan is None:
        return sp.nufft(image, _flat(coord), oversamp=OVERSAMP, width=WIDTH)
    return plan.forward(image)


def nufft_adjoint(samples: np.ndarray, coord: np.ndarray, shape: tuple[int, ...]
                  ) -> np.ndarray:
    """Adjoint NUFFT of ``(..., n)`` samples onto images ``(..., *shape)``, planned if possible."""
    import sigpy as sp

    plan = plan_for(shape, coord)
    samples = np.asarray(samples, dtype=np.complex128)
    if plan is None:
        return sp.nufft_adjoint(samples, _flat(coord), oshape=(*samples.shape[:-1], *shape),
                                oversamp=OVERSAMP, width=WIDTH)
    return plan.adjoint(samples)


class _Nufft:
    """sigpy Linop classes wrapping :func:`nufft` / :func:`nufft_adjoint` (built lazily)."""

    classes: tuple | None = None

    @classmethod
    def get(cls):
        if cls.classes is None:
            import sigpy as sp

            class NufftLinop(sp.linop.Linop):
                def __init__(self, ishape, coord):
                    self.coord = _flat(coord)
                    ndim = self.coord.shape[-1]
                    oshape = (*ishape[: len(ishape) - ndim], self.coord.shape[0])
                    super().__init__(oshape, ishape)

                def _apply(self, input):
                    return nufft(input, self.coord)

                def _adjoint_linop(self):
                    return NufftAdjointLinop(self.ishape, self.coord)

            class NufftAdjointLinop(sp.linop.Linop):
                def __init__(self, image_shape, coord):
                    self.coord = coord
                    ndim = coord.shape[-1]
                    ishape = (*image_shape[: len(image_shape) - ndim], coord.shape[0])
                    self.image_shape = tuple(image_shape)
                    super().__init__(self.image_shape, ishape)

                def _apply(self, input):
                    ndim = self.coord.shape[-1]
                    return nufft_adjoint(input, self.coord, self.image_shape[-ndim:])

                def _adjoint_linop(self):
                    return NufftLinop(self.image_shape, self.coord)

            cls.classes = (NufftLinop, NufftAdjointLinop)
        return cls.classes


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
        Forward ``A`` (image → flat samples, shape ``(*batch, n)``); ``A.H`` is its adjoint.
    """

    shape = tuple(int(n) for n in shape)
    if coord.shape[-1] > len(shape):
        raise ValueError(f"coord has {coord.shape[-1]} dimensions, image shape {shape}")
    return _Nufft.get()[0](shape, coord)


def disk_measure(matrix: tuple[int, ...]) -> float:
    """Area (2D) or volume (3D) of the k-space disk/ball of radius N/2, in grid units."""
    radius = min(matrix) / 2
    return float(np.pi * radius**2 if len(matrix) == 2 else 4 / 3 * np.pi * radius**3)


def density_compensation(traj: Trajectory, *, max_iter: int = 30,
                         grid_oversampling: int = 2) -> np.ndarray:
    """Pipe–Menon density compensation weights, normalised to the sampled k-space measure.

    The iteration ``w ← w / |G^H G w|`` runs on a grid oversampled twice (coordinates and
    matrix doubled): on the plain matrix the kernel is too wide relative to the sample
    spacing and the weights near k = 0 come out up to 50 % too large (a point-spread function
    whose integral is 1.5 instead of 1); at 2× the gridding of a smooth disc is within ≈ 1 %.
    ``grid_oversampling=1`` reproduces the plain-grid estimate (as the calf paper's code did).

    Parameters
    ----------
    traj : Trajectory
        The sampling pattern.
    max_iter : int
        Pipe–Menon iterations.
    grid_oversampling : {1, 2}
        Oversampling of the grid the iteration runs on.

    Returns
    -------
    ndarray, shape ``traj.times_ms.shape``, float64
        Weights that sum to :func:`disk_measure` of the matrix (≈ 1 per Cartesian cell).
    """
    import sigpy.mri

    if grid_oversampling not in (1, 2):
        raise ValueError(f"grid_oversampling must be 1 or 2, got {grid_oversampling!r}")
    weights = np.abs(sigpy.mri.pipe_menon_dcf(
        grid_oversampling * _flat(traj.coord),
        img_shape=tuple(grid_oversampling * n for n in traj.matrix),
        max_iter=max_iter, show_pbar=False))
    if not np.all(np.isfinite(weights)) or weights.sum() <= 0:
        raise ValueError(f"density compensation failed for {traj.name}: non-finite weights")
    weights *= disk_measure(traj.matrix) / weights.sum()
    return weights.reshape(traj.times_ms.shape)


def gridding(kspace: np.ndarray, traj: Trajectory, weights: np.ndarray) -> np.ndarray:
    """Density-compensated adjoint NUFFT: ``A^H (w · y)``.

    Parameters
    ----------
    kspace : ndarray, shape ``traj.times_ms.shape`` or ``(n_coils, *traj.times_ms.shape)``
        Measured samples (complex).
    traj : Trajectory
        Where they were measured.
    weights : ndarray, shape ``traj.times_ms.shape``
        Output of :func:`density_compensation`.

    Returns
    -------
    ndarray, shape ``traj.matrix`` or ``(n_coils, *traj.matrix)``, complex128
        The gridded image(s).
    """

    shape = traj.times_ms.shape
    if kspace.shape[-len(shape):] != shape:
        raise ValueError(f"k-space shape {kspace.shape} does not end with the trajectory's "
                         f"{shape}")
    if weights.shape != shape:
        raise ValueError(f"weights shape {weights.shape} != trajectory {shape}")
    flat = (kspace * weights).reshape(*kspace.shape[: kspace.ndim - len(shape)], -1)
    return nufft_adjoint(flat, traj.coord, traj.matrix)


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

    if image.ndim != len(traj.matrix):
        raise ValueError(f"image is {image.ndim}D, trajectory {len(traj.matrix)}D")
    if not np.all(np.isfinite(image)):
        raise ValueError("image contains NaN or infinity")
    scale = np.sqrt(np.prod(traj.matrix) / np.prod(image.shape))
    samples = nufft(image, traj.coord)
    return (scale * samples).reshape(traj.times_ms.shape)
