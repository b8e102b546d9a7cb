"""The "Your own data" chapter's raw data: a virtual brain scanned as a scanner would store it.

:func:`write_example` writes, into one folder, what a researcher would bring to nacode:

- ``raw.h5``: ISMRMRD k-space of a 3D radial (kooshball) acquisition of a virtual brain
  (MNI152 anatomy, four calibration tubes of 25–100 mM), received by a ring of coils with
  correlated noise, plus a noise scan (RF off);
- ``t1.nii.gz``: the co-registered proton (T1-weighted) image on the sodium grid, the prior
  of ``nacode recon --method dtv``;
- ``tubes.nii.gz``: tube ROIs (label ``k`` = the k-th lowest concentration), as
  one would draw them;

and, for the chapter's scoring only (a researcher does not have them), ``truth_mm.nii.gz``
(true TSC in mM, block-averaged to the acquisition voxels), ``reference_mm.nii.gz`` (the
same scan without noise, gridded and calibrated like the noisy one: what a denoiser can at
best recover) and ``brain.nii.gz`` (voxels at least half brain). The acquisition is the
brain study's: 4 mm voxels, 60³ matrix, TE 0.2 ms, noise set so that the gridded brain has
SNR :data:`SNR`; its 3D radial readouts are undersampled :data:`UNDERSAMPLING`-fold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Acquisition: matrix side, coils, noise correlation between neighbouring coils, SNR of the
#: gridded, coil-combined brain (mean signal / noise SD per channel), readout spokes'
#: undersampling, noise-scan samples per coil.
MATRIX = 60
N_COILS = 4
CORRELATION = 0.3
SNR = 10.0
UNDERSAMPLING = 2.0
NOISE_SAMPLES = 4096
SEED = 4000
#: The brain subjects' tube concentrations, mM, in label order (ascending).
TUBES_MM = (25.0, 50.0, 75.0, 100.0)


def _nifti(path: Path, volume: np.ndarray, voxel_mm: float) -> None:
    """Write ``volume`` in its own dtype (labels stay integers) on the grid nacode recon writes
    (:func:`~nacode.io.images.centred_affine`), atomically."""
    import gzip

    import nibabel

    from nacode.io.images import centred_affine
    from nacode.results import atomic_write

    raw = nibabel.Nifti1Image(np.asarray(volume), centred_affine(volume.shape, voxel_mm)
                              ).to_bytes()
    with atomic_write(path, "wb") as handle:
        handle.write(raw if path.suffix == ".nii" else gzip.compress(raw, mtime=0))


def write_example(folder: str | Path, *, seed: int = SEED, matrix: int = MATRIX,
                  n_coils: int = N_COILS, snr: float = SNR,
                  undersampling: float = UNDERSAMPLING) -> dict:
    """Simulate the scan and write the files listed in the module docstring.

    Returns
    -------
    dict
        ``paths`` (name → Path), ``concentrations`` (mM, in tube-label order), ``sigma``
        (noise SD per channel, k-space units), ``trajectory`` (its name).
    """
    from nacode.anatomy.brain import brain_subject
    from nacode.io.raw import read_ismrmrd, write_ismrmrd
    from nacode.physics.acquire import acquire, downsample
    from nacode.physics.coils import coil_maps
    from nacode.physics.dapr import BRAIN_SEQUENCE
    from nacode.physics.noise import coil_noise, correlated_covariance, gridded_noise_sd
    from nacode.physics.trajectory import radial3d
    from nacode.recon.calibration import calibrate
    from nacode.recon.raw import cached_density, reconstruct
    from nacode.studies.brain_data import cylinder_rois

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    subject = brain_subject(seed, acquisition_mm=subject_voxel(matrix))
    if sorted(t.concentration for t in subject.tubes) != list(TUBES_MM):
        raise ValueError(f"the brain subject's tubes changed: update TUBES_MM ({TUBES_MM})")
    voxel = subject.fov_mm[0] / matrix
    traj = radial3d(matrix=matrix, fov_mm=subject.fov_mm[0], undersampling=undersampling)
    kspace = acquire(subject, traj, BRAIN_SEQUENCE, coil_maps=coil_maps(subject.shape, n_coils))
    shape = (matrix,) * 3
    brain = downsample(subject.extra["brain_mask"].astype(np.float32), shape) >= 0.5
    labels = np.zeros(shape, np.int16)
    rois = cylinder_rois(subject.tubes, shape, voxel, subject.extra["tube_length_mm"])
    order = np.argsort([t.concentration for t in subject.tubes], kind="stable")
    for k, index in enumerate(order, start=1):  # labels in ascending concentration
        labels[rois[index]] = k
    paths = {name: folder / f"{name}{suffix}" for name, suffix in (
        ("raw", ".h5"), ("t1", ".nii.gz"), ("tubes", ".nii.gz"), ("truth_mm", ".nii.gz"),
        ("reference_mm", ".nii.gz"), ("brain", ".nii.gz"))}
    # unit-level noise: the whitening matrix does not depend on the noise level, so the
    # noiseless file (with this scan × 1) goes through exactly the noisy file's pipeline
    unit = correlated_covariance(n_coils, CORRELATION)
    rng = np.random.default_rng(seed)
    noise, scan_noise = coil_noise(kspace.shape[1:], unit, rng), coil_noise((NOISE_SAMPLES,),
                                                                             unit, rng)
    write_ismrmrd(paths["raw"], kspace.astype(np.complex64), traj,
                  noise=scan_noise.astype(np.complex64))
    clean = read_ismrmrd(paths["raw"])
    image = reconstruct(clean, "gridding")[0]  # also caches the file's density weights
    fit = calibrate(image, [labels == k for k in range(1, len(TUBES_MM) + 1)], TUBES_MM)
    weights = cached_density(clean.trajectory())
    sigma = float(image[brain].mean() / snr / gridded_noise_sd(1.0, weights, shape))
    write_ismrmrd(paths["raw"], (kspace + sigma * noise).astype(np.complex64), traj,
                  noise=(sigma * scan_noise).astype(np.complex64))
    for name, volume in (("t1", downsample(subject.proton, shape)), ("tubes", labels),
                         ("truth_mm", downsample(subject.tsc, shape)),
                         ("reference_mm", fit.to_mm(image)), ("brain", brain.astype(np.uint8))):
        _nifti(paths[name], volume if name in ("tubes", "brain") else
               volume.astype(np.float32), voxel)
    return {"paths": paths, "concentrations": list(TUBES_MM), "sigma": sigma,
            "trajectory": traj.name}


def score(maps: dict, folder: str | Path):
    """Errors of aTSC maps (mM) in the brain against the truth and the noiseless reference.

    Parameters
    ----------
    maps : dict of str to path-like
        Method name → aTSC map (NIfTI, mM) on the scan's grid.
    folder : path-like
        The folder of :func:`write_example`.

    Returns
    -------
    pandas.DataFrame
        One row per map: ``method``, ``rmse_truth_mM``, ``bias_truth_mM`` (mean of map −
        truth), ``rmse_reference_mM`` (against the noiseless reconstruction: the noise left
        and the method's own change), ``tube_max_error_mM`` (largest error of a tube's mean).
    """
    import nibabel
    import pandas as pd

    folder = Path(folder)

    def load(path):
        return np.asarray(nibabel.load(path).dataobj, dtype=np.float64)

    truth, reference = load(folder / "truth_mm.nii.gz"), load(folder / "reference_mm.nii.gz")
    brain, labels = load(folder / "brain.nii.gz") > 0, load(folder / "tubes.nii.gz").astype(int)
    concentrations = list(TUBES_MM)
    rows = []
    for name, path in maps.items():
        atsc = load(path)
        error = atsc[brain] - truth[brain]
        tubes = [abs(atsc[labels == k].mean() - c) for k, c in enumerate(concentrations, 1)]
        rows.append({"method": name, "rmse_truth_mM": float(np.sqrt((error**2).mean())),
                     "bias_truth_mM": float(error.mean()),
                     "rmse_reference_mM": float(np.sqrt(((atsc - reference)[brain] ** 2).mean())),
                     "tube_max_error_mM": float(max(tubes))})
    return pd.DataFrame(rows)


def run(command: str) -> None:
    """Run a ``nacode …`` command line as a shell would, print it and its output (stdout,
    then stderr's lines other than progress bars), and raise ``RuntimeError`` with its stderr
    if it fails: the chapter's commands must succeed."""
    import shlex
    import subprocess
    import sys

    words = shlex.split(command)
    if words[0] != "nacode":
        raise ValueError(f"not a nacode command: {command}")
    done = subprocess.run([sys.executable, "-m", "nacode", *words[1:]], capture_output=True,
                          text=True)
    print(f"$ {command}")
    output = done.stdout.rstrip()
    if output:
        print(output)
    if done.returncode:
        raise RuntimeError(f"{command!r} failed ({done.returncode}): {done.stderr.strip()}")
    for line in done.stderr.splitlines():  # warnings, not the progress bars
        if line.strip() and "%|" not in line:
            print(line)


def subject_voxel(matrix: int) -> float:
    """Acquisition voxel (mm) of a scan of ``matrix`` voxels per side over the 240 mm brain
    field of view."""
    return 240.0 / matrix
