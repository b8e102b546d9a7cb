"""Differentiable PyTorch NUFFT and multi-coil forward model (for deep-image-prior fits).

:class:`TorchNufft` runs the algorithm of :class:`nacode.physics.nufft.NufftPlan` step by
step with torch operations — Kaiser–Bessel apodisation, centred zero-padding to the
oversampled grid exactly as :func:`sigpy.resize` does, centred FFT (``ifftshift`` →
unnormalised ``fftn`` → ``fftshift``, sigpy's ``norm=None``), and the plan's sparse
interpolation matrix — so that it matches ``NufftPlan.forward`` / ``NufftPlan.adjoint`` to
rounding, on CPU or CUDA, and autograd back-propagates through it. The interpolation weights
are real: the sparse CSR matrix is applied to the real and imaginary parts, and its backward
pass uses the stored transpose (no autograd through sparse tensors is needed). Forward and
adjoint contain no host synchronisation, numpy or data-dependent control flow.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from nacode.physics.nufft import NufftPlan

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def _csr(matrix, device, dtype) -> torch.Tensor:
    matrix = matrix.tocsr()
    index = np.int32 if matrix.nnz < 2**31 else np.int64  # int32: ≈ 25 % faster on CPU
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(index)),
            torch.from_numpy(matrix.indices.astype(index)),
            torch.from_numpy(np.real(matrix.data).astype(np.float64)),
            size=matrix.shape, dtype=dtype, device=device, check_invariants=False)


class _SparseMatmul(torch.autograd.Function):
    """``S @ dense`` for a real sparse ``S`` whose transpose ``S_t`` gives the backward."""

    @staticmethod
    def forward(ctx, dense: torch.Tensor, s: torch.Tensor, s_t: torch.Tensor) -> torch.Tensor:
        ctx.s_t, ctx.s = s_t, s
        return torch.sparse.mm(s, dense)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _SparseMatmul.apply(grad.contiguous(), ctx.s_t, ctx.s), None, None


def _interp(x: torch.Tensor, s: torch.Tensor, s_t: torch.Tensor) -> torch.Tensor:
    """Apply a real sparse ``(n, m)`` matrix to complex rows ``(K, m)`` → ``(K, n)``."""
    k, m = x.shape
    dense = torch.view_as_real(x).permute(1, 0, 2).reshape(m, 2 * k)
    out = _SparseMatmul.apply(dense, s, s_t)
    return torch.view_as_complex(out.reshape(-1, k, 2).permute(1, 0, 2).contiguous())


def _pad_or_crop(x: torch.Tensor, oshape: tuple[int, ...]) -> torch.Tensor:
    """:func:`sigpy.resize` on the last ``len(oshape)`` axes: centred at index ``n // 2``."""
    pads: list[int] = []
    for axis, o in enumerate(oshape, start=x.ndim - len(oshape)):
        i = x.shape[axis]
        if i > o:
            x = x.narrow(axis, i // 2 - o // 2, o)
        before = o // 2 - i // 2 if i < o else 0
        pads = [before, max(o - i - before, 0), *pads]
    return torch.nn.functional.pad(x, pads) if any(pads) else x


class TorchNufft(torch.nn.Module):
    """Kaiser–Bessel NUFFT of :class:`NufftPlan` as a differentiable torch operator.

    Parameters
    ----------
    plan : NufftPlan
        Precomputed plan: its image ``shape``, oversampled grid ``os_shape``, ``apodization``
        (shape ``shape``) and interpolation ``matrix`` (``n_samples`` × ``prod(os_shape)``).
    device : torch.device or str, optional
        Where the buffers live (CPU by default).
    dtype : torch.dtype
        ``torch.float32`` (complex64 data) or ``torch.float64`` (complex128 data).
    """

    def __init__(self, plan: NufftPlan, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if dtype not in _COMPLEX:
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.shape, self.os_shape = tuple(plan.shape), tuple(plan.os_shape)
        self.n_samples, self.dtype, self.cdtype = plan.n_samples, dtype, _COMPLEX[dtype]
        scale = plan.apodization / np.sqrt(np.prod(self.shape))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=dtype, device=device))
        self.register_buffer("matrix", _csr(plan.matrix, device, dtype), persistent=False)
        self.register_buffer("matrix_t", _csr(plan.matrix.T, device, dtype), persistent=False)

    @classmethod
    def from_coord(cls, shape: tuple[int, ...], coord: np.ndarray, **kwargs) -> TorchNufft:
        """Build the plan for ``coord`` (shape ``(..., ndim)``, grid units) and wrap it."""
        return cls(NufftPlan(shape, coord), **kwargs)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Samples of ``image``, shape ``(*batch, *shape)`` → ``(*batch, n_samples)``, complex."""
        ndim = len(self.shape)
        batch = image.shape[: image.ndim - ndim]
        dims = tuple(range(-ndim, 0))
        x = _pad_or_crop(image.to(self.cdtype) * self.scale, self.os_shape)
        x = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims),
                               dim=dims)
        out = _interp(x.reshape(-1, int(np.prod(self.os_shape))), self.matrix, self.matrix_t)
        return out.reshape(*batch, self.n_samples)

    def adjoint(self, samples: torch.Tensor) -> torch.Tensor:
        """Adjoint: samples ``(*batch, n_samples)`` → images ``(*batch, *shape)``, complex."""
        ndim = len(self.shape)
        batch, dims = samples.shape[:-1], tuple(range(-ndim, 0))
        flat = samples.to(self.cdtype).reshape(-1, self.n_samples)
        x = _interp(flat, self.matrix_t, self.matrix).reshape(*batch, *self.os_shape)
        x = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(x, dim=dims), dim=dims,
                                               norm="forward"), dim=dims)
        return _pad_or_crop(x, self.shape) * self.scale


class MulticoilForward(torch.nn.Module):
    """Multi-coil, density-weighted NUFFT ``A x = sqrt(w) · NUFFT(S_c x)``.

    Parameters
    ----------
    nufft : TorchNufft
        Single-image NUFFT on the image shape ``(H, W)``.
    maps : Tensor, shape (C, H, W), complex
        Coil sensitivities (cast to the NUFFT's complex dtype and device).
    weights : Tensor, shape (n_samples,), real, optional
        Density compensation ``w``; ``A`` then includes ``sqrt(w)`` so that the least-squares
        loss ``0.5 · ‖A x − sqrt(w) · y‖²`` is density-weighted. None means ``w = 1``.

    Notes
    -----
    Measured data enter the loss already weighted: pass ``weighted(y)`` (the raw k-space
    times ``sqrt(w)``) to :meth:`data_fidelity`.
    """

    def __init__(self, nufft: TorchNufft, maps: torch.Tensor,
                 weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.nufft = nufft
        device = nufft.scale.device
        self.register_buffer("maps", maps.to(device=device, dtype=nufft.cdtype))
        sqrt_w = (torch.ones(nufft.n_samples, dtype=nufft.dtype) if weights is None
                  else torch.as_tensor(weights).reshape(-1).to(nufft.dtype).sqrt())
        self.register_buffer("sqrt_weights", sqrt_w.to(device))

    def weighted(self, kspace: torch.Tensor) -> torch.Tensor:
        """Measured k-space ``(..., C, n_samples)`` times ``sqrt(w)``: the target of the loss."""
        return kspace.to(self.nufft.cdtype) * self.sqrt_weights

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``A x``: image ``(B, H, W)`` or ``(H, W)``, real or complex → ``(B, C, n)`` or
        ``(C, n)``, complex."""
        return self.nufft(self.maps * image.unsqueeze(-3)) * self.sqrt_weights

    def adjoint(self, kspace: torch.Tensor) -> torch.Tensor:
        """``A^H y = Σ_c conj(S_c) · NUFFT^H(sqrt(w) · y_c)``: ``(B, C, n)`` → ``(B, H, W)``
        (or ``(C, n)`` → ``(H, W)``), complex."""
        coil_images = self.nufft.adjoint(kspace.to(self.nufft.cdtype) * self.sqrt_weights)
        return (self.maps.conj() * coil_images).sum(dim=-3)

    def data_fidelity(self, image: torch.Tensor, kspace: torch.Tensor) -> torch.Tensor:
        """``0.5 · mean over coils and samples of |A x − y|²``, shape ``(B,)`` (or ``()``).

        ``kspace`` (shape ``(B, C, n)`` or ``(C, n)``) must already be weighted by
        ``sqrt(w)`` (:meth:`weighted`). For a real image the gradient is
        ``Re(A^H (A x − y)) / (C · n)``.
        """
        residual = self(image) - kspace
        return 0.5 * (residual.real**2 + residual.imag**2).mean(dim=(-2, -1))
