"""Regularisers of DIP-Fusion: a deep image prior guided by a proton–sodium prior.

The sodium image ``x`` (real, shape ``(..., H, W)``, any leading batch dimensions) is
regularised by the directional total variation (dTV) of Ehrhardt & Betcke (2016), whose
direction field comes from a structure-tensor fusion of the proton (1H) and sodium (23Na)
images (:func:`fuse`), by a gradient-consistency term that compares edge-strength maps
independently of scale and contrast polarity, and by a smooth multiplicative bias field
(receive-coil shading) on a low-order polynomial basis. Every term returns one value per
image, shape ``(...)``, as a mean over pixels, so the λ weights do not depend on resolution.

Conventions: axis 0 of a gradient is the row direction (along H), axis 1 the column direction
(along W); differences are forward, in intensity units per pixel, with Neumann boundaries.
All functions are pure PyTorch, differentiable, and keep the device and dtype of their inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_TINY = 1e-12  # guards divisions by means and percentiles that can be zero


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward differences of images with Neumann boundary.

    ``x`` (..., H, W) → (..., 2, H, W), intensity units per pixel. Index 0 is
    ``x[i+1, j] − x[i, j]`` (along H), index 1 is ``x[i, j+1] − x[i, j]`` (along W); the
    last difference along each axis is 0.
    """
    d_h = torch.cat([x[..., 1:, :] - x[..., :-1, :], torch.zeros_like(x[..., :1, :])], dim=-2)
    d_w = torch.cat([x[..., :, 1:] - x[..., :, :-1], torch.zeros_like(x[..., :, :1])], dim=-1)
    return torch.stack([d_h, d_w], dim=-3)


def normalise(image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Divide each image by the 99th percentile of its magnitude ``|image|``.

    Parameters
    ----------
    image : Tensor, shape (..., H, W)
        Real images of any modality and unit.
    mask : Tensor of bool, broadcastable to (..., H, W), optional
        Pixels the percentile is taken over (default: the whole image).

    Returns
    -------
    Tensor, shape (..., H, W)
        Dimensionless images, the 99th percentile mapped to 1. Images whose percentile is
        0 (or whose mask is empty) are returned unscaled.
    """
    flat = image.abs().reshape(*image.shape[:-2], -1)
    if mask is None:
        q = torch.quantile(flat, 0.99, dim=-1)
    else:
        keep = torch.as_tensor(mask, dtype=torch.bool, device=image.device)
        keep = keep.expand(image.shape).reshape(flat.shape)
        q = torch.nanquantile(torch.where(keep, flat, torch.nan), 0.99, dim=-1)
        q = torch.nan_to_num(q, nan=0.0)
    scale = torch.where(q > _TINY, q, torch.ones_like(q))
    return image / scale[..., None, None]


@dataclass(frozen=True)
class FusedPrior:
    """The fused proton–sodium prior that guides dTV.

    Attributes
    ----------
    xi : Tensor, shape (..., 2, H, W)
        Direction field, axes as in :func:`gradient`, with ``|ξ| ≤ 1`` per pixel: close to a
        unit vector across strong edges, close to 0 in flat regions.
    strength : Tensor, shape (..., H, W)
        Edge strength ≥ 0 (per pixel, in units of the normalised images).
    """

    xi: torch.Tensor
    strength: torch.Tensor

    def to(self, *args, **kwargs) -> FusedPrior:
        """Move both fields; takes the arguments of ``torch.Tensor.to``."""
        return FusedPrior(self.xi.to(*args, **kwargs), self.strength.to(*args, **kwargs))


def _gaussian_smooth(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of (..., H, W) images, std ``sigma`` pixels, reflect pad."""
    if sigma <= 0:
        return images
    height, width = images.shape[-2:]
    radius = min(math.ceil(3 * sigma), height - 1, width - 1)
    if radius < 1:
        return images
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    out = images.reshape(-1, 1, height, width)
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return out.reshape(images.shape)


def fuse(proton: torch.Tensor, sodium: torch.Tensor, *, alpha: float = 0.5, eta: float = 0.05,
         sigma: float = 0.7) -> FusedPrior:
    """Fuse proton and sodium edges by their structure tensors.

    Both images are normalised (:func:`normalise`); ``J = α ∇P⊗∇P + (1 − α) ∇S⊗∇S`` is
    smoothed component-wise with a Gaussian of std ``sigma`` pixels and its principal
    eigenpair ``(μ, v)`` taken in closed form. Since ``J`` is quadratic in the gradients,
    opposite contrast polarities (fat bright in 1H, dark in 23Na) add instead of cancelling.
    No gradient flows through the fusion (the inputs are detached).

    Parameters
    ----------
    proton, sodium : Tensor, shape (..., H, W)
        Co-registered real images on the same grid.
    alpha : float
        Weight of the proton image in [0, 1]: 1 uses only the proton image, 0 only sodium.
    eta : float
        Edge-strength scale (normalised intensity per pixel) below which ``|ξ|`` drops to 0.
    sigma : float
        Std of the structure-tensor smoothing in pixels; 0 means no smoothing.

    Returns
    -------
    FusedPrior
        ``strength = sqrt(μ)`` and ``ξ = v · strength / sqrt(strength² + η²)``.
    """
    if proton.shape != sodium.shape:
        raise ValueError(f"fuse needs proton and sodium images of the same shape, got "
                         f"{tuple(proton.shape)} and {tuple(sodium.shape)}; resample first")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    g_p = gradient(normalise(proton.detach()))
    g_s = gradient(normalise(sodium.detach()))

    def tensor(g: torch.Tensor) -> torch.Tensor:
        return torch.stack([g[..., 0, :, :] ** 2, g[..., 0, :, :] * g[..., 1, :, :],
                            g[..., 1, :, :] ** 2], dim=-3)

    j = _gaussian_smooth(alpha * tensor(g_p) + (1.0 - alpha) * tensor(g_s), sigma)
    a, b, c = j.unbind(dim=-3)
    mu = (a + c) / 2 + torch.sqrt(((a - c) / 2) ** 2 + b**2)
    # Two equivalent eigenvectors of [[a, b], [b, c]] for μ; keep the better-conditioned one.
    use_first = a >= c
    v = torch.stack([torch.where(use_first, mu - c, b), torch.where(use_first, b, mu - a)],
                    dim=-3)
    v = v / torch.linalg.vector_norm(v, dim=-3, keepdim=True).clamp_min(_TINY)
    strength = torch.sqrt(mu.clamp_min(0.0))
    xi = v * (strength / torch.sqrt(strength**2 + eta**2)).unsqueeze(-3)
    return FusedPrior(xi=xi, strength=strength)


def dtv(x: torch.Tensor, xi: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Directional total variation (Ehrhardt & Betcke 2016), smoothed.

    ``mean over pixels of sqrt(|P∇x|² + eps²)`` with ``P∇x = ∇x − (ξ·∇x) ξ``. With ξ = 0 this
    is the smoothed isotropic TV; where ξ is a unit vector, gradients parallel to ξ cost
    only ``eps``.

    ``x`` (..., H, W) in intensity units; ``xi`` (..., 2, H, W), broadcastable, with
    ``|ξ| ≤ 1`` (e.g. ``FusedPrior.xi``); ``eps`` in intensity units per pixel.
    Returns shape (...).
    """
    g = gradient(x)
    projected = g - (xi * g).sum(dim=-3, keepdim=True) * xi
    return torch.sqrt((projected**2).sum(dim=-3) + eps**2).mean(dim=(-2, -1))


def gradient_consistency(x: torch.Tensor, strength: torch.Tensor, eps: float = 1e-3
                         ) -> torch.Tensor:
    """Mismatch of the edge-strength maps of ``x`` and the prior, blind to scale and sign.

    With ``g = sqrt(|∇x|² + eps²)`` and ``s = strength``, the mean over pixels of
    ``(g / mean(g) − s / mean(s))²``, the means taken per image over pixels. Invariant to
    ``x → −x`` and (up to ``eps``) to ``x → c x``, c > 0.

    ``x`` (..., H, W) in intensity units; ``strength`` (..., H, W), broadcastable, the
    prior's edge strength ≥ 0 (e.g. ``FusedPrior.strength``); ``eps`` in intensity units per
    pixel. Returns shape (...).
    """
    g = torch.sqrt((gradient(x) ** 2).sum(dim=-3) + eps**2)
    g = g / g.mean(dim=(-2, -1), keepdim=True).clamp_min(_TINY)
    s = strength / strength.mean(dim=(-2, -1), keepdim=True).clamp_min(_TINY)
    return ((g - s) ** 2).mean(dim=(-2, -1))


def _legendre(t: torch.Tensor, degree: int) -> torch.Tensor:
    p_prev, p = torch.ones_like(t), t
    if degree == 0:
        return p_prev
    for n in range(1, degree):
        p_prev, p = p, ((2 * n + 1) * t * p - n * p_prev) / (n + 1)
    return p


def bias_basis(shape: tuple[int, int], order: int = 2, *, dtype: torch.dtype,
               device: torch.device | str | None) -> torch.Tensor:
    """Legendre polynomial basis of a smooth log bias field, without the constant term.

    Coordinates are pixel centres on [−1, 1]: ``x`` along W, ``y`` along H. The functions
    are ``P_i(x) P_j(y)`` for total degree ``1 ≤ i + j ≤ order``, ordered by degree and then
    by decreasing power of ``x``: (x, y, P2(x), xy, P2(y)) for order 2. Each function has its
    pixel mean subtracted, so the field cannot change the mean log level (the image scale).

    Parameters
    ----------
    shape : (int, int)
        Image size (H, W) in pixels.
    order : int
        Maximum total degree, ≥ 1.

    Returns
    -------
    Tensor, shape (n_basis, H, W)
        Dimensionless; ``n_basis = (order + 1)(order + 2)/2 − 1``.
    """
    if order < 1:
        raise ValueError(f"bias_basis needs order ≥ 1 (the constant is excluded), got {order}")
    height, width = shape

    def centres(n: int) -> torch.Tensor:
        return (torch.arange(n, dtype=dtype, device=device) + 0.5) * (2.0 / n) - 1.0

    y, x = centres(height)[:, None], centres(width)[None, :]
    functions = [_legendre(x, degree - j) * _legendre(y, j)
                 for degree in range(1, order + 1) for j in range(degree + 1)]
    basis = torch.stack([f.expand(height, width) for f in functions])
    return basis - basis.mean(dim=(-2, -1), keepdim=True)


def _log_field(coefficients: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    return torch.einsum("...k,khw->...hw", coefficients, basis)


def bias_field(coefficients: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Positive multiplicative bias field ``exp(Σ_k c_k B_k)``, shape (..., H, W).

    ``coefficients`` (..., n_basis) are dimensionless; ``basis`` (n_basis, H, W) comes from
    :func:`bias_basis`. Zero coefficients give a field of ones.
    """
    return torch.exp(_log_field(coefficients, basis))


def bias_penalty(coefficients: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of the squared log field, ``mean((Σ_k c_k B_k)²)``, shape (...)."""
    return (_log_field(coefficients, basis) ** 2).mean(dim=(-2, -1))


def objective(data_fidelity: torch.Tensor, x: torch.Tensor, prior: FusedPrior,
              log_coefficients: torch.Tensor | None, basis: torch.Tensor | None, *,
              lam_dtv: float, lam_gc: float, lam_bias: float) -> torch.Tensor:
    """DIP-Fusion objective: data term plus the weighted regularisers.

    ``data_fidelity + lam_dtv · dtv(x, ξ) + lam_gc · gradient_consistency(x, strength)
    + lam_bias · bias_penalty(log_coefficients, basis)``. A weight equal to 0 drops its term
    without evaluating it, so with all weights 0 the data term is returned unchanged.

    Shapes: ``data_fidelity`` (...), ``x`` (..., H, W), ``log_coefficients``
    (..., n_basis) and ``basis`` (n_basis, H, W), both of which may be None when
    ``lam_bias`` is 0; the weights are dimensionless and ≥ 0. Returns shape (...).
    """
    total = data_fidelity
    if lam_dtv != 0:
        total = total + lam_dtv * dtv(x, prior.xi)
    if lam_gc != 0:
        total = total + lam_gc * gradient_consistency(x, prior.strength)
    if lam_bias != 0:
        if log_coefficients is None or basis is None:
            raise ValueError("objective needs log_coefficients and basis when lam_bias ≠ 0")
        total = total + lam_bias * bias_penalty(log_coefficients, basis)
    return total
