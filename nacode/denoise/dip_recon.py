"""DIP-Fusion (and the plain DIP) on raw 2D multi-coil k-space: ``nacode recon --method
dip-fusion`` / ``dip``.

The breast study's reconstruction (:func:`nacode.denoise.dip.fit`) applied to an ISMRMRD scan
(:class:`~nacode.io.raw.RawData`), one network per slice, all slices in one batched fit. The
data term, coil maps and density weights are those of :mod:`nacode.recon.raw` (whitened
coils, Pipe–Menon weights, Walsh maps); each slice's k-space is scaled, as in the breast
study, so that its gridded image's 99th percentile is 1, and the result is scaled back to the
units of the gridded image.
The fused prior (:func:`~nacode.denoise.priors.fuse`, α = 0.5) combines the proton image
given with ``--prior`` with the slice's CS-TV reconstruction, as in the breast study; the
bias field is fitted jointly (λ3 = ``lam_bias``). 2D only: the network and the fused prior
are two-dimensional (for 3D use ``--method dtv``).

The learning rate, λ1 (dTV), λ2 (gradient consistency) and the number of iterations are
parameters; the command line takes the breast study's frozen choice
(``weights/breast_dip_tuning.json``, tuned on its validation subjects), which is a starting
point rather than a tuning for another anatomy, matrix or SNR.
"""

from __future__ import annotations

import numpy as np

from nacode.io.raw import RawData

#: Proton weight of the fused prior and the bias penalty λ3 (the breast study's values).
ALPHA = 0.5
LAM_BIAS = 0.01


def reconstruct_dip(raw: RawData, prior: np.ndarray | None, *, fusion: bool = True,
                    learning_rate: float, iterations: int, lam_dtv: float = 0.0,
                    lam_gc: float = 0.0, lam_bias: float = LAM_BIAS, base: int = 8,
                    levels: int = 4, window: int = 16, seed: int = 0, device: str = "cpu",
                    progress: bool = False) -> tuple[np.ndarray, dict]:
    """Fit one deep image prior per slice of a 2D scan for ``iterations`` iterations.

    Parameters
    ----------
    raw : RawData
        2D (multi-slice) non-Cartesian scan.
    prior : ndarray, shape ``(n_slices, H, W)``, optional
        The proton image of every slice; needed by DIP-Fusion (``fusion=True``).
    fusion : bool
        DIP-Fusion (dTV and gradient consistency with the fused prior, bias field) or the
        plain DIP (data term only).
    learning_rate, iterations : float, int
        Adam's step and the fixed number of iterations (the output is the last iterate).
    lam_dtv, lam_gc, lam_bias : float
        λ1, λ2, λ3 of :mod:`nacode.denoise.dip`.
    base, levels, window, seed : int
        Network width and depth, ES-WMV window (reported only), random seed.

    Returns
    -------
    image : ndarray, shape (n_slices, H, W), float64
        Magnitude of the last iterate (for DIP-Fusion the network's image ``x`` of the model
        ``A S (b ⊙ x)``, i.e. without the fitted bias field ``b``).
    info : dict
        The settings, the fit's wall time, coils and whitening.
    """
    import torch
    from scipy.ndimage import gaussian_filter

    from nacode.denoise.dip import DIPConfig, fit
    from nacode.denoise.priors import fuse
    from nacode.physics.coils import walsh_maps
    from nacode.physics.nufft import gridding
    from nacode.physics.toeplitz import SenseNormal
    from nacode.recon.cs import tv_recon_multicoil
    from nacode.recon.raw import LAMDA, prepare, scan_info

    if len(raw.matrix) != 2:
        raise ValueError("DIP and DIP-Fusion reconstruct 2D slices; for a 3D scan use "
                         "--method dtv (directional TV) or cs")
    if iterations < 1 or learning_rate <= 0:
        raise ValueError(f"need ≥ 1 iteration and a positive learning rate, got {iterations} "
                         f"and {learning_rate}")
    n_slices = raw.kspace.shape[0]
    if fusion and (prior is None or np.shape(prior) != (n_slices, *raw.matrix)):
        raise ValueError(f"DIP-Fusion needs --prior, a proton image of shape "
                         f"{(n_slices, *raw.matrix)} on the reconstruction grid; got "
                         f"{None if prior is None else np.shape(prior)}")
    kspace, covariance, traj, weights = prepare(raw)
    maps, sodium, scales = [], [], []
    for s in range(n_slices):
        coil_images = gridding(kspace[s], traj, weights)
        slice_maps = walsh_maps(coil_images)
        combined = (slice_maps.conj() * coil_images).sum(0)
        # the network's image is real: the maps carry the combined image's (smoothed) phase
        phase = np.angle(gaussian_filter(combined.real, 1.0)
                         + 1j * gaussian_filter(combined.imag, 1.0))
        maps.append(slice_maps * np.exp(1j * phase))
        # the breast study's units: the gridded image's 99th percentile is 1
        scales.append(float(np.percentile(np.abs(combined), 99)) or 1.0)
        if fusion:
            sodium.append(np.abs(tv_recon_multicoil(kspace[s], traj, weights, slice_maps,
                                                    LAMDA, max_iter=50)))
    as_t = {"device": device}
    term = SenseNormal(traj.coord.reshape(-1, 2),
                       torch.as_tensor(np.stack(maps).astype(np.complex64), **as_t),
                       torch.as_tensor(weights.reshape(-1).astype(np.float32), **as_t),
                       torch.as_tensor((kspace.reshape(n_slices, raw.n_coils, -1)
                                        / np.array(scales)[:, None, None])
                                       .astype(np.complex64), **as_t))
    fields = None
    if fusion:
        fields = fuse(torch.as_tensor(np.asarray(prior, np.float32), **as_t),
                      torch.as_tensor(np.stack(sodium).astype(np.float32), **as_t),
                      alpha=ALPHA)
    config = DIPConfig(max_iter=iterations, learning_rate=learning_rate, base=base,
                       levels=levels, window=window, patience=None, seed=seed,
                       lam_dtv=lam_dtv if fusion else 0.0, lam_gc=lam_gc if fusion else 0.0,
                       lam_bias=lam_bias if fusion else 0.0, fit_bias=fusion)
    result = fit(term, config, fields, progress=progress)
    # the network's last output: the model is A S (b ⊙ x), so x is already bias-corrected
    image = result.final.astype(np.float64) * np.array(scales)[:, None, None]
    info = {**scan_info(raw, covariance, "dip-fusion" if fusion else "dip"),
            "learning_rate": learning_rate, "iterations": iterations, "seed": seed,
            "base": base, "levels": levels, "fit_s": round(result.seconds, 1)}
    if fusion:
        info.update(lam_dtv=lam_dtv, lam_gc=lam_gc, lam_bias=lam_bias, alpha=ALPHA)
    return np.abs(image), info
