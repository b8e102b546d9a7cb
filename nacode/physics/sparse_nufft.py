"""sigpy's Kaiser–Bessel NUFFT with a precomputed sparse interpolation matrix.

The backend of :class:`nacode.physics.torch_nufft.TorchNufft` ``backend="sparse"``: on two
CPU cores its torch sparse product beat finufft for the breast study's 2D problems
(``nacode bench --compare``), and the sparse matrix is exactly adjoint to its transpose. The
NumPy operators of :mod:`nacode.physics.nufft` use finufft. Conventions are those of
:mod:`nacode.physics.nufft` (sigpy's orthonormal scaling, grid-unit coordinates).
"""

from __future__ import annotations

import numpy as np

#: NUFFT grid oversampling and Kaiser–Bessel kernel width: relative error ≈ 4e-4 against an
#: exact non-uniform DFT (sigpy's defaults, 1.25 and 4, give ≈ 7e-3).
OVERSAMP = 1.25
WIDTH = 6


def _flat(coord: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(coord.reshape(-1, coord.shape[-1]), dtype=np.float64)


class SparseNufftPlan:
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
