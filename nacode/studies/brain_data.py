"""The brain study's cohort: 13 virtual subjects × 3 sodium acquisitions at 4 mm, and the folds.

Each subject (:func:`nacode.anatomy.brain.brain_subject`, seed ``SEED_BASE + i``) is scanned
three times with the density-adapted 3D radial model of :mod:`nacode.physics.dapr` (6 min
40 s each, 20 min in total, T2* decay during the readout), each time with fresh noise. Every
acquisition is calibrated to mM on its own four tubes (least squares through the tube means),
then divided by :data:`~nacode.denoise.dae.NORM_MM` — the network's units. The reference is
the mean of the three calibrated acquisitions, as in the paper; unlike the paper we also keep
the noiseless acquisition and the true, partial-volume TSC per 4 mm voxel.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from nacode.anatomy.subject import Subject, Tube
from nacode.denoise.dae import NORM_MM, VOXEL_MM  # the network's units and voxel size
from nacode.physics import dapr
from nacode.physics.acquire import downsample
from nacode.recon.calibration import Calibration, calibrate

N_SUBJECTS = 13
N_ACQUISITIONS = 3
SEED_BASE = 3000  # the design card's seed 003
MATRIX = (60, 60, 60)  # 4 mm over the 240 mm field of view
SNR = 10.0  # mean noiseless brain signal / noise SD per Re/Im channel, one acquisition
GROUP_SIZES = (3, 3, 3, 2, 2)
TISSUES = ("GM", "WM", "CSF")


@dataclass(frozen=True)
class BrainScan:
    """One virtual subject's three acquisitions and its ground truth at 4 mm.

    Attributes
    ----------
    seed : int
    acquisitions : ndarray, shape (3, X, Y, Z), float32
        Calibrated magnitude images in network units (mM / :data:`~nacode.denoise.dae.NORM_MM`).
    noiseless : ndarray, shape (X, Y, Z), float32
        The same acquisition without noise, calibrated likewise (T2* blur and aTSC bias kept).
    truth_mm : ndarray, shape (X, Y, Z), float32
        True TSC in mM, block-averaged from the 2 mm fine grid (partial volume).
    brain_mask : ndarray of bool, shape (X, Y, Z)
        4 mm voxels at least half inside the fine-grid brain mask.
    fractions : dict of str to ndarray
        Fine-voxel fraction of GM, WM and CSF in each 4 mm voxel.
    calibrations : tuple of Calibration
        The tube fit of each acquisition (signal units → mM).
    sigma : float
        Noise SD per Re/Im channel in signal units.
    tube_labels : ndarray of int8, shape (X, Y, Z), optional
        The calibration ROIs: ``k`` inside the ROI of the tube whose concentration is
        ``calibrations[i].concentrations[k − 1]``, 0 elsewhere (see :meth:`tube_rois`).
    """

    seed: int
    acquisitions: np.ndarray
    noiseless: np.ndarray
    truth_mm: np.ndarray
    brain_mask: np.ndarray
    fractions: dict
    calibrations: tuple
    sigma: float
    tube_labels: np.ndarray | None = None

    @property
    def reference(self) -> np.ndarray:
        """Mean of the three acquisitions (the paper's label), network units."""
        return self.acquisitions.mean(axis=0)

    def tube_rois(self) -> list[np.ndarray]:
        """The calibration ROIs (bool, shape (X, Y, Z)) in the order of the tube concentrations.

        Raises
        ------
        ValueError
            If the scan was made without its tube ROIs (a cohort cache of an older version).
        """
        if self.tube_labels is None:
            raise ValueError(f"scan of seed {self.seed} has no tube ROIs; regenerate the cohort "
                             "(delete its cache file under _build/cache/brain)")
        return [self.tube_labels == k
                for k in range(1, len(self.calibrations[0].concentrations) + 1)]


def cylinder_rois(tubes: tuple[Tube, ...], matrix: tuple[int, int, int], voxel_mm: float,
                  length_mm: float, *, margin: float = 1.0) -> list[np.ndarray]:
    """ROIs inside tubes standing along z: radius and half-length shrunk by ``margin`` voxels.

    ``Tube.centre_mm`` is ``(x, y, z)`` relative to the grid centre; voxel ``i`` sits at
    ``(i − N//2) · voxel_mm``.
    """
    x, y, z = np.meshgrid(*[(np.arange(n) - n // 2) * voxel_mm for n in matrix], indexing="ij")
    rois = []
    for tube in tubes:
        cx, cy, cz = tube.centre_mm
        radius = tube.radius_mm - margin * voxel_mm
        half = length_mm / 2 - margin * voxel_mm
        roi = (((x - cx) ** 2 + (y - cy) ** 2 <= radius**2) & (np.abs(z - cz) <= half))
        if radius <= 0 or half <= 0 or not roi.any():
            raise ValueError(f"tube at {tube.centre_mm} mm leaves an empty ROI at "
                             f"{voxel_mm} mm voxels with a {margin}-voxel margin")
        rois.append(roi)
    return rois


def scan_subject(subject: Subject, rng: np.random.Generator, *, snr: float = SNR,
                 n_acquisitions: int = N_ACQUISITIONS) -> BrainScan:
    """Acquire, reconstruct and calibrate a subject ``n_acquisitions`` times.

    Parameters
    ----------
    subject : Subject
        A brain subject (fine grid an integer multiple of :data:`MATRIX`).
    rng : numpy.random.Generator
        Source of the acquisitions' noise.
    snr : float
        Mean noiseless signal inside the brain mask divided by the noise SD per channel.
    n_acquisitions : int
        Repeated acquisitions (independent noise, same anatomy).
    """
    kspace = dapr.acquire_kspace(subject, MATRIX)
    noiseless = dapr.reconstruct(kspace)
    mask = downsample(subject.extra["brain_mask"].astype(np.float32), MATRIX) >= 0.5
    sigma = float(noiseless[mask].mean() / snr)
    rois = cylinder_rois(subject.tubes, MATRIX, VOXEL_MM, subject.extra["tube_length_mm"])
    concentrations = [t.concentration for t in subject.tubes]
    images, fits = [], []
    for _ in range(n_acquisitions):
        image = dapr.reconstruct(dapr.add_noise(kspace, sigma, dapr.BRAIN_READOUT, rng))
        fit = calibrate(image, rois, concentrations)
        images.append(fit.to_mm(image) / NORM_MM)
        fits.append(fit)
    truth_fit = calibrate(noiseless, rois, concentrations)
    labels = np.zeros(MATRIX, np.int8)
    for k, roi in enumerate(rois, start=1):
        labels[roi] = k
    return BrainScan(
        seed=subject.seed,
        acquisitions=np.stack(images).astype(np.float32),
        noiseless=(truth_fit.to_mm(noiseless) / NORM_MM).astype(np.float32),
        truth_mm=downsample(subject.tsc, MATRIX).astype(np.float32),
        brain_mask=mask,
        fractions={name: downsample(subject.mask(name).astype(np.float32), MATRIX)
                   .astype(np.float32) for name in TISSUES},
        calibrations=tuple(fits), sigma=sigma, tube_labels=labels)


def cohort(n_subjects: int = N_SUBJECTS, *, seed: int = SEED_BASE, snr: float = SNR,
           progress: bool = True) -> list[BrainScan]:
    """Generate and scan the cohort (subject ``i`` has seed ``seed + i``; deterministic)."""
    from tqdm.auto import tqdm

    from nacode.anatomy.brain import brain_subject

    scans = []
    for i in tqdm(range(n_subjects), desc="virtual brains", disable=not progress):
        subject = brain_subject(seed + i, voxel_mm=2, acquisition_mm=VOXEL_MM)
        scans.append(scan_subject(subject, np.random.default_rng([seed, i]), snr=snr))
    return scans


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold: indices into the cohort."""

    index: int
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]


def folds(n_subjects: int = N_SUBJECTS, sizes: tuple[int, ...] = GROUP_SIZES, *,
          seed: int = SEED_BASE) -> list[Fold]:
    """Five folds by subject: groups of 3, 3, 3, 2, 2; the held-out group gives one
    validation subject and the rest are test subjects.

    Raises
    ------
    ValueError
        If the group sizes do not add up to ``n_subjects``, a group has fewer than two
        subjects, or (a bug) a subject would take two roles in a fold or be tested twice.
    """
    if sum(sizes) != n_subjects or min(sizes) < 2:
        raise ValueError(f"group sizes {sizes} must add up to {n_subjects}, each ≥ 2 "
                         "(one validation and at least one test subject)")
    order = np.random.default_rng(seed).permutation(n_subjects).tolist()
    bounds = np.cumsum((0, *sizes))
    groups = [tuple(order[a:b]) for a, b in itertools.pairwise(bounds)]
    out, tested = [], []
    for k, group in enumerate(groups):
        train = tuple(s for g, other in enumerate(groups) if g != k for s in other)
        fold = Fold(index=k + 1, train=train, val=group[:1], test=group[1:])
        roles = [set(fold.train), set(fold.val), set(fold.test)]
        if (sum(map(len, roles)) != n_subjects or set().union(*roles) != set(range(n_subjects))
                or any(a & b for i, a in enumerate(roles) for b in roles[i + 1:])):
            raise ValueError(f"fold {fold.index}: a subject is in two roles or missing")
        tested.extend(fold.test)
        out.append(fold)
    if len(tested) != len(set(tested)):
        raise ValueError("a subject is a test subject in more than one fold")
    return out


def patch_set(scans: list[BrainScan], subjects, *, added_noise: float):
    """A :class:`~nacode.denoise.dae_train.PatchSet` of every acquisition of ``subjects``.

    ``added_noise`` is the SD of the training noise as a fraction of each acquisition's own
    noise SD (in network units); 0 gives a validation set.
    """
    from nacode.denoise.dae_train import PatchSet

    inputs, targets, masks, sds = [], [], [], []
    for s in subjects:
        scan = scans[s]
        for acq, fit in zip(scan.acquisitions, scan.calibrations, strict=True):
            inputs.append(acq)
            targets.append(scan.reference)
            masks.append(scan.brain_mask)
            sds.append(added_noise * scan.sigma / fit.slope / NORM_MM)
    return PatchSet(np.stack(inputs), np.stack(targets), np.stack(masks),
                    np.asarray(sds, dtype=np.float32))


def save_cohort(scans: list[BrainScan], path) -> None:
    """Write the cohort to one compressed ``.npz`` (atomically)."""
    from nacode.results import atomic_write

    arrays = {}
    for i, scan in enumerate(scans):
        arrays.update({f"{i}/acquisitions": scan.acquisitions, f"{i}/noiseless": scan.noiseless,
                       f"{i}/truth_mm": scan.truth_mm, f"{i}/brain_mask": scan.brain_mask,
                       f"{i}/seed": np.int64(scan.seed), f"{i}/sigma": np.float64(scan.sigma),
                       f"{i}/calibrations": np.array([[c.slope, c.intercept, c.r2]
                                                      for c in scan.calibrations]),
                       f"{i}/signals": np.array([c.signals for c in scan.calibrations]),
                       f"{i}/concentrations": scan.calibrations[0].concentrations})
        if scan.tube_labels is not None:
            arrays[f"{i}/tube_labels"] = scan.tube_labels
        arrays.update({f"{i}/fraction_{k}": v for k, v in scan.fractions.items()})
    with atomic_write(path, "wb") as handle:
        np.savez_compressed(handle, n=np.int64(len(scans)), **arrays)


def load_cohort(path) -> list[BrainScan]:
    """Read a cohort written by :func:`save_cohort`."""
    with np.load(path) as data:
        scans = []
        for i in range(int(data["n"])):
            fits = tuple(Calibration(float(a), float(b), float(r2), data[f"{i}/concentrations"],
                                     signals)
                         for (a, b, r2), signals in zip(data[f"{i}/calibrations"],
                                                        data[f"{i}/signals"], strict=True))
            scans.append(BrainScan(
                seed=int(data[f"{i}/seed"]), acquisitions=data[f"{i}/acquisitions"],
                noiseless=data[f"{i}/noiseless"], truth_mm=data[f"{i}/truth_mm"],
                brain_mask=data[f"{i}/brain_mask"],
                fractions={k: data[f"{i}/fraction_{k}"] for k in TISSUES},
                calibrations=fits, sigma=float(data[f"{i}/sigma"]),
                tube_labels=data[f"{i}/tube_labels"] if f"{i}/tube_labels" in data else None))
    return scans
