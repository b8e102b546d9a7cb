"""Deep image prior and DIP-Fusion for multi-coil non-Cartesian sodium data.

Both fit a :class:`~nacode.denoise.unet.GroupedUNet` (one copy per image) from fixed noise so
that the forward model of its output matches the measured k-space. For copy ``g`` with coil
maps ``S_g``, density weights ``w`` and measured samples ``y_g``:

``DIP``         L = D(x) = ½ ‖√w (A S (b ⊙ x) − y)‖² / ‖√w y‖²  with b ≡ 1;
``DIP-Fusion``  L = D(x) + λ1 dTV(x; ξ) + λ2 GC(x, ξ) + λ3 ‖log b‖²,  b = exp(Σ c_k B_k),

where ξ is the direction field of the fused proton–sodium prior
(:func:`~nacode.denoise.priors.fuse`) and the bias coefficients ``c`` are optimised jointly
with the network. The data term is evaluated through the Toeplitz normal operator
(:class:`~nacode.physics.toeplitz.SenseNormal`), which equals the NUFFT form to the NUFFT's
accuracy at about half its cost. Each λ may differ between copies, so a grid of weights is one
batched fit.

Two outputs per copy: the last iterate, and the one the windowed moving variance rule of
Wang et al. (ES-WMV) keeps — the variance of the last ``window`` outputs is tracked and the
output at its minimum is kept; a copy *stops* once it has found no new minimum for
``patience`` iterations, and its kept output is frozen from then on. The fit ends when every
copy has stopped (or at ``max_iter``; with ``run_to_end`` always at ``max_iter``, so that a
callback can trace the iterations past each copy's stop). Neither rule sees the ground truth;
which one a study uses, and for how many iterations, is chosen on validation subjects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from nacode.denoise.priors import FusedPrior, bias_basis, bias_field, objective
from nacode.denoise.unet import GroupedUNet
from nacode.physics.toeplitz import SenseNormal


@dataclass(frozen=True)
class DIPConfig:
    """Optimisation settings and regularisation weights.

    ``lam_dtv``, ``lam_gc`` and ``lam_bias`` are λ1, λ2, λ3, and ``fit_bias`` whether the bias
    field is estimated; each a scalar or a tuple with one value per copy (so that variants of
    one method are one batched fit). All zero and ``fit_bias=False`` is the plain DIP.
    ``patience`` None runs all ``max_iter`` iterations.
    """

    max_iter: int = 3000
    learning_rate: float = 0.01
    base: int = 16
    levels: int = 4
    window: int = 32
    patience: int | None = 200
    lam_dtv: float | tuple = 0.0
    lam_gc: float | tuple = 0.0
    lam_bias: float | tuple = 0.0
    fit_bias: bool | tuple = False
    bias_order: int = 2
    seed: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class DIPResult:
    """Outputs of :func:`fit`.

    Attributes
    ----------
    images : ndarray, shape (G, H, W), float32
        Each copy's output at the ES-WMV stopping point (bias-corrected for DIP-Fusion).
    bias : ndarray, shape (G, H, W), float32
        The estimated multiplicative field at that point (ones without ``fit_bias``).
    stop_iteration : ndarray of int, shape (G,)
        The iteration whose output ES-WMV kept.
    final : ndarray, shape (G, H, W), float32
        Each copy's output at the last iteration.
    iterations : int
        Iterations run (the last copy's stop, or ``max_iter``).
    seconds : float
        Wall time of the optimisation.
    """

    images: np.ndarray
    bias: np.ndarray
    stop_iteration: np.ndarray
    final: np.ndarray
    iterations: int
    seconds: float


def fit(term: SenseNormal, config: DIPConfig, prior: FusedPrior | None = None, *,
        progress: bool = False, callback=None, every: int = 50, run_to_end: bool = False
        ) -> DIPResult:
    """Fit one deep image prior per copy (DIP, or DIP-Fusion when a prior and λs are given).

    Parameters
    ----------
    term : SenseNormal
        The data term of every copy (coil maps ``(G, C, H, W)``, density weights — zero on
        the samples a copy did not acquire, so copies with different undersampling of one
        trajectory are fitted together — and measured k-space).
    config : DIPConfig
    prior : FusedPrior, optional
        Fields of shape (G, 2, H, W); needed when λ1 or λ2 is not zero.
    callback : callable, optional
        ``callback(iteration, images)`` every ``every`` iterations with the current outputs
        (G, H, W) as a NumPy array — to trace convergence; it must not look at anything the
        fit uses.
    run_to_end : bool
        Iterate to ``max_iter`` even after every copy has stopped by ES-WMV.

    Returns
    -------
    DIPResult
    """
    from tqdm.auto import tqdm

    regularised = any(np.any(np.asarray(lam) != 0) for lam in (config.lam_dtv, config.lam_gc))
    if regularised and prior is None:
        raise ValueError("λ1 or λ2 > 0 needs the fused prior")
    device = term.maps.device
    copies, _, height, width = term.maps.shape
    for name in ("lam_dtv", "lam_gc", "lam_bias", "fit_bias"):
        value = getattr(config, name)
        if np.ndim(value) and len(value) != copies:
            raise ValueError(f"{name} has {len(value)} values for {copies} copies")
    generator = torch.Generator(device=device).manual_seed(config.seed)
    torch.manual_seed(config.seed)
    net = GroupedUNet(copies, base=config.base, levels=config.levels).to(device)
    noise = net.input_noise((height, width), generator, device)
    energy = term.energy.clamp_min(1e-30)
    real = term.maps.real.dtype
    basis = bias_basis((height, width), config.bias_order, dtype=real, device=device)
    fitted = torch.as_tensor(np.broadcast_to(np.asarray(config.fit_bias, dtype=float),
                                             (copies,)).copy(), dtype=real, device=device)
    fit_any = bool(fitted.any())
    log_c = torch.zeros((copies, basis.shape[0]), dtype=real, device=device,
                        requires_grad=fit_any)
    params = list(net.parameters()) + ([log_c] if fit_any else [])
    lam_bias = (torch.as_tensor(np.broadcast_to(np.asarray(config.lam_bias, dtype=float),
                                                (copies,)).copy(), dtype=real, device=device)
                * fitted) if fit_any else 0.0
    optimiser = torch.optim.Adam(params, lr=config.learning_rate)
    buffer = torch.zeros((config.window, copies, height, width), device=device, dtype=real)
    # running sums over the window in float64: the variance is E[x²] − E[x]², updated in O(1)
    total = torch.zeros((copies, height, width), device=device, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    best_var = torch.full((copies,), float("inf"), device=device, dtype=real)
    best = torch.zeros((copies, height, width), device=device, dtype=real)
    best_bias = torch.ones_like(best)
    best_iter = torch.zeros(copies, dtype=torch.long, device=device)
    stopped = torch.zeros(copies, dtype=torch.bool, device=device)
    patience = config.max_iter if config.patience is None else config.patience
    start = time.perf_counter()
    iteration, image = 0, best
    for iteration in tqdm(range(1, config.max_iter + 1), disable=not progress, desc="DIP"):
        optimiser.zero_grad(set_to_none=True)
        image = net(noise).to(real)
        bias = bias_field(log_c * fitted[:, None], basis)
        loss = objective(term(bias * image) / energy, image, prior, log_c, basis,
                         lam_dtv=config.lam_dtv, lam_gc=config.lam_gc,
                         lam_bias=lam_bias)
        loss.sum().backward()
        optimiser.step()
        with torch.no_grad():  # ES-WMV: windowed moving variance of the outputs
            slot = iteration % config.window
            new, old = image.detach().double(), buffer[slot].double()
            total += new - old
            total_sq += new**2 - old**2
            buffer[slot] = image.detach()
            if iteration >= config.window:
                mean = total / config.window
                variance = (total_sq / config.window - mean**2).clamp_min(0.0).mean(
                    dim=(-1, -2)).to(real)
                better = (variance < best_var) & ~stopped
                best_var = torch.where(better, variance, best_var)
                best = torch.where(better[:, None, None], image.detach(), best)
                best_bias = torch.where(better[:, None, None], bias.detach(), best_bias)
                best_iter = torch.where(better, torch.full_like(best_iter, iteration), best_iter)
                stopped |= (iteration - best_iter) > patience
        if callback is not None and iteration % every == 0:
            callback(iteration, image.detach().float().cpu().numpy())
        if not run_to_end and iteration % 50 == 0 and bool(stopped.all()):
            break
    return DIPResult(images=best.float().cpu().numpy(), bias=best_bias.float().cpu().numpy(),
                     stop_iteration=best_iter.cpu().numpy(),
                     final=image.detach().float().cpu().numpy(), iterations=iteration,
                     seconds=time.perf_counter() - start)
