"""``nacode denoise``: apply the calf CNN to a researcher's own sodium magnitude images.

Reads a file with :func:`nacode.io.images.read_images` (``.npy``, NIfTI, DICOM; the layout it
found is reported), normalises each image to [0, 1] by its own minimum and range (the paper's
normalisation), applies the network, undoes the normalisation and writes the result in the
input's format and layout with :func:`nacode.io.images.write_images` (atomically, with
provenance). Anything it cannot honour is refused with a one-line ``ValueError`` that names
the file, and nothing is written. This layer knows no study: which weights stand for which
number of averages is the caller's (the command line's) choice. ``--method dae``, the brain
study's autoencoder on a 3D aTSC volume, is :mod:`nacode.denoise.apply_dae`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nacode.results import check_output


def nearest_nsa(nsa: int, available) -> int:
    """The trained NSA closest to ``nsa`` (ties go to the larger)."""
    if int(nsa) != nsa or nsa < 1:
        raise ValueError(f"--nsa must be a positive number of averages, got {nsa!r}")
    return min(sorted(available, reverse=True), key=lambda n: abs(n - nsa))


#: ``nacode denoise --method``: the calf CNN and the book's classical baselines on 2D images,
#: and the brain study's 3D patch autoencoder on aTSC volumes (:mod:`nacode.denoise.apply_dae`).
METHODS = ("cnn", "nlm", "tv", "gaussian", "dae")
#: Default strength of each classical method on images normalised to [0, 1]: Gaussian σ in
#: pixels; TV weight (scikit-image's default); NLM h as a multiple of the noise SD estimated
#: from each image (0.8, scikit-image's guidance for its fast mode).
STRENGTH = {"gaussian": 1.0, "tv": 0.1, "nlm": 0.8}
#: Images per step of the progress bar.
CHUNK = 64


def classical(method: str, strength: float | None = None):
    """``f(images (n, H, W) in [0, 1]) → (n, H, W)`` for a classical method of :data:`METHODS`."""
    from nacode.denoise.classic import gaussian, nlm

    value = STRENGTH[method] if strength is None else float(strength)
    if value <= 0:
        raise ValueError(f"--strength must be > 0, got {value}")
    if method == "gaussian":
        return lambda images: gaussian(images, value)
    if method == "tv":
        from skimage.restoration import denoise_tv_chambolle

        return lambda images: np.stack([denoise_tv_chambolle(im, weight=value) for im in images])

    def apply_nlm(images):
        from skimage.restoration import estimate_sigma

        return np.concatenate([nlm(im[None], max(value * float(estimate_sigma(im)), 1e-6))
                               for im in images])
    return apply_nlm


def denoise_stack(stack: np.ndarray, model, *, device: str = "cpu",
                  progress: bool = False) -> np.ndarray:
    """Normalise each image by its min and range, denoise, and map back to input units.

    ``model`` is a residual network (run by :func:`nacode.denoise.trainer.denoise` on
    ``device``) or any callable on normalised ``(n, H, W)`` stacks (:func:`classical`).
    A constant image (no range to normalise by, nothing to denoise) is returned unchanged.
    A non-finite result (e.g. from a weight file holding NaN) raises ``ValueError``.
    ``progress`` shows a tqdm bar over chunks of :data:`CHUNK` images.
    """
    import torch
    from tqdm.auto import tqdm

    from nacode.denoise.trainer import denoise

    def apply(images):
        if isinstance(model, torch.nn.Module):
            return denoise(model, images, device=device)
        return model(images)

    low = stack.min(axis=(1, 2), keepdims=True)
    span = stack.max(axis=(1, 2), keepdims=True) - low
    constant = span[:, 0, 0] == 0
    out = np.array(stack, dtype=np.float64)
    if (~constant).any():
        varying = stack[~constant]
        normed = ((varying - low[~constant]) / span[~constant]).astype(np.float32)
        starts = range(0, len(normed), CHUNK)
        done = np.concatenate([apply(normed[i:i + CHUNK]) for i in tqdm(
            starts, desc="denoising", unit="chunk", disable=not progress or len(starts) < 2)])
        out[~constant] = done.astype(np.float64) * span[~constant] + low[~constant]
    if not np.all(np.isfinite(out)):
        raise ValueError("the network gave NaN or infinity (are the weights finite?); "
                         "nothing was written")
    return out


def run(input_path: str | Path, output_path: str | Path, model_path: str | Path | None, *,
        digest: str | None = None, method: str = "cnn", strength: float | None = None,
        label: str | None = None, device: str = "cpu", progress: bool = False,
        force: bool = False, slice_axis: int | None = None,
        mask_path: str | Path | None = None, tubes: str | None = None) -> dict:
    """Denoise a file with the ResidualDnCNN weights at ``model_path`` or a classical method.

    ``method="dae"`` applies the PatchDAE weights at ``model_path`` to a 3D aTSC volume in mM
    inside ``mask_path`` (default an automatic mask) and returns
    :func:`nacode.denoise.apply_dae.run_dae`'s dict.

    Parameters
    ----------
    input_path, output_path : path-like
        Image file (or DICOM series folder) in, and where the result goes (same format).
    model_path : path-like or None
        ``.safetensors`` weights for ``method="cnn"`` or ``"dae"``; checked against
        ``digest`` (sha256) when given.
    method : {"cnn", "nlm", "tv", "gaussian", "dae"}
        See :data:`METHODS` and :data:`STRENGTH` (``strength`` overrides the latter).
    label : str, optional
        How the provenance names the method (default ``method``).
    device, progress : str, bool
        Where the network runs; a tqdm bar.
    force : bool
        Allow ``output_path`` to be the input.
    slice_axis : int, optional
        Axis the images lie along (default: :func:`nacode.io.images.choose_slice_axis`).
    mask_path : path-like, optional
        ``method="dae"``: voxels to denoise (nonzero), the volume's shape.
    tubes : str, optional
        The tube report (:func:`nacode.recon.tsc.tube_report`): ``"auto"``, a label image
        of the stored image's shape, or ``"none"``/None (default: no report).

    Returns
    -------
    dict
        input, output, images, layout, model, checksum_verified, tubes (a
        :class:`~nacode.recon.tsc.TubeReport`, also in the provenance sidecar).
    """
    from nacode.denoise.dncnn import ResidualDnCNN
    from nacode.denoise.trainer import load_weights
    from nacode.io.images import read_images, write_images
    from nacode.manifest import sha256_file

    if method not in METHODS:
        raise ValueError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    check_output(input_path, output_path, force=force)
    if method == "dae":
        from nacode.denoise.apply_dae import run_dae

        if model_path is None:
            raise ValueError("--method dae needs weights (--fold or --model)")
        return run_dae(input_path, output_path, model_path, digest=digest,
                       mask_path=mask_path, label=label or method, device=device,
                       tubes=tubes)
    if method == "cnn":
        if model_path is None:
            raise ValueError("--method cnn needs weights (--nsa or --model)")
        denoiser = load_weights(ResidualDnCNN(), Path(model_path), digest)
        record = {"model": Path(model_path).name, "sha256": digest or sha256_file(model_path)}
    else:
        denoiser = classical(method, strength)
        record = {"strength": STRENGTH[method] if strength is None else float(strength)}
    stack, layout = read_images(input_path, slice_axis=slice_axis)
    out = denoise_stack(stack, denoiser, device=device, progress=progress)
    from nacode.recon.tsc import tube_report

    report = tube_report(stack, out, layout, tubes)
    written = write_images(output_path, out, layout, {
        "method": label or method, "input": str(input_path), **record, **report.record()})
    return {"input": str(input_path), "output": str(written), "images": len(stack),
            "layout": layout.describe(), "method": label or method,
            "model": str(model_path) if method == "cnn" else None,
            "checksum_verified": method == "cnn" and digest is not None, "tubes": report}
