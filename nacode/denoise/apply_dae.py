"""``nacode denoise --method dae``: the brain study's 3D patch autoencoder on a user's volume.

The input is one **aTSC map in mM** (apparent tissue sodium concentration, what
``nacode tsc`` writes: a calibrated volume, not raw signal), stored as a 3D NIfTI or ``.npy``
array; singleton axes such as the fourth of a ``(60, 60, 60, 1)`` NIfTI are dropped and
restored on writing. The volume is divided by :data:`~nacode.denoise.dae.NORM_MM` (the units
the weights were trained in), denoised inside a mask by
:func:`~nacode.denoise.dae.denoise_volume` and multiplied back; voxels outside the mask keep
their input values exactly. The weights were trained on 4 mm isotropic volumes
(:data:`~nacode.denoise.dae.VOXEL_MM`): another voxel size is denoised with a one-line
warning on stderr, as is a volume whose median inside the mask is far from a brain's aTSC.
The result is written in the input's format and layout with provenance (model file and
sha256, mask source, warnings). Like :mod:`nacode.denoise.apply`, this layer knows no study:
the command line picks the weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

#: Relative difference from the training voxel size beyond which a warning is printed.
VOXEL_TOLERANCE = 0.10
#: Median aTSC (mM) inside the mask outside which the input is probably not in mM (brain
#: tissue is 30–40 mM, CSF 140 mM).
PLAUSIBLE_MM = (10.0, 200.0)


def auto_mask(volume: np.ndarray) -> tuple[np.ndarray, float]:
    """The voxels above the volume's Otsu threshold, with enclosed holes filled.

    A sodium scan's field of view is mostly air, whose aTSC is noise about 0 mM, while brain
    tissue is 30–40 mM and CSF 140 mM: the histogram is bimodal and Otsu's threshold, which
    needs no parameter, falls between air and tissue. Filling holes (in 3D) adds dark voxels
    enclosed by tissue. On virtual brain scans at the training SNR (seeds 3000 and 3100, SNR
    10) the threshold was 19 and 22 mM and the mask held 98.6 and 98.7 % of the brain's
    voxels (the rest: partial volume at the brain's edge), plus 6–8 % more voxels of scalp
    and the calibration tubes. A volume cropped tightly to the brain, with little air, can
    put the threshold between tissue and CSF instead: give such a volume a mask (``--mask``).

    Parameters
    ----------
    volume : ndarray, shape (X, Y, Z)
        aTSC in mM.

    Returns
    -------
    mask : ndarray of bool, shape (X, Y, Z)
    threshold : float
        Otsu's threshold, mM.
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    if volume.max() == volume.min():
        return np.zeros(volume.shape, bool), float(volume.max())
    threshold = float(threshold_otsu(volume))
    return ndimage.binary_fill_holes(volume > threshold), threshold


def read_mask(path: str | Path, shape: tuple[int, ...]) -> np.ndarray:
    """A mask file (NIfTI or ``.npy``; nonzero = denoise) of the volume's ``shape``."""
    from nacode.io.images import read_volume

    mask, _ = read_volume(path)
    if mask.shape != tuple(shape):
        raise ValueError(f"{path}: mask of shape {mask.shape} for a volume of shape "
                         f"{tuple(shape)}; give a mask of the volume's shape")
    return mask != 0


def voxel_mm(layout) -> tuple[float, ...] | None:
    """A NIfTI's voxel size (mm) along its non-singleton axes, or None (``.npy``).

    The header's spatial unit is honoured (metres and microns converted; unknown read as mm).
    """
    if layout.fmt != "nifti":
        return None
    header = layout.original.header
    scale = {"meter": 1000.0, "micron": 0.001}.get(header.get_xyzt_units()[0], 1.0)
    zooms = header.get_zooms()
    return tuple(float(zooms[a]) * scale for a, n in enumerate(layout.shape) if n > 1)


def describe(shape: tuple[int, ...], voxel: tuple[float, ...] | None) -> str:
    """E.g. ``"60 × 60 × 60, 4.0 mm"`` (``"…, voxel size not recorded"`` for ``.npy``)."""
    size = " × ".join(map(str, shape))
    if voxel is None:
        return f"{size}, voxel size not recorded"
    if max(voxel) - min(voxel) < 1e-3 * max(voxel):
        return f"{size}, {voxel[0]:.1f} mm"
    return f"{size}, {' × '.join(f'{v:.1f}' for v in voxel)} mm"


def warnings_for(volume: np.ndarray, mask: np.ndarray, voxel: tuple[float, ...] | None
                 ) -> list[str]:
    """One line per way the input differs from what the weights were trained on."""
    from nacode.denoise.dae import VOXEL_MM

    out = []
    if voxel is not None and max(abs(v / VOXEL_MM - 1) for v in voxel) > VOXEL_TOLERANCE:
        out.append(f"voxels of {' × '.join(f'{v:.3g}' for v in voxel)} mm; the brain "
                   f"autoencoder was trained at {VOXEL_MM:g} mm isotropic and is untested at "
                   f"other sizes (resample to {VOXEL_MM:g} mm for the trained behaviour)")
    median = float(np.median(volume[mask]))
    if not PLAUSIBLE_MM[0] <= median <= PLAUSIBLE_MM[1]:
        out.append(f"median {median:.3g} inside the mask; the brain autoencoder expects an "
                   "aTSC map in mM (brain tissue 30–40 mM): is the input calibrated?")
    return out


def run_dae(input_path: str | Path, output_path: str | Path, model_path: str | Path, *,
            digest: str | None = None, mask_path: str | Path | None = None,
            label: str = "dae", device: str = "cpu", tubes: str | None = None) -> dict:
    """Denoise an aTSC volume (mM) with the :class:`~nacode.denoise.dae.PatchDAE` weights.

    Parameters
    ----------
    input_path, output_path : path-like
        NIfTI or ``.npy`` volume in (aTSC, mM; see the module notes), and where the result
        goes (same format). The caller has checked the output path
        (:func:`nacode.results.check_output`).
    model_path : path-like
        ``.safetensors`` weights of a PatchDAE; checked against ``digest`` (sha256) if given.
    mask_path : path-like, optional
        Voxels to denoise (nonzero), same shape as the volume; default :func:`auto_mask`.
    label, device : str
        How the provenance names the method; where the network runs.
    tubes : str, optional
        The tube report (:func:`nacode.recon.tsc.tube_report`): ``"auto"``, a label image of
        the volume's shape, or ``"none"``/None.

    Returns
    -------
    dict
        input, output, volume (:func:`describe`), shape, voxel_mm, mask, mask_voxels,
        model, checksum_verified, warnings, method, tubes (a
        :class:`~nacode.recon.tsc.TubeReport`).

    Raises
    ------
    ValueError
        One line, nothing written: not a 3D volume (a 2D image, a stack of fewer than five
        slices, a series of volumes), a mask of another shape or empty, unreadable input,
        weights that fail their checksum, or a non-finite result.
    """
    from nacode.denoise.dae import NORM_MM, PATCH, PatchDAE, denoise_volume
    from nacode.denoise.trainer import load_weights
    from nacode.io.images import read_volume, to_stack, write_images
    from nacode.manifest import sha256_file

    volume, layout = read_volume(input_path)
    if volume.ndim < 3 or min(volume.shape) < PATCH:
        slices = "" if volume.ndim < 3 else (
            f": {min(volume.shape)} slices, fewer than the {PATCH}-voxel patch")
        raise ValueError(f"the brain autoencoder denoises 3D volumes; {input_path} holds 2D "
                         f"images (shape {layout.shape}{slices})")
    if volume.ndim > 3:
        raise ValueError(f"the brain autoencoder denoises one 3D volume; {input_path} holds a "
                         f"{volume.ndim}D array of shape {layout.shape}; give one volume")
    if mask_path is not None:
        mask, source = read_mask(mask_path, volume.shape), f"file {Path(mask_path).name}"
    else:
        mask, threshold = auto_mask(volume)
        source = f"automatic: above the Otsu threshold {threshold:.4g} mM, holes filled"
    if not mask.any():
        raise ValueError(f"{mask_path or input_path}: the mask is empty (a constant volume?); "
                         "nothing to denoise")
    model = load_weights(PatchDAE(), Path(model_path), digest)
    voxel = voxel_mm(layout)
    warnings = warnings_for(volume, mask, voxel)
    for line in warnings:
        print(f"nacode denoise: warning: {line}", file=sys.stderr)
    # the network is fully convolutional over a zero-padded copy, so mask voxels at the edge
    # need no padding here; voxels outside the mask keep the input's exact values
    denoised = denoise_volume(model, (volume / NORM_MM).astype(np.float32), mask,
                              device=device).astype(np.float64) * NORM_MM
    out = np.where(mask, denoised, volume)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{model_path}: the network gave NaN or infinity (are the weights "
                         "finite?); nothing was written")
    from nacode.recon.tsc import tube_report

    report = tube_report(to_stack(volume, layout), to_stack(out, layout), layout, tubes)
    record = {"model": Path(model_path).name, "sha256": digest or sha256_file(model_path),
              "units": f"aTSC in mM (the network saw mM / {NORM_MM:g})", "mask": source,
              "mask_voxels": int(mask.sum()), "voxel_mm": list(voxel) if voxel else None,
              "warnings": warnings, **report.record()}
    written = write_images(output_path, to_stack(out, layout), layout,
                           {"method": label, "input": str(input_path), **record})
    return {"input": str(input_path), "output": str(written), "method": label,
            "volume": describe(volume.shape, voxel), "shape": volume.shape,
            "voxel_mm": voxel, "mask": source, "mask_voxels": int(mask.sum()),
            "model": str(model_path), "checksum_verified": digest is not None,
            "warnings": warnings, "tubes": report}
