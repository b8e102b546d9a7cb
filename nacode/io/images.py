"""Images as scanners and pipelines write them: ``.npy``, NIfTI and DICOM, in and out.

:func:`read_images` turns a file into a stack of 2D images ``(n, H, W)`` float64 and a
:class:`Layout` that says where the slices were; :func:`write_images` writes a stack back in
the input's format and layout, atomically, with provenance (NIfTI ``descrip``, DICOM tags, a
JSON sidecar). :func:`read_volume` reads a NIfTI or ``.npy`` file as one array without its
singleton axes (a 3D volume), with the layout that writes it back. Layouts:

- **singleton axes** are dropped for the decision and restored on writing: a NIfTI of shape
  ``(1, 160, 160)`` is one image;
- **three non-singleton axes**: the slices lie along ``slice_axis`` when given; else, for
  NIfTI and DICOM, along the axis with the fewest voxels when it is the only one of its size
  (a multi-frame DICOM's frames, ``(frames, H, W)``; a NIfTI's ``(H, W, n)``), otherwise
  the last; ``.npy`` stacks are ``(n, H, W)`` (axis 0).

A **DICOM series folder** (one file per slice) is read as one stack, its slices sorted by
their position along the slice normal (ImagePositionPatient · the normal of
ImageOrientationPatient; InstanceNumber where positions are absent), and written as a folder
of the same number of files. DICOM output is a **derived series**: new SeriesInstanceUID and
SOPInstanceUID, SeriesNumber plus 1000, ImageType ``DERIVED\\SECONDARY``, a
DerivationDescription naming nacode, its version and the method; compressed transfer syntaxes
are decoded where pydicom has a decoder and written back uncompressed (explicit VR little
endian).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

NIFTI_SUFFIXES = (".nii", ".nii.gz")
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: What to install for each family of compressed DICOM transfer syntaxes.
DECODERS = {"JPEG-LS": "pip install pylibjpeg pylibjpeg-libjpeg",
            "JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg",
            "JPEG": "pip install pylibjpeg pylibjpeg-libjpeg"}


@dataclass
class Layout:
    """Where the images of a file were: enough to write a stack back the same way.

    Attributes
    ----------
    fmt : {"npy", "nifti", "dicom", "dicom-series"}
    shape : tuple of int
        The array's shape as read.
    slice_axis : int or None
        Axis of ``shape`` along which the images lie (None: one image).
    original : object
        The nibabel image or pydicom dataset (None for ``.npy``; for a series
        ``{"datasets": [...], "names": [...]}`` in slice order).
    """

    fmt: str
    shape: tuple[int, ...]
    slice_axis: int | None
    original: Any = None

    def describe(self) -> str:
        """E.g. ``"12 images along axis 0 of (12, 80, 80)"``."""
        if self.fmt == "dicom-series":
            return f"a DICOM series of {self.shape[0]} slices of {self.shape[1:]}"
        if self.slice_axis is None:
            return f"1 image of {self.shape}"
        return (f"{self.shape[self.slice_axis]} images along axis {self.slice_axis} of "
                f"{self.shape}")


def suffix_format(path: Path) -> str | None:
    """The format a file name implies, or None."""
    name = path.name.lower()
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    return "dicom" if name.endswith((".dcm", ".ima")) else None


def _format(path: Path) -> str:
    from nacode.manifest import is_dicom

    fmt = suffix_format(path) or ("dicom" if is_dicom(path) else None)
    if fmt is None:
        raise ValueError(f"{path}: unknown format; give a .npy, .nii/.nii.gz or DICOM file")
    return fmt


def choose_slice_axis(shape: tuple[int, ...], fmt: str, slice_axis: int | None = None
                      ) -> int | None:
    """The axis the images lie along (None for one image); see the module notes."""
    axes = [a for a, n in enumerate(shape) if n > 1]
    if slice_axis is not None:
        axis = slice_axis % len(shape) if -len(shape) <= slice_axis < len(shape) else None
        if axis is None or shape[axis] < 1:
            raise ValueError(f"--slice-axis {slice_axis} is not an axis of shape {shape}")
        if len([a for a in axes if a != axis]) != 2:
            raise ValueError(f"--slice-axis {slice_axis} leaves {shape} without 2D images")
        return axis
    if len(axes) == 2:
        return None
    if len(axes) != 3:
        raise ValueError(f"{len(axes)} non-singleton axes in shape {shape}; expected one 2D "
                         "image or a stack of them")
    if fmt == "npy":
        return axes[0]
    sizes = [shape[a] for a in axes]
    fewest = min(sizes)
    if sizes.count(fewest) == 1 and len(set(sizes)) == 2:
        return axes[sizes.index(fewest)]
    return axes[-1]


def _read_dicom(path: Path):
    import pydicom

    ds = pydicom.dcmread(path)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        data = ds.pixel_array
    except Exception:
        if syntax is not None and syntax.is_compressed:
            fix = next((v for k, v in DECODERS.items() if k in syntax.name),
                       "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg")
            raise ValueError(f"{path}: compressed DICOM ({syntax.name}) and no decoder for it "
                             f"is installed; {fix}") from None
        raise
    return data, ds


def read_images(path: str | Path, *, slice_axis: int | None = None
                ) -> tuple[np.ndarray, Layout]:
    """Read a file's magnitude images.

    Parameters
    ----------
    path : path-like
        ``.npy``, ``.nii``/``.nii.gz``, DICOM (single- or multi-frame) or a folder holding
        one DICOM series (:func:`read_series`).
    slice_axis : int, optional
        Axis of the stored array the images lie along (default: see the module notes).

    Returns
    -------
    stack : ndarray, shape (n, H, W), float64
    layout : Layout

    Raises
    ------
    ValueError
        One line naming the file: missing, a folder, unreadable, corrupt, compressed without
        a decoder, complex, NaN/infinite, beyond float32, no 2D images, or images under 8 × 8.
    """
    path = Path(path)
    if path.is_dir():
        return read_series(path)
    data, fmt, original = _load(path)
    try:
        axis = choose_slice_axis(data.shape, fmt, slice_axis)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    layout = Layout(fmt, tuple(data.shape), axis, original)
    stack = to_stack(data, layout)
    if min(stack.shape[1:]) < 8:
        raise ValueError(f"{path}: images of {stack.shape[1:]} pixels are too small (≥ 8 × 8)")
    return stack, layout


def _load(path: Path) -> tuple[np.ndarray, str, Any]:
    """A file's stored array (float64, checked finite and real), its format and original."""
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    fmt = _format(path)
    try:
        if fmt == "npy":
            data, original = np.load(path, allow_pickle=False), None
        elif fmt == "nifti":
            import nibabel

            original = nibabel.load(str(path))
            data = np.asanyarray(original.dataobj)
        else:
            data, original = _read_dicom(path)
    except ValueError as exc:
        message = str(exc).splitlines()[0]
        raise ValueError(message if message.startswith(str(path)) else
                         f"{path}: unreadable {fmt} file ({message})") from None
    except Exception as exc:  # nibabel/pydicom raise a variety of errors on corrupt files
        raise ValueError(f"{path}: corrupt or truncated {fmt} file ({type(exc).__name__}); "
                         "check the file or export it again") from None
    if np.iscomplexobj(data):
        raise ValueError(f"{path}: complex data; give magnitude images (np.abs) — the network "
                         "was trained on magnitude")
    data = np.asarray(data, dtype=np.float64)
    _check_values(path, data)
    return data, fmt, original


def read_volume(path: str | Path) -> tuple[np.ndarray, Layout]:
    """A NIfTI or ``.npy`` file's array without its singleton axes, and its :class:`Layout`.

    The array is float64 in the stored axis order; callers check its ``ndim`` (3 for a volume,
    whose ``layout.slice_axis`` is :func:`choose_slice_axis`'s; otherwise None). A DICOM file
    or folder is refused (convert it to NIfTI so that the voxel size travels with it), and
    everything :func:`read_images` refuses is refused alike, in one line naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give the volume as one NIfTI (e.g. dcm2niix "
                         "for a DICOM series) or .npy file")
    data, fmt, original = _load(path)
    if fmt == "dicom":
        raise ValueError(f"{path}: DICOM; give the volume as NIfTI (e.g. dcm2niix) or .npy")
    volume = data.reshape([n for n in data.shape if n > 1])
    axis = choose_slice_axis(data.shape, fmt) if volume.ndim == 3 else None
    return volume, Layout(fmt, tuple(data.shape), axis, original)


def _slice_position(ds, default: float) -> float:
    """Position of a slice along its normal (mm), or ``default`` where the tags are absent."""
    try:
        orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
        position = np.asarray(ds.ImagePositionPatient, dtype=float)
    except (AttributeError, ValueError, TypeError):
        return default
    return float(position @ np.cross(orientation[:3], orientation[3:]))


def read_series(folder: str | Path) -> tuple[np.ndarray, Layout]:
    """A folder of single-frame DICOM files of one series as a stack sorted by position.

    Files that are not DICOM are ignored; several series, multi-frame files or images of
    different sizes are refused (one line naming the folder).
    """
    from nacode.manifest import is_dicom

    folder = Path(folder)
    files = sorted(f for f in folder.iterdir() if f.is_file() and is_dicom(f))
    if not files:
        raise ValueError(f"{folder}: is a folder without DICOM files; give an image file or "
                         "a folder holding one DICOM series")
    slices = []
    for f in files:
        try:
            data, ds = _read_dicom(f)
        except ValueError as exc:
            raise ValueError(str(exc).splitlines()[0]) from None
        except Exception as exc:
            raise ValueError(f"{f}: corrupt or truncated dicom file ({type(exc).__name__}); "
                             "check the file or export it again") from None
        if data.ndim != 2:
            raise ValueError(f"{f}: a multi-frame file inside a series folder; give it alone")
        slices.append((data, ds))
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in slices}
    if len(series) > 1:
        raise ValueError(f"{folder}: {len(series)} DICOM series in one folder; give a folder "
                         "holding one series")
    if len({data.shape for data, _ in slices}) > 1:
        raise ValueError(f"{folder}: slices of different sizes in one series")
    order = sorted(range(len(slices)), key=lambda i: (
        _slice_position(slices[i][1], float(getattr(slices[i][1], "InstanceNumber", i) or i)),
        i))
    slices = [slices[i] for i in order]
    stack = np.stack([np.asarray(data, dtype=np.float64) for data, _ in slices])
    _check_values(folder, stack)
    if min(stack.shape[1:]) < 8:
        raise ValueError(f"{folder}: images of {stack.shape[1:]} pixels are too small (≥ 8 × 8)")
    names = [files[i].name for i in order]
    return stack, Layout("dicom-series", tuple(stack.shape), 0,
                         {"datasets": [ds for _, ds in slices], "names": names})


def _check_values(path: Path, data: np.ndarray) -> None:
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: contains NaN or infinity; mask or fill them first")
    if data.size and np.abs(data).max() > FLOAT32_MAX:
        raise ValueError(f"{path}: values up to {np.abs(data).max():.3g} exceed float32's range "
                         f"(±{FLOAT32_MAX:.3g}), in which the result is written; rescale the "
                         "image first")


def to_stored(stack: np.ndarray, layout: Layout) -> np.ndarray:
    """A ``(n, H, W)`` stack in the stored array's shape and axis order (``layout``)."""
    stack = np.asarray(stack)
    if layout.slice_axis is None:
        return stack.reshape(layout.shape)
    moved = [layout.shape[layout.slice_axis],
             *[n for a, n in enumerate(layout.shape) if a != layout.slice_axis]]
    return np.moveaxis(stack.reshape(moved), 0, layout.slice_axis)


def to_stack(array: np.ndarray, layout: Layout) -> np.ndarray:
    """The inverse of :func:`to_stored`: a stored-shape array as the ``(n, H, W)`` stack
    (the images along ``layout.slice_axis``, singleton axes dropped)."""
    array = np.asarray(array).reshape(layout.shape)
    if layout.slice_axis is None:
        return array.reshape(1, *[n for n in layout.shape if n > 1])
    moved = np.moveaxis(array, layout.slice_axis, 0)
    return moved.reshape(moved.shape[0], *[n for n in moved.shape[1:] if n > 1])


def centred_affine(shape: tuple[int, ...], voxel_mm) -> np.ndarray:
    """The 4 × 4 NIfTI affine of a grid of ``voxel_mm`` voxels (scalar or one per axis) whose
    index ``N // 2`` along each axis lies at the origin (the NUFFT's centre)."""
    voxel = np.broadcast_to(np.asarray(voxel_mm, float), (len(shape),))
    affine = np.eye(4)
    affine[:len(shape), :len(shape)] = np.diag(voxel)
    affine[:len(shape), 3] = -voxel * (np.array(shape) // 2)
    return affine


def new_layout(path: str | Path, shape: tuple[int, ...], voxel_mm) -> Layout:
    """The layout of a new image (a reconstruction) of ``shape`` written to ``path``.

    ``.npy`` or NIfTI (affine: ``voxel_mm`` per axis, the grid centre at index N//2 at the
    origin); a 3D volume is a stack along axis 0. DICOM needs an original to derive from.
    """
    fmt = suffix_format(Path(path))
    if fmt not in ("npy", "nifti"):
        raise ValueError(f"{path}: write a reconstruction as .nii, .nii.gz or .npy")
    original = None
    if fmt == "nifti":
        import nibabel

        original = nibabel.Nifti1Image(np.zeros((1,) * len(shape), np.float32),
                                       centred_affine(shape, voxel_mm))
    return Layout(fmt, tuple(shape), 0 if len(shape) == 3 else None, original)


def write_images(path: str | Path, stack: np.ndarray, layout: Layout,
                 provenance: dict | None = None) -> Path:
    """Write ``stack`` (n, H, W) in ``layout``'s format and shape, atomically, with provenance.

    ``provenance`` (method, model, sha256, …) goes to a JSON sidecar ``<path>.json`` beside
    the image, with nacode's version, and to the NIfTI ``descrip`` or the DICOM
    DerivationDescription. Nothing is left behind if either write fails.
    """
    from nacode.provenance import nacode_version
    from nacode.results import atomic_write, write_json

    path = Path(path)
    record = {"nacode": nacode_version(), **(provenance or {}), "layout": layout.describe()}
    summary = (f"nacode {record['nacode']} {record.get('method', '')} "
               f"{str(record.get('sha256', ''))[:12]}").strip()
    if layout.fmt == "dicom-series":
        return _write_series(path, np.asarray(stack), layout, summary, record)
    if (suffix_format(path) or "dicom") != layout.fmt:
        raise ValueError(f"{path}: output must have the input's format ({layout.fmt})")
    data = to_stored(stack, layout)
    with atomic_write(path, "wb") as handle:
        if layout.fmt == "npy":
            np.save(handle, data.astype(np.float32))
        elif layout.fmt == "nifti":
            handle.write(_nifti_bytes(path, data, layout.original, summary))
        else:
            import pydicom

            # dcmwrite, not save_as: it may change the byte order (a big-endian original is
            # written little-endian; its only byte-ordered element, PixelData, is rewritten)
            pydicom.dcmwrite(handle, _derived_dicom(data, layout.original, summary),
                             enforce_file_format=True)
    try:
        write_json(Path(f"{path}.json"), record)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _write_series(folder: Path, stack: np.ndarray, layout: Layout, summary: str,
                  record: dict) -> Path:
    """One derived file per slice into a new folder (built beside it, then renamed)."""
    import shutil
    import tempfile

    import pydicom
    from pydicom.uid import generate_uid

    from nacode.results import _umask, write_json

    if folder.exists():
        raise ValueError(f"{folder}: exists; a series is written into a new folder")
    series_uid = generate_uid()
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for image, ds, name in zip(stack, layout.original["datasets"],
                                   layout.original["names"], strict=True):
            derived = _derived_dicom(image, ds, summary)
            derived.SeriesInstanceUID = series_uid
            pydicom.dcmwrite(tmp / name, derived, enforce_file_format=True)
        write_json(tmp / "nacode.json", record)
        tmp.chmod(0o777 & ~_umask())
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _nifti_bytes(path: Path, data: np.ndarray, original, summary: str) -> bytes:
    import gzip

    import nibabel

    image = nibabel.Nifti1Image(data.astype(np.float32), original.affine, original.header)
    image.set_data_dtype(np.float32)
    image.header["descrip"] = summary[:79].encode("ascii", "replace")
    raw = image.to_bytes()
    return gzip.compress(raw, mtime=0) if path.name.endswith(".gz") else raw


def _derived_dicom(data: np.ndarray, original, summary: str):
    """A copy of ``original`` holding ``data``, as an uncompressed derived series."""
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = original.copy()
    dtype = original.pixel_array.dtype
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    values = np.clip(np.rint(data), info.min, info.max) if info is not None else data
    if hasattr(ds, "file_meta"):
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = values.astype(dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].is_undefined_length = False
    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = int(getattr(ds, "SeriesNumber", 0) or 0) + 1000
    ds.ImageType = ["DERIVED", "SECONDARY", *list(getattr(ds, "ImageType", []))[2:]]
    ds.DerivationDescription = summary[:64]
    ds.SeriesDescription = f"{getattr(ds, 'SeriesDescription', '')} nacode denoised".strip()
    if hasattr(ds, "file_meta"):
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds
