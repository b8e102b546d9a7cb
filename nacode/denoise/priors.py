"""Regularisers of DIP-Fusion: a deep image prior guided by a proton–sodium prior.

The sodium image ``x`` (real, shape ``(..., H, W)``, any leading batch dimensions) is
regularised by the directional total variation (dTV) of Ehrhardt & Betcke (2016), whose
direction field comes from a structure-tensor fusion of the proton (1H) and sodium (23Na)
images (:func:`fuse`), by a gradient-consistency term that measures how much of the image's
gradient energy the prior's edge directions leave unexplained (independent of scale and
contrast polarity), and by a smooth multiplicative bias field
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

from nacode.recon.variational import gradient, project

_TINY = 1e-12  # guards divisions by means and percentiles that can be zero


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
    eta : Tensor, shape (...), optional
        The edge-strength scale each image's ξ was computed with.
    """

    xi: torch.Tensor
    strength: torch.Tensor
    eta: torch.Tensor | None = None

    def to(self, *args, **kwargs) -> FusedPrior:
        """Move the fields; takes the arguments of ``torch.Tensor.to``."""
        eta = None if self.eta is None else self.eta.to(*args, **kwargs)
        return FusedPrior(self.xi.to(*args, **kwargs), self.strength.to(*args, **kwargs), eta)


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


#: η of :func:`fuse` in units of the fused noise gradient's RMS (see :func:`noise_sd`).
KAPPA = 2.0


def noise_sd(image: torch.Tensor) -> torch.Tensor:
    """Noise standard deviation of images ``(..., H, W)`` by Immerkær's estimator.

    ``σ = √(π/2) / (6 (H−2)(W−2)) Σ |I ∗ M|`` with the Laplacian-difference mask
    ``M = [[1, −2, 1], [−2, 4, −2], [1, −2, 1]]``, which cancels locally linear structure
    (Immerkær, CVIU 1996). Returns shape ``(...)`` in the images' units.
    """
    mask = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]],
                        dtype=image.dtype, device=image.device)
    height, width = image.shape[-2:]
    response = F.conv2d(image.reshape(-1, 1, height, width), mask.view(1, 1, 3, 3))
    total = response.abs().sum(dim=(-3, -2, -1))
    return (math.sqrt(math.pi / 2) * total / (6 * (height - 2) * (width - 2))
            ).reshape(image.shape[:-2])


def fuse(proton: torch.Tensor, sodium: torch.Tensor, *, alpha: float = 0.5,
         eta: float | None = None, kappa: float = KAPPA, sigma: float = 0.7) -> FusedPrior:
    """Fuse proton and sodium edges by their structure tensors.

    Both images are normalised (:func:`normalise`); ``J = α ∇P⊗∇P + (1 − α) ∇S⊗∇S`` is
    smoothed component-wise with a Gaussian of std ``sigma`` pixels and its principal
    eigenpair ``(μ, v)`` taken in closed form. Since ``J`` is quadratic in the gradients,
    opposite contrast polarities (fat bright in 1H, dark in 23Na) add instead of cancelling.
    No gradient flows through the fusion (the inputs are detached).

    Noise must not count as an edge: by default ``η`` is scaled to the noise of the images
    that enter ``J``. Pure noise of SD ``σ`` gives forward differences with ``E|∇n|² = 4σ²``,
    so the noise contributes ``E μ ≈ 4 (α σ_P² + (1 − α) σ_S²)`` to the tensor, and
    ``η = κ · 2 √(α σ_P² + (1 − α) σ_S²)`` with σ from :func:`noise_sd` of each normalised
    image: a noise-only gradient then gets ``|ξ| ≈ 1/√(1 + κ²)`` (0.45 for κ = 2), an edge of
    ten noise SDs ``|ξ| ≈ 0.98``.

    Parameters
    ----------
    proton, sodium : Tensor, shape (..., H, W)
        Co-registered real images on the same grid.
    alpha : float
        Weight of the proton image in [0, 1]: 1 uses only the proton image, 0 only sodium.
    eta : float, optional
        Fixed edge-strength scale (normalised intensity per pixel) below which ``|ξ|`` drops
        to 0; None (default) scales it to the noise as above.
    kappa : float
        ``η`` in units of the noise gradient's RMS when ``eta`` is None.
    sigma : float
        Std of the structure-tensor smoothing in pixels; 0 means no smoothing.

    Returns
    -------
    FusedPrior
        ``strength = sqrt(μ)``, ``ξ = v · strength / sqrt(strength² + η²)`` and the ``eta``
        used per image.
    """
    if proton.shape != sodium.shape:
        raise ValueError(f"fuse needs proton and sodium images of the same shape, got "
                         f"{tuple(proton.shape)} and {tuple(sodium.shape)}; resample first")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    p, s = normalise(proton.detach()), normalise(sodium.detach())
    g_p, g_s = gradient(p), gradient(s)
    if eta is None:
        variance = alpha * noise_sd(p) ** 2 + (1.0 - alpha) * noise_sd(s) ** 2
        eta_t = kappa * 2.0 * torch.sqrt(variance).clamp_min(_TINY)
    else:
        eta_t = torch.full(p.shape[:-2], float(eta), dtype=p.dtype, device=p.device)

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
    e = eta_t[..., None, None]
    xi = v * (strength / torch.sqrt(strength**2 + e**2)).unsqueeze(-3)
    return FusedPrior(xi=xi, strength=strength, eta=eta_t)


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


def gradient_consistency(x: torch.Tensor, xi: torch.Tensor, eps: float = 1e-3
                         ) -> torch.Tensor:
    """Share of the gradient energy of ``x`` that the prior's edge directions do not explain.

    ``GC(x) = Σ |∇x − (ξ·∇x) ξ|² / (Σ |∇x|² + eps² · n_pixels)`` per image, in [0, 1]: 0 when
    every gradient of ``x`` lies across an edge of the prior (``|ξ| = 1`` there, parallel to
    ∇x), ≈ 1 for gradients where the prior is flat (ξ ≈ 0) — as noise has everywhere.
    Invariant to ``x → −x`` and (up to ``eps``) to ``x → c x``, so it judges only where the
    edges of ``x`` lie, not how strong they are; the test suite checks that it scores the
    truth better than a noisy reconstruction.

    ``x`` (..., H, W) in intensity units; ``xi`` (..., 2, H, W), broadcastable, ``|ξ| ≤ 1``
    (``FusedPrior.xi``); ``eps`` in intensity units per pixel. Returns shape (...).
    """
    g = gradient(x)
    off = (project(g, xi) ** 2).sum(dim=(-3, -2, -1))
    total = (g**2).sum(dim=(-3, -2, -1)) + eps**2 * x.shape[-1] * x.shape[-2]
    return off / total


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


def _as(lam, x: torch.Tensor) -> torch.Tensor | float:
    """A λ as given: a float, or a per-copy sequence/Tensor (G,) on ``x``'s device and dtype."""
    if isinstance(lam, int | float):
        return float(lam)
    return torch.as_tensor(lam, dtype=x.dtype, device=x.device)


def _is_zero(lam) -> bool:
    return bool((torch.as_tensor(lam) == 0).all())


def objective(data_fidelity: torch.Tensor, x: torch.Tensor, prior: FusedPrior,
              log_coefficients: torch.Tensor | None, basis: torch.Tensor | None, *,
              lam_dtv, lam_gc, lam_bias) -> torch.Tensor:
    """DIP-Fusion objective: data term plus the weighted regularisers.

    ``data_fidelity + lam_dtv · dtv(x, ξ) + lam_gc · gradient_consistency(x, ξ)
    + lam_bias · bias_penalty(log_coefficients, basis)``. A weight equal to 0 (for every copy)
    drops its term without evaluating it, so with all weights 0 the data term is returned
    unchanged.

    Shapes: ``data_fidelity`` (G,), ``x`` (G, H, W), ``log_coefficients`` (G, n_basis) and
    ``basis`` (n_basis, H, W), both of which may be None when ``lam_bias`` is 0; the weights
    are dimensionless and ≥ 0, each a float or one value per copy (shape (G,)). Returns (G,).
    """
    total = data_fidelity
    if not _is_zero(lam_dtv):
        total = total + _as(lam_dtv, x) * dtv(x, prior.xi)
    if not _is_zero(lam_gc):
        total = total + _as(lam_gc, x) * gradient_consistency(x, prior.xi)
    if not _is_zero(lam_bias):
        if log_coefficients is None or basis is None:
            raise ValueError("objective needs log_coefficients and basis when lam_bias ≠ 0")
        total = total + _as(lam_bias, x) * bias_penalty(log_coefficients, basis)
    return total
