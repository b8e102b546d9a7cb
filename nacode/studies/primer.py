"""The primer chapter's computations: from tissue sodium to a noisy calf image.

A virtual calf (:func:`nacode.anatomy.calf.calf_subject`) is scanned with the calf paper's
spiral (:func:`nacode.physics.trajectory.spiral`), its readout decay included, and
reconstructed by gridding. The per-replicate noise is set so that the 150-average image has
the estimated SNR of the paper's reference images (6.7: muscle mean over the standard
deviation of a background ROI, Table 2). Everything the chapter shows comes from here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from nacode.anatomy.calf import MUSCLES, calf_subject
from nacode.anatomy.subject import Subject
from nacode.physics import noise
from nacode.physics.acquire import acquire, downsample
from nacode.physics.nufft import density_compensation, gridding, sample_image
from nacode.physics.signal import CALF_SEQUENCE, acquisition_time_s, decay, format_minutes
from nacode.physics.trajectory import Trajectory, spiral
from nacode.recon.calibration import calibrate_subject, roi_stats, tissue_roi

#: Estimated SNR of the calf paper's 150-average reference images (Table 2: 6.7 ± 1.2).
REFERENCE_SNR = 6.7
REFERENCE_NSA = 150
#: The calf paper's estimated SNR of its in-vivo NUFFT images per number of averages, as
#: (median, IQR) over the volunteers (Table 2; 150 averages: the reference images).
PAPER_SNR = {150: (6.7, 1.2), 50: (4.4, 0.5), 40: (4.1, 0.5), 30: (3.6, 0.5), 20: (2.9, 0.4),
             10: (2.2, 0.4)}
#: The calf paper's in-vivo aTSC at 150 averages, (median, IQR) in mM over the volunteers.
PAPER_ATSC = {"muscle": (21.5, 3.0), "skin": (18.8, 5.1)}


@lru_cache(maxsize=1)
def calf_spiral() -> tuple[Trajectory, np.ndarray]:
    """The calf paper's spiral and its normalised Pipe–Menon weights (computed once)."""
    traj = spiral()
    return traj, density_compensation(traj)


@dataclass(frozen=True)
class CalfScan:
    """A virtual calf, its noiseless k-space and the noise level of one replicate."""

    subject: Subject
    traj: Trajectory
    weights: np.ndarray
    kspace: np.ndarray
    sigma: float

    @property
    def matrix(self) -> tuple[int, int]:
        return self.traj.matrix

    def image(self, kspace: np.ndarray | None = None) -> np.ndarray:
        """Magnitude gridding reconstruction (noiseless when ``kspace`` is omitted)."""
        return np.abs(gridding(self.kspace if kspace is None else kspace, self.traj,
                               self.weights))

    def muscle_roi(self) -> np.ndarray:
        """Acquisition voxels filled by muscle (≥ 90 %)."""
        return tissue_roi(self.subject, MUSCLES, self.matrix)

    def background_roi(self) -> np.ndarray:
        """Acquisition voxels at least 3 voxels away from any sodium-containing tissue."""
        from scipy.ndimage import binary_dilation

        body = downsample((self.subject.labels > 0).astype(float), self.matrix) > 0
        return ~binary_dilation(body, iterations=3)


def calf_scan(seed: int = 0, *, readout_decay: bool = True, snr: float = REFERENCE_SNR,
              spiral_and_weights: tuple[Trajectory, np.ndarray] | None = None) -> CalfScan:
    """Scan virtual calf ``seed`` with the calf spiral; σ set for ``snr`` at 150 averages.

    ``spiral_and_weights`` replaces the spiral and its density compensation (the calf study
    passes the paper's plain-grid weights).
    """
    subject = calf_subject(seed)
    traj, weights = spiral_and_weights or calf_spiral()
    kspace = acquire(subject, traj, CALF_SEQUENCE, readout_decay=readout_decay)
    scan = CalfScan(subject, traj, weights, kspace, sigma=1.0)
    signal = float(scan.image()[scan.muscle_roi()].mean())
    sigma = noise.sigma_for_snr(signal, snr, REFERENCE_NSA, weights, traj.matrix)
    # One empirical correction: the background of a magnitude image is Rayleigh only where
    # no side lobe of the point-spread function reaches, so measure once (fixed seed) and
    # rescale σ so that the 150-average image shows the target SNR.
    trial = CalfScan(subject, traj, weights, kspace, sigma)
    draw = noise.average(kspace, sigma, REFERENCE_NSA, np.random.default_rng(12345), "fast")
    measured = estimated_snr(trial, trial.image(draw))
    return CalfScan(subject, traj, weights, kspace, sigma * measured / snr)


def rescan(scan: CalfScan, subject: Subject) -> CalfScan:
    """Scan a modified subject with the same trajectory and noise level as ``scan``."""
    kspace = acquire(subject, scan.traj, CALF_SEQUENCE)
    return CalfScan(subject, scan.traj, scan.weights, kspace, scan.sigma)


def estimated_snr(scan: CalfScan, image: np.ndarray) -> float:
    """The paper's estimate: mean muscle signal / SD of the background ROI."""
    return float(image[scan.muscle_roi()].mean() / image[scan.background_roi()].std())


def nsa_series(scan: CalfScan, nsas=(150, 50, 30, 10), *, seed: int = 0,
               mode: str = "exact"):
    """Images at several numbers of averages, from one set of replicates (exact mode).

    Returns
    -------
    images : dict of int to ndarray
        NSA → magnitude image.
    table : pandas.DataFrame
        ``nsa, acquisition_time, acquisition_s, estimated_snr, predicted_snr``.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    if mode == "exact":
        kspaces = noise.averages(scan.kspace, scan.sigma, nsas, rng)
    else:
        kspaces = {n: noise.average(scan.kspace, scan.sigma, n, rng, mode) for n in nsas}
    images = {n: scan.image(kspaces[n]) for n in sorted(nsas, reverse=True)}
    rows = []
    for n, image in images.items():
        seconds = acquisition_time_s(n, scan.traj.n_shots, CALF_SEQUENCE)
        rows.append({"nsa": n, "acquisition_time": format_minutes(seconds),
                     "acquisition_s": seconds, "estimated_snr": estimated_snr(scan, image),
                     "predicted_snr": REFERENCE_SNR * np.sqrt(n / REFERENCE_NSA)})
    return images, pd.DataFrame(rows)


def point_spread(traj: Trajectory, weights: np.ndarray, t2_fast: float | None = None,
                 t2_slow: float | None = None, frac_fast: float = 0.6) -> np.ndarray:
    """Gridded image of a point at the centre, optionally decaying during the readout.

    Returns the real part, normalised to the value without decay at the centre.
    """
    samples = np.ones(traj.times_ms.shape, dtype=complex)  # a centred point: flat k-space
    reference = gridding(samples, traj, weights).real
    if t2_fast is not None:
        samples = samples * decay(traj.times_ms, t2_fast, t2_slow or t2_fast, frac_fast)
    centre = tuple(n // 2 for n in traj.matrix)
    return gridding(samples, traj, weights).real / reference[centre]


def fwhm_pixels(profile: np.ndarray) -> float:
    """Full width at half maximum of a peaked 1D profile, linearly interpolated, pixels."""
    peak = int(np.argmax(profile))
    half = profile[peak] / 2
    left = peak
    while left > 0 and profile[left] > half:
        left -= 1
    right = peak
    while right < profile.size - 1 and profile[right] > half:
        right += 1
    lx = left + (half - profile[left]) / (profile[left + 1] - profile[left])
    rx = right - 1 + (half - profile[right - 1]) / (profile[right] - profile[right - 1])
    return float(rx - lx)


def quantify(scan: CalfScan, image: np.ndarray):
    """Calibrate on the tubes, map aTSC, and compare muscle and skin with the truth.

    Returns
    -------
    calibration : nacode.recon.calibration.Calibration
    atsc : ndarray
        aTSC map, mM.
    table : pandas.DataFrame
        Per ROI (muscle, skin, each tube): true median TSC and aTSC median and IQR.
    """
    calibration = calibrate_subject(image, scan.subject)
    atsc = calibration.to_mm(image)
    truth = downsample(scan.subject.tsc, scan.matrix)
    rois = {"muscle": scan.muscle_roi(), "skin": tissue_roi(scan.subject, "skin", scan.matrix,
                                                           purity=0.5)}
    table = roi_stats(atsc, rois)
    table.insert(1, "true_median", [float(np.median(truth[r])) for r in rois.values()])
    return calibration, atsc, table


def benchmark(repeats: int = 20, seed: int = 0):
    """Median wall time (after warm-up) of the two operations the simulator promises.

    * one 80 × 80 spiral acquisition plus gridding reconstruction of an image on the
      acquisition matrix (the path of the calf CNN's 1H training data), target 20 ms;
    * a fast-mode 150-average acquisition of a virtual calf (fine grid, readout decay,
      noise), target 50 ms.

    Returns
    -------
    pandas.DataFrame
        ``operation, median_ms, min_ms, max_ms, target_ms, repeats``.
    """
    import pandas as pd

    traj, weights = calf_spiral()
    rng = np.random.default_rng(seed)
    image = rng.random(traj.matrix)
    subject = calf_subject(seed)

    def spiral_80():
        kspace = sample_image(image, traj)
        return gridding(noise.average(kspace, 0.05, 50, rng), traj, weights)

    def calf_150():
        kspace = acquire(subject, traj, CALF_SEQUENCE)
        return noise.average(kspace, 1.0, 150, rng, mode="fast")

    rows = []
    for name, function, target in (
            ("80x80 spiral acquisition + gridding", spiral_80, 20.0),
            ("fast-mode 150-average calf acquisition", calf_150, 50.0)):
        function()  # warm-up: plans, caches, JIT
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append((time.perf_counter() - start) * 1e3)
        rows.append({"operation": name, "median_ms": float(np.median(times)),
                     "min_ms": float(np.min(times)), "max_ms": float(np.max(times)),
                     "target_ms": target, "repeats": repeats})
    return pd.DataFrame(rows)


def with_tubes(subject: Subject, **changes: float) -> Subject:
    """A copy of ``subject`` whose tube tissues have some properties changed (e.g. ``t1=40``)."""
    from dataclasses import replace

    tissues = dict(subject.tissues)
    for tube in subject.tubes:
        tissues[tube.label] = replace(tissues[tube.label], **changes)
    return replace(subject, tissues=tissues)


def tissue_table(subject: Subject):
    """The subject's tissue properties as a table (one row per tissue, air excluded)."""
    import pandas as pd

    rows = [{"label": label, "tissue": t.name, "tsc_mM": t.tsc, "t2_fast_ms": t.t2_fast,
             "t2_slow_ms": t.t2_slow, "frac_fast": t.frac_fast, "t1_ms": t.t1,
             "proton": t.proton, "fine_voxels": int((subject.labels == label).sum())}
            for label, t in sorted(subject.tissues.items()) if t.tsc > 0]
    return pd.DataFrame(rows)


def texture_table():
    """The texture sizes of :mod:`nacode.anatomy.texture`: one row per tissue type.

    Returns
    -------
    pandas.DataFrame
        ``type``, ``sodium_sd_pct`` and ``sodium_length_mm`` (:data:`TEXTURE`),
        ``proton_sd_pct`` and ``proton_length_mm`` (:data:`PROTON_TEXTURE`; NaN where the
        1H image has no texture of its own, e.g. the brain's T1 template), and
        ``between_subject_sd_pct``, the population's between-subject SD of the type's mean TSC
        (:data:`~nacode.anatomy.tissues.TSC_SD` over the literature TSC; NaN where the tissue
        does not vary or has no literature entry); untextured types (air, tubes) are left out.
    """
    import pandas as pd

    from nacode.anatomy.texture import PROTON_TEXTURE, TEXTURE
    from nacode.anatomy.tissues import LITERATURE, TSC_SD

    rows = []
    for kind, spec in TEXTURE.items():
        if spec is None:
            continue
        proton = PROTON_TEXTURE.get(kind) or (np.nan, np.nan)
        rows.append({"type": kind, "sodium_sd_pct": 100 * spec[0], "sodium_length_mm": spec[1],
                     "proton_sd_pct": 100 * proton[0], "proton_length_mm": proton[1],
                     "between_subject_sd_pct": 100 * TSC_SD[kind] / LITERATURE[kind].tsc
                     if TSC_SD.get(kind) and kind in LITERATURE else np.nan})
    return pd.DataFrame(rows)


def texture_maps(subjects: dict[str, Subject]) -> dict[str, np.ndarray]:
    """Central slices of each subject's multiplicative TSC texture (1 where untextured)."""
    return {name: central_slice(s, np.ones(s.shape, np.float32) if s.tsc_texture is None
                                else s.tsc_texture) for name, s in subjects.items()}


def gallery(seed: int = 0) -> dict[str, Subject]:
    """One subject of each anatomy: a calf, a brain, a breast patient with a sodium-only lesion."""
    from nacode.anatomy.brain import brain_subject
    from nacode.anatomy.breast import breast_subject

    return {"calf": calf_subject(seed), "brain": brain_subject(seed),
            "breast": breast_subject(seed, n_tumours=2, sodium_only=True)}


def central_slice(subject: Subject, array: np.ndarray | None = None) -> np.ndarray:
    """A 2D view of a map: the map itself in 2D, the axial slice through the tubes in 3D.

    3D brains are shown as radiological axial slices (anterior up, the subject's right left).
    """
    array = subject.tsc if array is None else array
    if subject.ndim == 2:
        return array
    z = subject.shape[2] // 2 + round(subject.tubes[0].centre_mm[2] / subject.voxel_mm[2])
    return array[:, :, z].T[::-1, ::-1]
