"""``nacode denoise``: apply the calf CNN to a researcher's own sodium magnitude images.

Reads a 2D magnitude image or a stack of them from ``.npy``, NIfTI (``.nii``/``.nii.gz``) or
DICOM, normalises each image to [0, 1] by its own minimum and range (the paper's
normalisation), applies the network trained for the nearest number of averages, undoes the
normalisation and writes the result in the input's format, atomically. Anything it cannot
honour — complex data, NaN or infinity, the wrong number of dimensions, a weight file whose
checksum differs from its manifest entry — is refused with a one-line ``ValueError`` that
names the file, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NIFTI_SUFFIXES = (".nii", ".nii.gz")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _suffix_format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    return "dicom" if name.endswith((".dcm", ".ima")) else None


def _format(path: Path) -> str:
    from nacode.manifest import is_dicom

    fmt = _suffix_format(path) or ("dicom" if is_dicom(path) else None)
    if fmt is None:
        raise ValueError(f"{path}: unknown format; give a .npy, .nii/.nii.gz or DICOM file")
    return fmt


def read_images(path: str | Path):
    """Read images; return ``(stack (n, H, W) float64, format, context for writing)``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give one image file (.npy, .nii/.nii.gz or "
                         "DICOM)")
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    fmt = _format(path)
    try:
        if fmt == "npy":
            data, context = np.load(path, allow_pickle=False), None
        elif fmt == "nifti":
            import nibabel

            image = nibabel.load(str(path))
            data, context = np.asanyarray(image.dataobj), image
        else:
            import pydicom

            context = pydicom.dcmread(path)
            data = context.pixel_array
    except ValueError as exc:
        raise ValueError(f"{path}: unreadable {fmt} file ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # nibabel/pydicom raise a variety of errors on corrupt files
        raise ValueError(f"{path}: corrupt or truncated {fmt} file ({type(exc).__name__}); "
                         "check the file or export it again") from None
    if np.iscomplexobj(data):
        raise ValueError(f"{path}: complex data; give magnitude images (np.abs) — the network "
                         "was trained on magnitude")
    data = np.asarray(data, dtype=np.float64)
    if data.ndim not in (2, 3):
        raise ValueError(f"{path}: {data.ndim}D array of shape {data.shape}; expected one 2D "
                         "image (H, W) or a stack (H, W, n) for NIfTI/DICOM, (n, H, W) for .npy")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: contains NaN or infinity; mask or fill them first")
    if data.size and np.abs(data).max() > FLOAT32_MAX:
        raise ValueError(f"{path}: values up to {np.abs(data).max():.3g} exceed float32's range "
                         f"(±{FLOAT32_MAX:.3g}), in which the result is written; rescale the "
                         "image first")
    stack = data[None] if data.ndim == 2 else (data if fmt == "npy" else np.moveaxis(data, -1, 0))
    if min(stack.shape[1:]) < 8:
        raise ValueError(f"{path}: images of {stack.shape[1:]} pixels are too small (≥ 8 × 8)")
    return stack, fmt, (context, data.ndim)


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


def write_images(path: str | Path, stack: np.ndarray, fmt: str, context) -> Path:
    """Write a stack in the input's format and layout, atomically."""
    from nacode.results import atomic_write

    path = Path(path)
    original, ndim = context
    if (_suffix_format(path) or "dicom") != fmt:
        raise ValueError(f"{path}: output must have the input's format ({fmt})")
    data = stack[0] if ndim == 2 else (stack if fmt == "npy" else np.moveaxis(stack, 0, -1))
    with atomic_write(path, "wb") as handle:
        if fmt == "npy":
            np.save(handle, data.astype(np.float32))
        elif fmt == "nifti":
            import nibabel

            image = nibabel.Nifti1Image(data.astype(np.float32), original.affine,
                                        original.header)
            image.set_data_dtype(np.float32)
            handle.write(image.to_bytes() if not path.name.endswith(".gz")
                         else _gzip(image.to_bytes()))
        else:
            from pydicom.uid import generate_uid

            ds = original.copy()
            dtype = ds.pixel_array.dtype
            info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
            values = np.rint(data) if info is not None else data
            if info is not None:
                values = np.clip(values, info.min, info.max)
            ds.PixelData = values.astype(dtype).tobytes()
            ds.SOPInstanceUID = generate_uid()
            if hasattr(ds, "file_meta"):
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.SeriesDescription = f"{getattr(ds, 'SeriesDescription', '')} nacode denoised"
            ds.save_as(handle, enforce_file_format=True)
    return path


def _gzip(raw: bytes) -> bytes:
    import gzip

    return gzip.compress(raw, mtime=0)


def check_output(input_path: str | Path, output_path: str | Path, *, force: bool = False
                 ) -> None:
    """Refuse, before any work, an output that is the input (unless ``force``), a folder, or
    in a folder that cannot be written."""
    import os

    src, dst = Path(input_path), Path(output_path)
    if dst.is_dir():
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


def run(input_path: str | Path, output_path: str | Path, nsa: int, model_path=None, *,
        force: bool = False) -> dict:
    """Denoise a file with the calf CNN for the nearest NSA (or the given weights)."""
    from nacode.denoise.dncnn import ResidualDnCNN
    from nacode.denoise.trainer import load_weights
    from nacode.studies import calf, calf_data

    check_output(input_path, output_path, force=force)
    stack, fmt, context = read_images(input_path)
    chosen = nearest_nsa(nsa, calf_data.NSAS)
    path = Path(model_path) if model_path else \
        calf.WEIGHTS_DIR / f"{calf.model_name(chosen)}.safetensors"
    digest = calf.manifest_digests().get(path.resolve())
    model = load_weights(ResidualDnCNN(), path, digest)
    out = denoise_stack(stack, model)
    written = write_images(output_path, out, fmt, context)
    return {"input": str(input_path), "output": str(written), "images": len(stack),
            "nsa": chosen, "model": str(path), "checksum_verified": digest is not None}
