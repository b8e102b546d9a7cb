"""The normal operator ``Aᴴ W A`` of a non-Cartesian acquisition as a Toeplitz convolution.

For the exact non-uniform DFT, ``(Aᴴ W A x)(r) = Σ_{r'} psf(r − r') x(r')`` with the
point-spread function ``psf(d) = (1 / Π N) Σ_k w_k exp(+2πi k·d / N)`` of the density weights
``w`` (positions ``r`` in pixels, ``k`` in cycles per field of view). Embedding the image in a
grid twice as large turns the convolution into a circular one, so each application is two
FFTs of size ``2N`` instead of a forward and an adjoint NUFFT (Fessler et al., IEEE TSP 2005;
Baxter et al., MRM 2020). The kernel is computed once per set of weights with an adjoint
NUFFT onto the doubled grid (:class:`~nacode.physics.torch_nufft.TorchNufft`, so its accuracy
is the NUFFT's, ≈ 4e-4), batched: copy ``g`` of a batch may have its own weights (zero on
the samples it did not acquire), as in the breast study's DIP and variational fits.

Conventions: images ``(..., H, W)`` complex, positions and the orthonormal scaling of
:mod:`nacode.physics.nufft` (sigpy's); ``A`` includes no density weighting, ``W = diag(w)``.
"""

from __future__ import annotations

import numpy as np
import torch

from nacode.physics.torch_nufft import TorchNufft


class ToeplitzNormal(torch.nn.Module):
    """``x ↦ Aᴴ diag(w_g) A x`` for a batch of weight vectors on one trajectory.

    Parameters
    ----------
    coord : ndarray, shape (n_samples, 2)
        Sample positions in grid units of ``shape`` (the NUFFT's ``coord``).
    shape : (int, int)
        Image shape ``(H, W)``.
    weights : Tensor, shape (n_samples,) or (G, n_samples), real ≥ 0
        Density weights, shared or one row per copy.
    device, dtype
        Where the kernels live; ``dtype`` float32 (complex64 images) or float64.

    Notes
    -----
    The kernel of copy ``g`` has shape ``(2H, 2W)``; applying the operator to images of shape
    ``(G, ..., H, W)`` uses kernel ``g`` for the ``g``-th leading index (a shared kernel,
    ``weights`` 1D, broadcasts over any leading axes).
    """

    def __init__(self, coord: np.ndarray, shape: tuple[int, int], weights: torch.Tensor, *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        height, width = (int(n) for n in shape)
        coord = np.asarray(coord, dtype=np.float64).reshape(-1, 2)
        weights = torch.as_tensor(weights, dtype=torch.float64, device=device)
        if weights.shape[-1] != coord.shape[0] or weights.ndim not in (1, 2):
            raise ValueError(f"weights of shape {tuple(weights.shape)} do not match "
                             f"{coord.shape[0]} samples: expected (n,) or (G, n)")
        self.shape, self.shared = (height, width), weights.ndim == 1
        # positions on the doubled grid: same pixels, twice the field of view
        double = TorchNufft.from_coord((2 * height, 2 * width), 2.0 * coord, device=device,
                                       dtype=torch.float64)
        rows = weights.reshape(-1, coord.shape[0]).to(torch.complex128)
        psf = double.adjoint(rows) * (2.0 / np.sqrt(height * width))  # see the module notes
        kernel = torch.fft.fft2(torch.fft.ifftshift(psf, dim=(-2, -1)))
        complex_dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        self.register_buffer("kernel", (kernel[0] if self.shared else kernel).to(complex_dtype))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``Aᴴ W A x`` of images ``(G, ..., H, W)`` (or ``(..., H, W)`` with shared weights)."""
        height, width = self.shape
        if image.shape[-2:] != (height, width):
            raise ValueError(f"images of shape {tuple(image.shape)} do not end with "
                             f"{self.shape}")
        kernel = self.kernel
        if not self.shared:
            if image.shape[0] != kernel.shape[0]:
                raise ValueError(f"{image.shape[0]} images for {kernel.shape[0]} kernels")
            kernel = kernel.reshape(kernel.shape[0], *[1] * (image.ndim - 3), *kernel.shape[1:])
        padded = torch.nn.functional.pad(image.to(self.kernel.dtype), (0, width, 0, height))
        out = torch.fft.ifft2(torch.fft.fft2(padded) * kernel)
        return out[..., :height, :width]


class SenseNormal(torch.nn.Module):
    """The density-weighted multi-coil least-squares term ``½ ‖√w (F S x − y)‖²`` per copy.

    With ``T_g = Fᴴ diag(w_g) F`` (:class:`ToeplitzNormal`) the term equals
    ``½ ⟨x, N x⟩ − Re ⟨x, b⟩ + ½ E`` with the normal operator ``N x = Σ_c S̄_c T (S_c x)``, the
    combined gridding ``b = Σ_c S̄_c Fᴴ (w y_c)`` and the data energy ``E = ‖√w y‖²``; its
    gradient in ``x`` is ``N x − b``. No NUFFT is applied after construction.

    Parameters
    ----------
    coord : ndarray, shape (n_samples, 2)
        Sample positions of the full trajectory (grid units).
    maps : Tensor, shape (G, C, H, W), complex
        Coil sensitivities per copy.
    weights : Tensor, shape (G, n_samples) or (n_samples,), real ≥ 0
        Density weights; a zero drops a sample (a copy's undersampling).
    kspace : Tensor, shape (G, C, n_samples), complex
        Measured samples (zero where the weight is zero).
    """

    def __init__(self, coord: np.ndarray, maps: torch.Tensor, weights: torch.Tensor,
                 kspace: torch.Tensor) -> None:
        super().__init__()
        device = maps.device
        real = torch.float32 if maps.dtype == torch.complex64 else torch.float64
        weights = torch.as_tensor(weights, device=device)
        if weights.ndim == 1:
            weights = weights.expand(maps.shape[0], -1)
        self.toeplitz = ToeplitzNormal(coord, tuple(maps.shape[-2:]), weights, device=device,
                                       dtype=real)
        nufft = TorchNufft.from_coord(tuple(maps.shape[-2:]), coord, device=device, dtype=real)
        w = weights.to(real)[:, None, :]
        self.register_buffer("maps", maps)
        self.register_buffer("rhs", (maps.conj() * nufft.adjoint(w * kspace)).sum(dim=-3))
        self.register_buffer("energy", (w * kspace.abs() ** 2).sum(dim=(-2, -1)))

    def normal(self, image: torch.Tensor) -> torch.Tensor:
        """``N x`` of images ``(G, H, W)`` (real or complex) → ``(G, H, W)`` complex."""
        coils = self.maps * image[:, None].to(self.maps.dtype)
        return (self.maps.conj() * self.toeplitz(coils)).sum(dim=-3)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """The data term ``½ ‖√w (F S x − y)‖²`` of each copy, shape (G,), real.

        For a real image that needs a gradient the backward pass reuses ``N x`` (the gradient
        is ``Re(N x − b)``), so a step costs one application of ``N`` rather than two.
        """
        if image.requires_grad and not image.is_complex():
            return _RealDataTerm.apply(image, self)
        x = image.to(self.maps.dtype)
        quadratic = (x.conj() * self.normal(x)).real.sum(dim=(-2, -1))
        linear = (x.conj() * self.rhs).real.sum(dim=(-2, -1))
        return 0.5 * quadratic - linear + 0.5 * self.energy

    def lipschitz(self, iterations: int = 30, seed: int = 0) -> torch.Tensor:
        """Largest eigenvalue of ``N`` per copy by power iteration, shape (G,)."""
        generator = torch.Generator(device=self.maps.device).manual_seed(seed)
        shape = (self.maps.shape[0], *self.maps.shape[-2:])
        x = torch.randn(shape, generator=generator, device=self.maps.device,
                        dtype=self.maps.dtype)
        value = torch.ones(shape[0], device=self.maps.device)
        for _ in range(iterations):
            x = x / torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp_min(1e-30)
            y = self.normal(x)
            value = (x.conj() * y).real.sum(dim=(-2, -1))
            x = y
        return value


class _RealDataTerm(torch.autograd.Function):
    """``½⟨x, N x⟩ − Re⟨x, b⟩ + ½E`` of a real image, with the gradient ``Re(N x − b)``."""

    @staticmethod
    def forward(ctx, image: torch.Tensor, term: SenseNormal) -> torch.Tensor:
        x = image.detach().to(term.maps.dtype)
        residual = term.normal(x) - term.rhs  # N x − b
        ctx.save_for_backward(residual.real.to(image.dtype))
        return (0.5 * (x.conj() * (residual - term.rhs)).real.sum(dim=(-2, -1))
                + 0.5 * term.energy).to(image.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (gradient,) = ctx.saved_tensors
        return grad[:, None, None] * gradient, None


def _select(module: torch.nn.Module, buffers: dict) -> torch.nn.Module:
    """A shallow copy of ``module`` with some buffers replaced (no recomputation)."""
    import copy

    out = copy.copy(module)
    out._buffers = dict(module._buffers)
    out._buffers.update(buffers)
    return out


def select(term: SenseNormal, index: torch.Tensor) -> SenseNormal:
    """The data term of the copies ``index`` only (e.g. those a solver still iterates)."""
    toeplitz = term.toeplitz
    if not toeplitz.shared:
        toeplitz = _select(toeplitz, {"kernel": toeplitz.kernel[index]})
    out = _select(term, {"maps": term.maps[index], "rhs": term.rhs[index],
                         "energy": term.energy[index]})
    out._modules = {**term._modules, "toeplitz": toeplitz}
    return out
