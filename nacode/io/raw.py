"""Raw k-space in ISMRMRD: non-Cartesian acquisitions with their trajectories, coils and
noise scans, read and written with the ``ismrmrd`` package's file format.

An ISMRMRD file (HDF5) holds an XML header (encoded matrix and field of view, trajectory
type, TE, receiver channels) and one *acquisition* per readout: a header, the samples of
every coil ``(coils, samples)`` and, for non-Cartesian data, the trajectory ``(samples,
dims)``. Acquisitions flagged ``ACQ_IS_NOISE_MEASUREMENT`` are noise scans (RF off): they
give the coils' noise covariance for whitening.

**Trajectory units.** ISMRMRD fixes none; the common convention (Gadgetron's radial and
spiral gadgets, BART) and what :func:`write_ismrmrd` writes is ``k / N`` in
``[-0.5, 0.5]``. :func:`read_ismrmrd` takes a trajectory whose largest ``|k|`` is at most
0.5 to be in those units and one reaching further to be in grid units (cycles per field of
view, ``[-N/2, N/2]``, nacode's and sigpy's convention). ISMRMRD's trajectory axes are
``(kx, ky[, kz])`` along the encoded matrix's ``(x, y[, z])``; nacode's 2D images are
``(H, W) = (y, x)``, so 2D trajectories are reversed on the way in and out.

Acquisitions and traversal are read and written in bulk through h5py with ``ismrmrd``'s own
record types (appending one acquisition at a time through :class:`ismrmrd.Dataset` takes
minutes for a 3D radial scan of 10⁴ spokes).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nacode.physics.trajectory import Trajectory

#: Bit of the acquisition flags marking a noise scan (ISMRMRD flag 19, bit 18).
NOISE_BIT = np.uint64(1) << np.uint64(18)


@dataclass(frozen=True)
class RawData:
    """One ISMRMRD scan in nacode's conventions.

    Attributes
    ----------
    kspace : ndarray, shape (n_slices, n_coils, n_shots, n_samples), complex64
        Imaging samples; ``n_slices`` is 1 for a 3D acquisition.
    coord : ndarray, shape (n_shots, n_samples, ndim), float64
        Trajectory in grid units, last axis ``(ky, kx)`` in 2D or ``(kx, ky, kz)`` in 3D.
    matrix : tuple of int
        Encoded matrix, image axes order (``(H, W)`` or ``(X, Y, Z)``).
    fov_mm : tuple of float
        Encoded field of view along the same axes, mm.
    dwell_us : float
        Sample spacing of the imaging readouts, µs.
    te_ms : float
        Echo time (first sample), ms.
    noise : ndarray, shape (n_coils, m), complex64, or None
        Samples of the noise scans.
    noise_dwell_us : float or None
        Their sample spacing, µs.
    """

    kspace: np.ndarray
    coord: np.ndarray
    matrix: tuple[int, ...]
    fov_mm: tuple[float, ...]
    dwell_us: float
    te_ms: float
    noise: np.ndarray | None = None
    noise_dwell_us: float | None = None

    @property
    def n_coils(self) -> int:
        """Receive channels."""
        return self.kspace.shape[1]

    def trajectory(self) -> Trajectory:
        """The imaging trajectory with sample times ``TE + i · dwell``."""
        times = self.te_ms + np.arange(self.coord.shape[1]) * self.dwell_us * 1e-3
        voxel = "x".join(f"{f / n:g}" for f, n in zip(self.fov_mm, self.matrix, strict=True))
        return Trajectory(coord=self.coord,
                          times_ms=np.broadcast_to(times, self.coord.shape[:2]).copy(),
                          matrix=self.matrix, fov_mm=float(self.fov_mm[0]),
                          name=f"ISMRMRD {self.coord.shape[0]} readouts, "
                               f"{'x'.join(map(str, self.matrix))} at {voxel} mm")

    def noise_covariance(self) -> np.ndarray | None:
        """Coil noise covariance for the imaging readouts' bandwidth, or None.

        The noise scan's covariance (:func:`nacode.physics.noise.noise_covariance`) scaled by
        ``noise_dwell / dwell``: noise power per sample grows with the receiver bandwidth,
        i.e. with the inverse dwell time.
        """
        from nacode.physics.noise import noise_covariance

        if self.noise is None:
            return None
        return noise_covariance(self.noise) * (self.noise_dwell_us / self.dwell_us)


def _header_xml(matrix, fov_mm, n_coils: int, te_ms: float, trajectory: str,
                field_t: float) -> str:
    from ismrmrd import xsd

    def space(m, f):
        return xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=m[0], y=m[1], z=m[2]),
            fieldOfView_mm=xsd.fieldOfViewMm(x=f[0], y=f[1], z=f[2]))

    header = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(
            H1resonanceFrequency_Hz=round(42.577e6 * field_t)),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            systemFieldStrength_T=field_t, receiverChannels=n_coils,
            systemVendor="nacode (virtual subject)"),
        sequenceParameters=xsd.sequenceParametersType(TE=[te_ms]),
        encoding=[xsd.encodingType(encodedSpace=space(matrix, fov_mm),
                                   reconSpace=space(matrix, fov_mm),
                                   encodingLimits=xsd.encodingLimitsType(),
                                   trajectory=xsd.trajectoryType(trajectory))])
    return header.toXML("utf-8")


def _records(samples: np.ndarray, traj: np.ndarray | None, flags: np.ndarray,
             dwell_us: float, slices: np.ndarray, shots: np.ndarray) -> np.ndarray:
    """ISMRMRD acquisition records for ``samples`` ``(n, coils, m)``, ``traj`` ``(n, m, d)``."""
    from ismrmrd.hdf5 import acquisition_dtype

    n, coils, m = samples.shape
    dims = 0 if traj is None else traj.shape[-1]
    records = np.zeros(n, dtype=acquisition_dtype)
    head = records["head"]
    head["version"] = 1
    head["flags"] = flags
    head["scan_counter"] = np.arange(n)
    head["number_of_samples"] = m
    head["available_channels"] = head["active_channels"] = coils
    head["trajectory_dimensions"] = dims
    head["sample_time_us"] = dwell_us
    head["read_dir"] = (1.0, 0.0, 0.0)
    head["phase_dir"] = (0.0, 1.0, 0.0)
    head["slice_dir"] = (0.0, 0.0, 1.0)
    head["idx"]["slice"] = slices
    head["idx"]["kspace_encode_step_1"] = shots
    flat = np.ascontiguousarray(samples, dtype=np.complex64).view(np.float32).reshape(n, -1)
    trajs = (np.zeros((n, 0), np.float32) if traj is None
             else np.ascontiguousarray(traj, dtype=np.float32).reshape(n, -1))
    for i in range(n):  # vlen fields take one array per record
        records[i]["data"] = flat[i]
        records[i]["traj"] = trajs[i]
    return records


def write_ismrmrd(path: str | Path, kspace: np.ndarray, traj: Trajectory, *,
                  noise: np.ndarray | None = None, noise_dwell_us: float | None = None,
                  slice_thickness_mm: float | None = None, field_t: float = 3.0) -> Path:
    """Write non-Cartesian k-space (and a noise scan) as an ISMRMRD file, atomically.

    Parameters
    ----------
    path : path-like
        ``.h5`` file to create (replaced if it exists).
    kspace : ndarray, complex
        Shape ``(n_coils, n_shots, n_samples)``, or ``(n_slices, n_coils, n_shots,
        n_samples)`` for 2D multi-slice data.
    traj : Trajectory
        Positions (grid units) and times: the dwell is the spacing of ``times_ms``, TE its
        first value.
    noise : ndarray, shape (n_coils, m), complex, optional
        Noise-scan samples, written as readouts of ``n_samples`` (the last one padded by
        repetition is avoided: ``m`` is cut to a multiple of ``n_samples``).
    noise_dwell_us : float, optional
        The noise scan's dwell (default: the imaging dwell).
    slice_thickness_mm : float, optional
        2D: the encoded field of view along z (default: one in-plane voxel).
    field_t : float
        Main field, T (the header's H1 resonance frequency).
    """
    import h5py

    kspace = np.asarray(kspace)
    ndim = traj.coord.shape[-1]
    if kspace.ndim == 3:
        kspace = kspace[None]
    if kspace.ndim != 4 or kspace.shape[2:] != traj.times_ms.shape:
        raise ValueError(f"k-space {kspace.shape} is not (n_coils, *{traj.times_ms.shape}) or "
                         f"(n_slices, n_coils, *{traj.times_ms.shape})")
    if ndim == 3 and kspace.shape[0] != 1:
        raise ValueError("a 3D trajectory has one volume, not slices")
    n_slices, n_coils, n_shots, n_samples = kspace.shape
    dwell_us = float(np.diff(traj.times_ms[0, :2])[0]) * 1e3 if n_samples > 1 else 1.0
    voxel = traj.fov_mm / traj.matrix[0]
    if ndim == 2:  # image axes (H, W) = (y, x); ISMRMRD encodes (x, y, z)
        matrix = (traj.matrix[1], traj.matrix[0], 1)
        fov = (traj.fov_mm, traj.fov_mm, slice_thickness_mm or voxel)
        normalised = traj.coord[..., ::-1] / np.array(traj.matrix[::-1], float)
    else:
        matrix, fov = traj.matrix, (traj.fov_mm,) * 3
        normalised = traj.coord / np.array(traj.matrix, float)
    kind = "radial" if "radial" in traj.name.lower() else (
        "spiral" if "spiral" in traj.name.lower() else "other")
    parts = []
    if noise is not None:
        noise = np.asarray(noise)
        if noise.ndim != 2 or noise.shape[0] != n_coils:
            raise ValueError(f"noise scan {noise.shape} is not ({n_coils}, m)")
        rows = noise.shape[1] // n_samples
        if rows < 1:
            raise ValueError(f"noise scan of {noise.shape[1]} samples is shorter than one "
                             f"readout ({n_samples})")
        blocks = noise[:, :rows * n_samples].reshape(n_coils, rows, n_samples).transpose(1, 0, 2)
        parts.append(_records(blocks, None, np.full(rows, NOISE_BIT), noise_dwell_us or dwell_us,
                              np.zeros(rows, int), np.arange(rows)))
    for s in range(n_slices):
        samples = kspace[s].transpose(1, 0, 2)  # (shots, coils, samples)
        parts.append(_records(samples, normalised, np.zeros(n_shots, np.uint64), dwell_us,
                              np.full(n_shots, s), np.arange(n_shots)))
    records = np.concatenate(parts)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as handle:
            group = handle.create_group("dataset")
            xml = group.create_dataset("xml", (1,), dtype=h5py.special_dtype(vlen=bytes))
            xml[0] = _header_xml(matrix, fov, n_coils, float(traj.times_ms[0, 0]), kind, field_t)
            group.create_dataset("data", data=records, maxshape=(None,), chunks=True)
        from nacode.results import _umask

        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _header(path: Path, handle):
    from ismrmrd import xsd

    if "dataset" not in handle or "xml" not in handle["dataset"]:
        raise ValueError(f"{path}: not an ISMRMRD file (no /dataset/xml header); write raw "
                         "data with ismrmrd (siemens_to_ismrmrd converts twix files)")
    try:
        return xsd.CreateFromDocument(handle["dataset"]["xml"][0])
    except Exception as exc:  # xsdata raises several parser errors
        raise ValueError(f"{path}: its ISMRMRD XML header does not parse ({type(exc).__name__}"
                         f": {str(exc).splitlines()[0][:120]}); repair or re-export it") from None


def read_ismrmrd(path: str | Path) -> RawData:
    """Read an ISMRMRD file of non-Cartesian acquisitions (2D multi-slice or 3D).

    Raises
    ------
    ValueError
        One line naming the file: not HDF5 or not ISMRMRD, Cartesian data (no trajectory),
        acquisitions of different sizes or coils, slices with different trajectories,
        non-finite samples.
    FileNotFoundError
        If ``path`` does not exist.
    """
    import h5py

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give an ISMRMRD .h5 file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise ValueError(f"{path}: not an HDF5 file (corrupt or truncated?); nacode recon "
                         "reads ISMRMRD .h5 raw data") from None
    with handle:
        header = _header(path, handle)
        if "data" not in handle["dataset"] or handle["dataset"]["data"].size == 0:
            raise ValueError(f"{path}: holds no acquisitions")
        records = handle["dataset"]["data"][:]
    head = records["head"]
    noise_rows = (head["flags"] & NOISE_BIT) != 0
    imaging = ~noise_rows
    for field, what in (("number_of_samples", "samples"), ("active_channels", "coils"),
                        ("trajectory_dimensions", "trajectory dimensions")):
        values = np.unique(head[field][imaging])
        if values.size != 1:
            raise ValueError(f"{path}: imaging readouts have different numbers of {what} "
                             f"({', '.join(map(str, values[:5]))}); nacode recon needs one size")
    n_samples = int(head["number_of_samples"][imaging][0])
    n_coils = int(head["active_channels"][imaging][0])
    dims = int(head["trajectory_dimensions"][imaging][0])
    if dims == 0:
        raise ValueError(f"{path}: the acquisitions carry no trajectory (Cartesian data); "
                         "nacode recon reconstructs non-Cartesian (radial, spiral) scans")
    if dims not in (2, 3):
        raise ValueError(f"{path}: trajectories of {dims} dimensions; need 2 or 3")
    data = np.stack([r.view(np.complex64) for r in records["data"][imaging]])
    data = data.reshape(-1, n_coils, n_samples)
    traj = np.stack(list(records["traj"][imaging])).reshape(-1, n_samples, dims)
    if not np.all(np.isfinite(data)) or not np.all(np.isfinite(traj)):
        raise ValueError(f"{path}: samples or trajectory contain NaN or infinity")
    slices = head["idx"]["slice"][imaging].astype(int)
    order = np.lexsort((head["idx"]["kspace_encode_step_1"][imaging], slices))
    data, traj, slices = data[order], traj[order], slices[order]
    labels, counts = np.unique(slices, return_counts=True)
    if np.unique(counts).size != 1:
        raise ValueError(f"{path}: slices have different numbers of readouts")
    n_shots = int(counts[0])
    traj = traj.reshape(labels.size, n_shots, n_samples, dims)
    if not np.allclose(traj, traj[:1], atol=1e-6):
        raise ValueError(f"{path}: slices have different trajectories; reconstruct them "
                         "separately")
    encoding = header.encoding[0].encodedSpace
    size = (encoding.matrixSize.x, encoding.matrixSize.y, encoding.matrixSize.z)
    fov = (encoding.fieldOfView_mm.x, encoding.fieldOfView_mm.y, encoding.fieldOfView_mm.z)
    coord = traj[0].astype(np.float64)
    if dims == 2:
        matrix, fov_mm = (int(size[1]), int(size[0])), (float(fov[1]), float(fov[0]))
        coord = coord[..., ::-1]
    else:
        matrix, fov_mm = tuple(int(n) for n in size), tuple(float(f) for f in fov)
    if np.abs(coord).max() <= 0.5 + 1e-6:  # k / N: convert to grid units
        coord = coord * np.array(matrix, float)
    if np.abs(coord).max() > max(matrix) / 2 * 1.01:
        raise ValueError(f"{path}: trajectory reaches |k| = {np.abs(coord).max():.1f} beyond "
                         f"the encoded matrix {matrix}")
    kspace = data.reshape(labels.size, n_shots, n_coils, n_samples).transpose(0, 2, 1, 3)
    te = header.sequenceParameters.TE if header.sequenceParameters else None
    noise = noise_dwell = None
    if noise_rows.any():
        rows = [r.view(np.complex64).reshape(int(c), int(m)) for r, c, m in zip(
            records["data"][noise_rows], head["active_channels"][noise_rows],
            head["number_of_samples"][noise_rows], strict=True)]
        if {r.shape[0] for r in rows} != {n_coils}:
            raise ValueError(f"{path}: the noise scan has a different number of coils")
        noise = np.concatenate(rows, axis=1)
        noise_dwell = float(head["sample_time_us"][noise_rows][0])
    return RawData(kspace=np.ascontiguousarray(kspace), coord=coord, matrix=matrix,
                   fov_mm=fov_mm, dwell_us=float(head["sample_time_us"][imaging][0]),
                   te_ms=float(te[0]) if te else 0.0, noise=noise, noise_dwell_us=noise_dwell)
