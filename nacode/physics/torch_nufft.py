"""Differentiable PyTorch NUFFT and multi-coil forward model (for deep-image-prior fits).

:class:`TorchNufft` has two backends with one interface (:func:`choose_backend` picks one):

- ``"finufft"``: finufft on the CPU, cufinufft on CUDA (:class:`nacode.physics.nufft.NufftPlan`),
  wrapped in a :class:`torch.autograd.Function` whose backward pass is the other transform
  (for a linear ``y = A x`` torch's vector–Jacobian product is ``Aᴴ g``), so that gradients
  and gradients of gradients are exact up to finufft's accuracy.
- ``"sparse"``: sigpy's Kaiser–Bessel algorithm
  (:class:`~nacode.physics.sparse_nufft.SparseNufftPlan`) step by step with torch
  operations — apodisation, centred zero-padding to the oversampled grid exactly as
  :func:`sigpy.resize` does, centred FFT (``ifftshift`` → unnormalised ``fftn`` →
  ``fftshift``, sigpy's ``norm=None``) and the plan's real sparse
  interpolation matrix applied to the real and imaginary parts (its backward pass uses the
  stored transpose). It matches ``SparseNufftPlan`` to rounding and contains no host
  synchronisation; on two CPU cores it was 2–4× faster than finufft for the breast study's
  128 × 128 radial problems (``nacode bench --compare``), so 2D CPU work uses it.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from nacode.physics.nufft import NufftPlan
from nacode.physics.sparse_nufft import SparseNufftPlan

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


def choose_backend(ndim: int, device: torch.device | str | None = None) -> str:
    """The faster backend measured for ``ndim``-D problems on ``device``.

    ``"sparse"`` for 2D on the CPU (faster there, see the module notes); ``"finufft"``
    otherwise (3D: the sparse matrix would hold 343 entries per sample), on CUDA when
    cufinufft is installed (``pip install cufinufft``), else ``"sparse"`` (cuSPARSE).
    """
    if torch.device(device or "cpu").type == "cuda":
        import importlib.util

        return "finufft" if importlib.util.find_spec("cufinufft") else "sparse"
    return "sparse" if ndim == 2 else "finufft"


class _FinufftTransform(torch.autograd.Function):
    """``A x`` (``adjoint=False``) or ``Aᴴ y`` of a :class:`TorchNufft`; backward: the other."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, op: TorchNufft, adjoint: bool) -> torch.Tensor:
        ctx.op, ctx.adjoint = op, adjoint
        return op._finufft_apply(x, adjoint)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _FinufftTransform.apply(grad, ctx.op, not ctx.adjoint), None, None


class TorchNufft(torch.nn.Module):
    """The orthonormal NUFFT of :mod:`nacode.physics.nufft` as a differentiable torch operator.

    Parameters
    ----------
    plan : NufftPlan or SparseNufftPlan
        A finufft plan (``backend "finufft"``) or a sparse Kaiser–Bessel plan (``"sparse"``:
        its ``apodization`` and interpolation ``matrix`` become buffers).
    device : torch.device or str, optional
        Where the operator runs (CPU by default); fixed at construction.
    dtype : torch.dtype
        ``torch.float32`` (complex64 data) or ``torch.float64`` (complex128 data).

    Attributes
    ----------
    backend : {"finufft", "sparse"}
    shape, n_samples : tuple of int, int
        Image shape and number of samples.
    """

    def __init__(self, plan: NufftPlan | SparseNufftPlan,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if dtype not in _COMPLEX:
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.device = torch.device(device or "cpu")
        self.shape, self.n_samples = tuple(plan.shape), plan.n_samples
        self.dtype, self.cdtype = dtype, _COMPLEX[dtype]
        self.backend = "sparse" if isinstance(plan, SparseNufftPlan) else "finufft"
        if self.backend == "finufft":
            self.plan, self._cuda_plans = plan, {}
            return
        self.os_shape = tuple(plan.os_shape)
        scale = plan.apodization / np.sqrt(np.prod(self.shape))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=dtype, device=device))
        self.register_buffer("matrix", _csr(plan.matrix, device, dtype), persistent=False)
        self.register_buffer("matrix_t", _csr(plan.matrix.T, device, dtype), persistent=False)

    @classmethod
    def from_coord(cls, shape: tuple[int, ...], coord: np.ndarray, *, backend: str = "auto",
                   device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> TorchNufft:
        """The operator of ``coord`` (shape ``(..., ndim)``, grid units) on images of ``shape``.

        ``backend`` is ``"finufft"``, ``"sparse"`` or ``"auto"`` (:func:`choose_backend`).
        """
        ndim = coord.shape[-1]
        if backend == "auto":
            backend = choose_backend(ndim, device)
        if backend not in ("finufft", "sparse"):
            raise ValueError(f"backend must be 'finufft', 'sparse' or 'auto', got {backend!r}")
        plan = (NufftPlan if backend == "finufft" else SparseNufftPlan)(shape, coord)
        return cls(plan, device=device, dtype=dtype)

    def _cuda_plan(self, kind: int, n_trans: int):
        import cufinufft

        key = (kind, n_trans)
        if key not in self._cuda_plans:
            from nacode.physics.nufft import EPS, EPS_SINGLE

            single = self.cdtype == torch.complex64
            plan = cufinufft.Plan(kind, self.shape, n_trans=n_trans,
                                  eps=EPS_SINGLE if single else EPS,
                                  isign=-1 if kind == 2 else 1,
                                  dtype="complex64" if single else "complex128",
                                  gpu_device_id=self.device.index or 0)
            plan.setpts(*[torch.as_tensor(p, dtype=self.dtype, device=self.device)
                          for p in self.plan.points])
            self._cuda_plans[key] = plan
        return self._cuda_plans[key]

    def _finufft_apply(self, x: torch.Tensor, adjoint: bool) -> torch.Tensor:
        """finufft (CPU) or cufinufft (CUDA) on ``x`` without autograd."""
        ndim = len(self.shape)
        batch = x.shape[:-1] if adjoint else x.shape[: x.ndim - ndim]
        out_tail = self.shape if adjoint else (self.n_samples,)
        x = x.detach().resolve_conj().to(self.cdtype).contiguous()
        if self.device.type == "cuda":
            n_trans = int(np.prod(batch))
            flat = x.reshape(n_trans, *x.shape[len(batch):])
            out = self._cuda_plan(1 if adjoint else 2, n_trans).execute(
                flat if n_trans > 1 else flat[0]) * self.plan.norm
        else:
            array = x.cpu().numpy()
            out = torch.from_numpy(self.plan.adjoint(array) if adjoint
                                   else self.plan.forward(array))
        return out.reshape(*batch, *out_tail).to(self.device)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Samples of ``image``, shape ``(*batch, *shape)`` → ``(*batch, n_samples)``, complex."""
        if self.backend == "finufft":
            return _FinufftTransform.apply(image.to(self.cdtype), self, False)
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
        if self.backend == "finufft":
            return _FinufftTransform.apply(samples.to(self.cdtype), self, True)
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
        device = nufft.device
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
