"""Deep image prior and DIP-Fusion for multi-coil non-Cartesian sodium data.

Both fit a :class:`~nacode.denoise.unet.GroupedUNet` (one copy per image) from fixed noise so
that the forward model of its output matches the measured k-space. For copy ``g`` with coil
maps ``S_g``, density weights ``w`` and measured samples ``y_g``:

``DIP``         L = D(x) = ½ ‖√w (A S (b ⊙ x) − y)‖² / ‖√w y‖²  with b ≡ 1;
``DIP-Fusion``  L = D(x) + λ1 dTV(x; ξ) + λ2 GC(x, s) + λ3 ‖log b‖²,  b = exp(Σ c_k B_k),

where ξ and s are the direction field and edge strength of the fused proton–sodium prior
(:func:`~nacode.denoise.priors.fuse`) and the bias coefficients ``c`` are optimised jointly
with the network. Iterations stop per copy by the windowed moving variance rule of Wang et al.
(ES-WMV): the variance of the last ``window`` outputs is tracked and the output at its minimum
is kept once no new minimum has appeared for ``patience`` iterations. The rule never sees the
ground truth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from nacode.denoise.priors import FusedPrior, bias_basis, bias_field, objective
from nacode.denoise.unet import GroupedUNet


@dataclass(frozen=True)
class DIPConfig:
    """Optimisation settings and regularisation weights.

    ``lam_dtv``, ``lam_gc`` and ``lam_bias`` are λ1, λ2, λ3; all zero and ``fit_bias=False``
    is the plain DIP.
    """

    max_iter: int = 3000
    learning_rate: float = 0.01
    base: int = 16
    levels: int = 4
    window: int = 32
    patience: int = 200
    lam_dtv: float = 0.0
    lam_gc: float = 0.0
    lam_bias: float = 0.0
    fit_bias: bool = False
    bias_order: int = 2
    seed: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class DIPResult:
    """Outputs of :func:`fit`.

    Attributes
    ----------
    images : ndarray, shape (G, H, W), float32
        Each copy's output at its stopping point (bias-corrected for DIP-Fusion).
    bias : ndarray, shape (G, H, W), float32
        The estimated multiplicative field (ones without ``fit_bias``).
    stop_iteration : ndarray of int, shape (G,)
        The iteration whose output was kept.
    iterations : int
        Iterations run (the last copy's stop, or ``max_iter``).
    seconds : float
        Wall time of the optimisation.
    """

    images: np.ndarray
    bias: np.ndarray
    stop_iteration: np.ndarray
    iterations: int
    seconds: float


def _data_term(image, bias, maps, nufft, root_w, measured, energy):
    """Normalised density-weighted data misfit per copy, shape (G,)."""
    coil_images = maps * (bias * image)[:, None].to(maps.dtype)
    residual = root_w * nufft(coil_images) - measured
    return 0.5 * (residual.abs() ** 2).sum(dim=(-1, -2)) / energy


def fit(nufft, maps: torch.Tensor, weights: torch.Tensor, kspace: torch.Tensor,
        config: DIPConfig, prior: FusedPrior | None = None, *, progress: bool = False,
        callback=None, every: int = 50) -> DIPResult:
    """Fit one deep image prior per copy (DIP, or DIP-Fusion when a prior and λs are given).

    Parameters
    ----------
    nufft : callable
        Differentiable NUFFT: complex (..., H, W) → (..., n_samples), shared by all copies
        (:class:`~nacode.physics.torch_nufft.TorchNufft`).
    maps : Tensor, shape (G, C, H, W), complex
        Coil maps per copy.
    weights : Tensor, shape (n_samples,) or (G, n_samples), real
        Density compensation (the data term is weighted by it), shared or per copy; a zero
        weight removes a sample, so copies with different undersampling of one trajectory
        can be fitted together.
    kspace : Tensor, shape (G, C, n_samples), complex
        Measured samples per copy.
    config : DIPConfig
    prior : FusedPrior, optional
        Fields of shape (G, 2, H, W) and (G, H, W); needed when λ1 or λ2 is not zero.
    callback : callable, optional
        ``callback(iteration, images)`` every ``every`` iterations with the current outputs
        (G, H, W) as a NumPy array — to trace convergence; it must not look at anything the
        fit uses.

    Returns
    -------
    DIPResult
    """
    from tqdm.auto import tqdm

    if (config.lam_dtv or config.lam_gc) and prior is None:
        raise ValueError("λ1 or λ2 > 0 needs the fused prior")
    device = kspace.device
    copies, _, height, width = maps.shape
    generator = torch.Generator(device=device).manual_seed(config.seed)
    torch.manual_seed(config.seed)
    net = GroupedUNet(copies, base=config.base, levels=config.levels).to(device)
    noise = net.input_noise((height, width), generator, device)
    root_w = weights.sqrt().to(device)
    if root_w.ndim == 2:  # per copy: broadcast over the coils
        root_w = root_w[:, None, :]
    measured = root_w * kspace
    energy = (measured.abs() ** 2).sum(dim=(-1, -2))
    real = torch.float32 if maps.dtype == torch.complex64 else torch.float64
    basis = bias_basis((height, width), config.bias_order, dtype=real, device=device)
    log_c = torch.zeros((copies, basis.shape[0]), dtype=real, device=device,
                        requires_grad=config.fit_bias)
    params = list(net.parameters()) + ([log_c] if config.fit_bias else [])
    optimiser = torch.optim.Adam(params, lr=config.learning_rate)
    buffer = torch.zeros((config.window, copies, height, width), device=device, dtype=real)
    best_var = torch.full((copies,), float("inf"), device=device, dtype=real)
    best = torch.zeros((copies, height, width), device=device, dtype=real)
    best_bias = torch.ones_like(best)
    best_iter = torch.zeros(copies, dtype=torch.long, device=device)
    start = time.perf_counter()
    iteration = 0
    for iteration in tqdm(range(1, config.max_iter + 1), disable=not progress, desc="DIP"):
        optimiser.zero_grad(set_to_none=True)
        image = net(noise).to(real)
        bias = bias_field(log_c, basis)
        loss = objective(_data_term(image, bias, maps, nufft, root_w, measured, energy), image,
                         prior, log_c, basis, lam_dtv=config.lam_dtv, lam_gc=config.lam_gc,
                         lam_bias=config.lam_bias if config.fit_bias else 0.0)
        loss.sum().backward()
        optimiser.step()
        with torch.no_grad():  # ES-WMV: windowed moving variance of the outputs
            buffer[iteration % config.window] = image.detach()
            if iteration >= config.window:
                variance = buffer.var(dim=0, unbiased=False).mean(dim=(-1, -2))
                better = variance < best_var
                best_var = torch.where(better, variance, best_var)
                best = torch.where(better[:, None, None], image.detach(), best)
                best_bias = torch.where(better[:, None, None], bias.detach(), best_bias)
                best_iter = torch.where(better, torch.full_like(best_iter, iteration), best_iter)
        if callback is not None and iteration % every == 0:
            callback(iteration, image.detach().float().cpu().numpy())
        if iteration % 50 == 0 and iteration >= config.window + config.patience \
                and bool(((iteration - best_iter) > config.patience).all()):
            break
    return DIPResult(images=best.float().cpu().numpy(), bias=best_bias.float().cpu().numpy(),
                     stop_iteration=best_iter.cpu().numpy(), iterations=iteration,
                     seconds=time.perf_counter() - start)
