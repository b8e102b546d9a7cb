"""The breast study's cohort: multi-coil 2D radial sodium scans, undersampled retrospectively.

Healthy volunteers and patients (:func:`nacode.anatomy.breast.breast_subject`; each patient's
last tumour is sodium-only, invisible in 1H) are scanned with an 8-channel receive array whose
birdcage sensitivities carry a smooth random bias field, along centre-out radial spokes with
bi-exponential T2* decay during each readout, and correlated complex coil noise. A noise
pre-scan (:data:`N_PRESCAN` samples per channel, RF off) gives the estimated noise covariance,
and every method works on the k-space whitened by it (:func:`nacode.physics.noise.whiten`).
The fully sampled acquisition has :func:`n_spokes_full` spokes (a multiple of 24, so that
keeping every R-th spoke for R = 2, 4, 6, 8 leaves uniformly spaced angles). Each undersampled
dataset is gridded (Pipe–Menon density compensation), and coil-combined by root-sum-of-squares
or the adaptive (Walsh) method; coil maps for the model-based methods are the low-resolution
coil images divided by the magnitude of the low-resolution combined image of the same method.

The 1H image the priors use is a separate acquisition: the subject's (misregistered,
textured) fine-grid 1H image block-averaged to the matrix, with complex Gaussian noise at a
random SNR in :data:`PROTON_SNR` (fibroglandular 1H signal over the noise SD), as a magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nacode.anatomy.subject import Subject
from nacode.physics.signal import Sequence
from nacode.physics.trajectory import Trajectory

FOV_MM = 320.0
N_COILS = 8
RATES = (2, 4, 6, 8)
COMBINES = ("sos", "adaptive")
SNR = 12.0  # mean fibroglandular signal / noise SD of the fully sampled sum-of-squares image
BIAS_SD = 0.15  # SD of the random log-bias coefficients (order-2 polynomial)
#: Breast sequence: TR 60 ms, 90°, one excitation per spoke; readout 6 ms from TE 0.3 ms.
BREAST_SEQUENCE = Sequence(tr_ms=60.0, flip_deg=90.0, excitations_per_shot=1)
TE_MS, READOUT_MS = 0.3, 6.0
LOW_RES = 0.25  # coil-map estimation keeps |k| ≤ this fraction of k_max (Hann window)
N_PRESCAN = 1000  # noise pre-scan samples per channel
PROTON_SNR = (30.0, 50.0)  # range of the 1H image's SNR (fibroglandular signal / noise SD)


def n_spokes_full(matrix: int) -> int:
    """Fully sampled half-spokes: ⌈π N⌉ rounded up to a multiple of 24."""
    return int(np.ceil(np.ceil(np.pi * matrix) / 24) * 24)


def full_trajectory(matrix: int) -> Trajectory:
    """Uniformly spaced centre-out radial half-spokes covering k-space at Nyquist."""
    n = n_spokes_full(matrix)
    angles = np.arange(n) * 2 * np.pi / n
    radius = np.linspace(0.0, matrix / 2, matrix)
    coord = np.stack([np.outer(np.sin(angles), radius), np.outer(np.cos(angles), radius)], -1)
    times = np.broadcast_to(TE_MS + np.linspace(0.0, READOUT_MS, matrix), coord.shape[:2])
    return Trajectory(coord=coord, times_ms=times.copy(), matrix=(matrix, matrix),
                      fov_mm=FOV_MM, name=f"radial {n} half-spokes, {matrix}x{matrix}")


def undersample(traj: Trajectory, rate: int) -> Trajectory:
    """Every ``rate``-th spoke of a fully sampled trajectory (uniform angles)."""
    if rate < 1 or traj.n_shots % rate:
        raise ValueError(f"R = {rate} does not divide the {traj.n_shots} spokes")
    return Trajectory(coord=traj.coord[::rate], times_ms=traj.times_ms[::rate],
                      matrix=traj.matrix, fov_mm=traj.fov_mm, name=f"{traj.name}, R={rate}")


@dataclass(frozen=True)
class BreastScan:
    """One subject's data at the acquisition matrix.

    Attributes
    ----------
    subject : Subject
        The virtual subject (fine grid).
    cohort : str
        ``"healthy"`` or ``"patient"``.
    kspace : ndarray, shape (n_coils, n_spokes, n_samples), complex128
        Fully sampled noisy k-space, whitened by the pre-scan's noise covariance, scaled so
        the fully sampled sum-of-squares image has its 99th percentile at 1 (network units).
    traj : Trajectory
        The fully sampled trajectory.
    truth : ndarray, shape (N, N), float32
        Noiseless sodium signal (TSC × T1 saturation × T2* decay at TE) block-averaged to the
        matrix and scaled to its 99th percentile (no coil profile, no bias); compare images
        with it after a least-squares intensity fit.
    proton : ndarray, shape (N, N), float32
        The noisy 1H image at the matrix (magnitude), scaled to its 99th percentile.
    body : ndarray of bool, shape (N, N)
        Pixels at least half inside the body.
    rois : dict of str to ndarray of bool
        ``"fibroglandular"`` (≥ 90 % pure) and one entry per lesion name (≥ 50 % lesion).
    lesions : list of dict
        The subject's lesion descriptions (``name``, ``kind``, ``tsc_ratio`` …).
    sigma : float
        k-space noise SD per coil (Re/Im), in the scaled units.
    reference : dict of str to ndarray (N, N), float32
        The noiseless, fully sampled reconstruction per coil combination (gridding of the
        whitened noiseless k-space, combined, magnitude, same scale as ``kspace``): the
        reference a real study would have, with the coil shading and the point-spread
        function of the acquisition in it.
    proton_snr : float
        The SNR the 1H image was acquired at.
    """

    subject: Subject
    cohort: str
    kspace: np.ndarray
    traj: Trajectory
    truth: np.ndarray
    proton: np.ndarray
    body: np.ndarray
    rois: dict
    lesions: list
    sigma: float
    reference: dict
    proton_snr: float


def receive_maps(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The array's sensitivities times a random smooth bias field, ``(N_COILS, *shape)``.

    Draws the bias field's five log-coefficients (SD :data:`BIAS_SD`) from ``rng``.
    """
    from nacode.physics import coils

    coefficients = np.concatenate([[0.0], rng.normal(0.0, BIAS_SD, 5)])
    return coils.coil_maps(shape, N_COILS) * coils.bias_field(shape, coefficients)


def proton_image(subject: Subject, matrix: tuple[int, int], snr: float,
                 rng: np.random.Generator) -> np.ndarray:
    """The 1H image at ``matrix``: block average, complex noise at ``snr``, magnitude.

    ``snr`` is the mean fibroglandular 1H signal (the mean 1H signal of the subject where it
    has no fibroglandular tissue) over the noise SD (of each of Re and Im).
    """
    from nacode.physics.acquire import downsample
    from nacode.physics.noise import complex_noise

    clean = downsample(subject.proton, matrix)
    names = {t.name for t in subject.tissues.values()}
    fgt = (downsample(subject.mask("fibroglandular").astype(float), matrix) >= 0.9
           if "fibroglandular" in names else np.zeros(clean.shape, bool))
    level = float(clean[fgt].mean()) if fgt.any() else float(clean[clean > 0].mean())
    return np.abs(clean + complex_noise(clean.shape, level / snr, rng))


def scan_subject(subject: Subject, cohort: str, matrix: int, rng: np.random.Generator, *,
                 snr: float = SNR) -> BreastScan:
    """Acquire one subject: coil maps × bias, radial k-space with T2* decay, coil noise, a
    noise pre-scan (whitening), the noiseless reference and a noisy 1H image."""
    from nacode.physics import coils, noise
    from nacode.physics.acquire import acquire, downsample, signal_image
    from nacode.physics.nufft import density_compensation, gridding

    traj = full_trajectory(matrix)
    maps = receive_maps(subject.shape, rng)
    clean = acquire(subject, traj, BREAST_SEQUENCE, coil_maps=maps)
    weights = density_compensation(traj)
    truth_fine = signal_image(subject, BREAST_SEQUENCE, te_ms=TE_MS)
    truth = downsample(truth_fine, traj.matrix)
    sos_clean = coils.sum_of_squares(gridding(clean, traj, weights))
    rois = {"fibroglandular": downsample(subject.mask("fibroglandular").astype(float),
                                         traj.matrix) >= 0.9}
    fgt_signal = float(sos_clean[rois["fibroglandular"]].mean())
    unit = noise.gridded_noise_sd(1.0, weights, traj.matrix)
    sigma = fgt_signal / snr / unit
    covariance = noise.correlated_covariance(N_COILS, seed=int(rng.integers(2**31)))
    covariance = covariance / np.real(np.diag(covariance)).mean() * sigma**2
    measured = clean + noise.coil_noise(clean.shape[1:], covariance, rng)
    prescan = noise.coil_noise((N_PRESCAN,), covariance, rng)
    whitening = noise.whitening_matrix(noise.noise_covariance(prescan))
    kspace, clean = noise.whiten(measured, whitening), noise.whiten(clean, whitening)
    scale = float(np.percentile(coils.sum_of_squares(gridding(kspace, traj, weights)), 99))
    for lesion in subject.extra.get("lesions", []):
        rois[lesion["name"]] = downsample(subject.mask(lesion["name"]).astype(float),
                                          traj.matrix) >= 0.5
    reference = {c: (np.abs(_combine(gridding(clean, traj, weights), c)) / scale
                     ).astype(np.float32) for c in COMBINES}
    proton_snr = float(rng.uniform(*PROTON_SNR))
    proton = proton_image(subject, traj.matrix, proton_snr, rng)
    return BreastScan(
        subject=subject, cohort=cohort, kspace=kspace / scale, traj=traj,
        truth=(truth / np.percentile(truth, 99)).astype(np.float32),
        proton=(proton / np.percentile(proton, 99)).astype(np.float32),
        body=downsample((subject.labels > 0).astype(float), traj.matrix) >= 0.5,
        rois=rois, lesions=list(subject.extra.get("lesions", [])), sigma=sigma / scale,
        reference=reference, proton_snr=proton_snr)


def cohort(n_healthy: int, n_patients: int, matrix: int, *, seed: int = 0,
           progress: bool = True) -> list[BreastScan]:
    """Healthy subjects (seeds ``seed + i``) then patients (1–2 tumours, the last sodium-only).

    Patient ``j`` has seed ``seed + 1000 + j`` and ``1 + j % 2`` tumours, so every patient has
    a sodium-only lesion and half also have a visible one.
    """
    from tqdm.auto import tqdm

    from nacode.anatomy.breast import breast_subject

    jobs = [(seed + i, "healthy", 0) for i in range(n_healthy)]
    jobs += [(seed + 1000 + j, "patient", 1 + j % 2) for j in range(n_patients)]
    scans = []
    for subject_seed, kind, tumours in tqdm(jobs, desc="virtual breasts", disable=not progress):
        subject = breast_subject(subject_seed, n_tumours=tumours, sodium_only=tumours > 0)
        scans.append(scan_subject(subject, kind, matrix,
                                  np.random.default_rng([seed, subject_seed])))
    return scans


@dataclass(frozen=True)
class Recon:
    """A gridded, coil-combined dataset at one acceleration and combination.

    Attributes
    ----------
    kspace : ndarray, shape (n_coils, n_spokes / R, n_samples)
    traj : Trajectory
    weights : ndarray, shape (n_spokes / R, n_samples)
        Density compensation.
    image : ndarray, shape (N, N), float32
        Magnitude of the combined gridded image (the "gridding" method's output).
    maps : ndarray, shape (n_coils, N, N), complex128
        Coil maps estimated from the data for this combination.
    """

    kspace: np.ndarray
    traj: Trajectory
    weights: np.ndarray
    image: np.ndarray
    maps: np.ndarray


def _combine(images: np.ndarray, method: str) -> np.ndarray:
    from nacode.physics import coils

    if method == "sos":
        return coils.sum_of_squares(images).astype(np.complex128)
    if method == "adaptive":
        return coils.walsh(images)
    raise ValueError(f"unknown coil combination {method!r}: expected one of {COMBINES}")


def reconstruct(scan: BreastScan, rate: int, combine: str) -> Recon:
    """Grid the R-fold undersampled data, combine the coils, estimate the coil maps."""
    from nacode.physics.nufft import density_compensation

    traj = undersample(scan.traj, rate)
    return grid_and_maps(scan.kspace[:, ::rate], traj, density_compensation(traj), combine)


def grid_and_maps(kspace: np.ndarray, traj: Trajectory, weights: np.ndarray, combine: str
                  ) -> Recon:
    """Grid multi-coil k-space, combine the coils, and estimate the coil maps from the data.

    Parameters
    ----------
    kspace : ndarray, shape ``(n_coils, *traj.times_ms.shape)``, complex
    traj : Trajectory
    weights : ndarray, shape ``traj.times_ms.shape``
        Density compensation.
    combine : {"sos", "adaptive"}
        Coil combination (one coil: "adaptive" keeps the magnitude, maps carry its phase).
    """
    from nacode.physics.nufft import gridding

    images = gridding(kspace, traj, weights)
    combined = _combine(images, combine)
    radius = np.linalg.norm(traj.coord, axis=-1) / (traj.matrix[0] / 2)
    window = np.where(radius <= LOW_RES, np.cos(np.pi * radius / (2 * LOW_RES)) ** 2, 0.0)
    low = gridding(kspace, traj, weights * window)
    low_combined = _combine(low, combine)
    # divide by the magnitude only: the maps keep each coil's phase, so a real, non-negative
    # image x reproduces the coil images as maps · x (a Walsh combination's smooth phase
    # would otherwise be lost with its magnitude image)
    magnitude = np.abs(low_combined)
    maps = low / np.maximum(magnitude, 0.05 * magnitude.max())
    return Recon(kspace=kspace, traj=traj, weights=weights,
                 image=np.abs(combined).astype(np.float32), maps=maps)
