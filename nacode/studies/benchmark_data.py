"""The cross-study benchmark's test bench: one 2D case form for all three anatomies.

Each study contributes cases of the same form: noiseless multi-coil k-space (one coil for the
calf and the brain), a trajectory with its density compensation, the true TSC in mM, the
matching 1H image and tissue ROIs (:class:`Case`, :func:`make_case`).

- **calf**: virtual calves (unseen seeds) on the calf paper's spiral, 80 × 80, one coil,
  with the accurate (2× grid) density compensation rather than the paper's plain-grid one,
  whose extra low-frequency weight would make the noiseless gridded reference differ from
  what a model-based reconstruction converges to.
- **brain**: the largest axial slice of unseen deformed MNI152 brains, 2D radial at 4 mm
  (64 × 64, TR 50 ms), one coil — the brain paper's 3D density-adapted radial acquisition
  has no 2D k-space of its own, so this is our substitute.
- **breast**: virtual patients with one sodium-only tumour, 8 coils with a bias field, fully
  sampled radial (:mod:`nacode.studies.breast_data`).

Noise is white complex Gaussian per coil, its SD set so that the gridded image has a given
SNR: mean noiseless signal in the tissue / noise SD — the same definition and the same levels
for every study (:meth:`Case.sigma`). Every image is put in mM with one factor per case (the
least-squares fit of the noiseless gridded image to the true TSC, the ideal tube
calibration), shared by all methods. :func:`score` compares PSNR and SSIM with the noiseless
gridded image (what a denoiser can recover) and ROI means with the true concentration (what a
reader of the map wants).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nacode.physics.trajectory import Trajectory
from nacode.studies import breast_data as bd

STUDIES = ("calf", "brain", "breast")
#: Seeds of the validation case and the first test case per study (none used in training).
SEEDS = {"calf": 200, "brain": 3100, "breast": 1500}
BRAIN_MATRIX = 64  # 4 mm voxels over 256 mm
PROTON_SNR = 40.0  # of the cases' 1H images (breast_data.proton_image)


@dataclass(frozen=True)
class Case:
    """One 2D virtual subject of a study, acquired without noise.

    Attributes
    ----------
    study : str
    seed : int
    traj : Trajectory
    weights : ndarray, shape ``traj.times_ms.shape``
        Density compensation used by gridding, CS and the DIPs.
    clean : ndarray, shape ``(n_coils, *traj.times_ms.shape)``, complex128
    truth_mm : ndarray, shape (N, N), float64
        True TSC block-averaged to the matrix, mM.
    proton : ndarray, shape (N, N), float32
        The 1H image at the matrix with noise at :data:`PROTON_SNR`, 99th percentile scaled
        to 1.
    mask : ndarray of bool, shape (N, N)
        Sodium-containing tissue (tubes excluded), ≥ 50 % of the voxel.
    rois : dict of str to ndarray of bool
        Per tissue, voxels ≥ 90 % filled by it (ROIs of fewer than 4 voxels are dropped).
    noiseless : ndarray, shape (N, N), float64
        Gridded image of ``clean``, in mM.
    factor : float
        Signal units → mM (least squares of the noiseless image on ``truth_mm`` in ``mask``).
    signal : float
        Mean noiseless gridded signal in ``mask``, signal units.
    """

    study: str
    seed: int
    traj: Trajectory
    weights: np.ndarray
    clean: np.ndarray
    truth_mm: np.ndarray
    proton: np.ndarray
    mask: np.ndarray
    rois: dict
    noiseless: np.ndarray
    factor: float
    signal: float

    def sigma(self, snr: float) -> float:
        """k-space noise SD per coil (Re/Im) giving the gridded image this SNR."""
        from nacode.physics.noise import gridded_noise_sd

        return self.signal / snr / gridded_noise_sd(1.0, self.weights, self.traj.matrix)

    def noisy(self, snr: float, rng: np.random.Generator) -> np.ndarray:
        """``clean`` plus white complex Gaussian noise at ``snr``."""
        from nacode.physics.noise import complex_noise

        return self.clean + complex_noise(self.clean.shape, self.sigma(snr), rng)


def _subject_case(study: str, subject, traj: Trajectory, weights: np.ndarray, seq,
                  maps: np.ndarray | None) -> Case:
    from nacode.physics.acquire import acquire, downsample
    from nacode.recon.calibration import tissue_roi

    clean = acquire(subject, traj, seq, coil_maps=maps)
    clean = clean[None] if maps is None else clean
    matrix = traj.matrix
    tissue_labels = [label for label, t in subject.tissues.items()
                     if t.tsc > 0 and not t.name.startswith("tube")]
    mask = downsample(np.isin(subject.labels, tissue_labels).astype(float), matrix) >= 0.5
    rois = {}
    for label in tissue_labels:
        roi = tissue_roi(subject, subject.tissues[label].name, matrix)
        if roi.sum() >= 4:
            rois[subject.tissues[label].name] = roi
    truth = downsample(subject.tsc, matrix)
    image = bd.grid_and_maps(clean, traj, weights, "adaptive").image.astype(np.float64)
    factor = float((truth[mask] * image[mask]).sum() / (image[mask] ** 2).sum())
    # the 1H image a dTV prior gets is a separate, noisy acquisition (SNR 40)
    proton = bd.proton_image(subject, matrix, PROTON_SNR, np.random.default_rng([subject.seed, 1]))
    return Case(study=study, seed=subject.seed, traj=traj, weights=weights, clean=clean,
                truth_mm=truth, proton=(proton / np.percentile(proton, 99)).astype(np.float32),
                mask=mask, rois=rois, noiseless=image * factor, factor=factor,
                signal=float(image[mask].mean()))


def make_case(study: str, seed: int, *, breast_matrix: int = 64) -> Case:
    """Build one case of ``study`` from ``seed`` (deterministic)."""
    if study == "calf":
        from nacode.anatomy.calf import calf_subject
        from nacode.physics.signal import CALF_SEQUENCE
        from nacode.studies.primer import calf_spiral

        traj, weights = calf_spiral()
        return _subject_case(study, calf_subject(seed), traj, weights, CALF_SEQUENCE, None)
    if study == "brain":
        from dataclasses import replace

        from nacode.anatomy.brain import brain_subject
        from nacode.physics.dapr import BRAIN_SEQUENCE
        from nacode.physics.nufft import density_compensation
        from nacode.physics.trajectory import radial

        volume = brain_subject(seed)
        z = int(np.argmax(volume.extra["brain_mask"].sum(axis=(0, 1))))
        # pad the 240 mm grid to 256 mm so that 4 mm voxels give a 64 × 64 matrix (the DIP's
        # U-Net needs sides divisible by 8)
        pad = ((BRAIN_MATRIX * 2 - volume.shape[0]) // 2,) * 2
        texture = volume.tsc_texture
        subject = replace(volume, labels=np.pad(volume.labels[:, :, z], pad),
                          proton=np.pad(volume.proton[:, :, z], pad),
                          voxel_mm=volume.voxel_mm[:2], tubes=(), extra={},
                          tsc_texture=None if texture is None else
                          np.pad(texture[:, :, z], pad, constant_values=1.0))
        traj = radial(matrix=BRAIN_MATRIX, fov_mm=subject.fov_mm[0])
        return _subject_case(study, subject, traj, density_compensation(traj), BRAIN_SEQUENCE,
                             None)
    if study == "breast":
        from nacode.anatomy.breast import breast_subject
        from nacode.physics.nufft import density_compensation

        subject = breast_subject(seed, n_tumours=1, sodium_only=True)
        traj = bd.full_trajectory(breast_matrix)
        maps = bd.receive_maps(subject.shape, np.random.default_rng(seed))
        return _subject_case(study, subject, traj, density_compensation(traj),
                             bd.BREAST_SEQUENCE, maps)
    raise ValueError(f"unknown study {study!r}: expected one of {STUDIES}")


def cases(study: str, n_test: int, *, breast_matrix: int = 64) -> tuple[Case, list[Case]]:
    """The validation case and ``n_test`` test cases of a study (consecutive seeds)."""
    first = SEEDS[study]
    built = [make_case(study, first + i, breast_matrix=breast_matrix) for i in range(n_test + 1)]
    return built[0], built[1:]


def score(case: Case, image_mm: np.ndarray) -> dict[str, float]:
    """PSNR and SSIM against the noiseless image (its range), and TSC errors in mM.

    ``tsc_error`` is the mean over the case's tissue ROIs of ``|mean(image) − mean(truth)|``
    (quantification in regions); ``tsc_voxel_error`` the median over the tissue mask of
    ``|image − truth|`` (the map voxel by voxel).
    """
    from nacode.evaluate import metrics

    reference = case.noiseless
    span = float(reference.max() - reference.min())
    errors = [abs(float(image_mm[roi].mean()) - float(case.truth_mm[roi].mean()))
              for roi in case.rois.values()]
    voxels = np.abs(image_mm[case.mask] - case.truth_mm[case.mask])
    return {"psnr": metrics.psnr(reference, image_mm, span),
            "ssim": metrics.ssim(reference, image_mm, span),
            "tsc_error": float(np.mean(errors)), "tsc_voxel_error": float(np.median(voxels))}


@dataclass(frozen=True)
class Noisy:
    """One case at one noise level: its gridded reconstruction and data scale."""

    case: Case
    snr: float
    recon: bd.Recon
    scale: float  # 99th percentile of the gridded image, signal units

    @property
    def image_mm(self) -> np.ndarray:
        return self.recon.image.astype(np.float64) * self.case.factor


def acquire_noisy(case: Case, snr: float, seed: int) -> Noisy:
    """Noisy k-space at ``snr`` (seeded), gridded and coil-combined (adaptive)."""
    kspace = case.noisy(snr, np.random.default_rng([seed, case.seed, int(snr * 1000)]))
    recon = bd.grid_and_maps(kspace, case.traj, case.weights, "adaptive")
    return Noisy(case, snr, recon, float(np.percentile(recon.image, 99)))
