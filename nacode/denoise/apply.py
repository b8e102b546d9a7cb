"""``nacode denoise``: apply the calf CNN to a researcher's own sodium magnitude images.

Reads a file with :func:`nacode.io.images.read_images` (``.npy``, NIfTI, DICOM; the layout it
found is reported), normalises each image to [0, 1] by its own minimum and range (the paper's
normalisation), applies the network, undoes the normalisation and writes the result in the
input's format and layout with :func:`nacode.io.images.write_images` (atomically, with
provenance). Anything it cannot honour is refused with a one-line ``ValueError`` that names
the file, and nothing is written. This layer knows no study: which weights stand for which
number of averages is the caller's (the command line's) choice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def nearest_nsa(nsa: int, available) -> int:
    """The trained NSA closest to ``nsa`` (ties go to the larger)."""
    if int(nsa) != nsa or nsa < 1:
        raise ValueError(f"--nsa must be a positive number of averages, got {nsa!r}")
    return min(sorted(available, reverse=True), key=lambda n: abs(n - nsa))


def denoise_stack(stack: np.ndarray, model) -> np.ndarray:
    """Normalise each image by its min and range, denoise, and map back to input units.

    A constant image (no range to normalise by, nothing to denoise) is returned unchanged.
    A non-finite result (e.g. from a weight file holding NaN) raises ``ValueError``.
    """
    from nacode.denoise.trainer import denoise

    low = stack.min(axis=(1, 2), keepdims=True)
    span = stack.max(axis=(1, 2), keepdims=True) - low
    constant = span[:, 0, 0] == 0
    out = np.array(stack, dtype=np.float64)
    if (~constant).any():
        varying = stack[~constant]
        normed = ((varying - low[~constant]) / span[~constant]).astype(np.float32)
        out[~constant] = denoise(model, normed).astype(np.float64) * span[~constant] + \
            low[~constant]
    if not np.all(np.isfinite(out)):
        raise ValueError("the network gave NaN or infinity (are the weights finite?); "
                         "nothing was written")
    return out


def check_output(input_path: str | Path, output_path: str | Path, *, force: bool = False
                 ) -> None:
    """Refuse, before any work, an output that is the input (unless ``force``), a folder, or
    in a folder that cannot be written."""
    import os

    src, dst = Path(input_path), Path(output_path)
    if src.is_dir():  # a DICOM series: written as a new folder
        if dst.exists():
            raise ValueError(f"{dst}: exists; a series is written into a new folder")
    elif dst.is_dir():
        raise ValueError(f"{dst}: is a folder; give an output file name")
    same = dst.exists() and src.exists() and os.path.samefile(src, dst)
    if same and not force:
        raise ValueError(f"{dst}: is the input; give another output file (or --force to "
                         "overwrite the input)")
    folder = dst.parent if str(dst.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"{dst}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{dst}: folder {folder} is not writable; choose another output")


def run(input_path: str | Path, output_path: str | Path, model_path: str | Path, *,
        digest: str | None = None, method: str = "cnn", force: bool = False,
        slice_axis: int | None = None) -> dict:
    """Denoise a file with the ResidualDnCNN weights at ``model_path``.

    Parameters
    ----------
    input_path, output_path : path-like
        Image file in, and where the result goes (same format).
    model_path : path-like
        ``.safetensors`` weights; checked against ``digest`` (sha256) when given.
    method : str
        Recorded in the provenance.
    force : bool
        Allow ``output_path`` to be the input.
    slice_axis : int, optional
        Axis the images lie along (default: :func:`nacode.io.images.choose_slice_axis`).

    Returns
    -------
    dict
        input, output, images, layout, model, checksum_verified.
    """
    from nacode.denoise.dncnn import ResidualDnCNN
    from nacode.denoise.trainer import load_weights
    from nacode.io.images import read_images, write_images
    from nacode.manifest import sha256_file

    check_output(input_path, output_path, force=force)
    stack, layout = read_images(input_path, slice_axis=slice_axis)
    model = load_weights(ResidualDnCNN(), Path(model_path), digest)
    out = denoise_stack(stack, model)
    written = write_images(output_path, out, layout, {
        "method": method, "input": str(input_path), "model": Path(model_path).name,
        "sha256": digest or sha256_file(model_path)})
    return {"input": str(input_path), "output": str(written), "images": len(stack),
            "layout": layout.describe(), "model": str(model_path),
            "checksum_verified": digest is not None}
