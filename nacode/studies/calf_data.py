"""Training data of the calf CNN: a 1H corpus turned into paired spiral images (paper 2.1).

Corpus. The paper used 1,893 axial fat-suppressed knee DICOM slices of fastMRI. By default
nacode uses axial slices of virtual brains — the MNI152 T1 template under each subject's own
smooth deformation (:func:`nacode.anatomy.brain.brain_subject`, calibration tubes removed) —
rotated and flipped at random, plus procedural calf 1H images. Each brain or calf is one
*volume*; the 55/20/25 split is by volume, never by slice. With ``NACODE_FASTMRI_DIR`` set,
:func:`fastmri_corpus` reads the knee DICOM set instead. The corpus subjects are drawn with
``texture=False`` — the data the committed models were trained on (their 1H images carry no
extra texture or misregistration; the brain slices keep the T1 template's own texture), so
``nacode train calf`` still reproduces them — while the sodium volunteers they are applied to
are textured.

Pairs. Each image is prepared as the paper (:func:`nacode.physics.proton.prepare_proton`),
sampled along the calf spiral, and reconstructed by gridding — the ground truth. Noise of
σ = 0.038 · max|k| per replicate is added to 150 replicates; the mean of the first NSA is
gridded — the input. Both are normalised by the input's minimum and range. The density
compensation is Pipe–Menon on the plain 80 × 80 grid, as the paper's code: it weights low
spatial frequencies up to 1.5× (see :func:`nacode.physics.nufft.density_compensation`),
which is what brings the input PSNR to the paper's values (with the accurate 2× grid
estimate they are ≈ 1.8 dB lower).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from nacode.physics import noise
from nacode.physics.nufft import density_compensation, gridding, sample_image
from nacode.physics.proton import prepare_proton
from nacode.physics.trajectory import Trajectory, spiral

NSAS = (50, 40, 30, 20, 10)
NOISE_LEVEL = 0.038
REPLICATES = 150
#: Input PSNR (dB) of the paper's synthetic test data, Table 1.
PAPER_INPUT_PSNR = {50: 29.0, 40: 28.0, 30: 26.9, 20: 25.2, 10: 22.5}
SPLIT = (0.55, 0.20, 0.25)
#: The paper's Table 1 (median ± IQR): NSA → image → (MSE ×1e-3, SSIM, PSNR dB), each a
#: (median, IQR) pair.
PAPER_TABLE1 = {
    50: {"input": ((1.3, 0.1), (0.77, 0.05), (29.0, 0.5)),
         "denoised": ((0.4, 0.1), (0.92, 0.03), (33.7, 1.0))},
    40: {"input": ((1.6, 0.2), (0.73, 0.05), (28.0, 0.5)),
         "denoised": ((0.5, 0.1), (0.91, 0.03), (33.1, 1.0))},
    30: {"input": ((2.1, 0.2), (0.68, 0.06), (26.9, 0.5)),
         "denoised": ((0.6, 0.1), (0.90, 0.03), (32.6, 0.9))},
    20: {"input": ((3.0, 0.4), (0.61, 0.06), (25.2, 0.5)),
         "denoised": ((0.7, 0.2), (0.88, 0.04), (31.6, 1.0))},
    10: {"input": ((5.7, 0.7), (0.48, 0.07), (22.5, 0.6)),
         "denoised": ((0.9, 0.2), (0.84, 0.05), (30.3, 1.1))},
}


@dataclass(frozen=True)
class ProtonSlice:
    """One 2D 1H image and the volume (subject) it comes from."""

    image: np.ndarray
    volume: str


@lru_cache(maxsize=1)
def paper_spiral() -> tuple[Trajectory, np.ndarray]:
    """The calf spiral and the paper's plain-grid Pipe–Menon weights."""
    traj = spiral()
    return traj, density_compensation(traj, grid_oversampling=1)


def brain_corpus(n_volumes: int, slices_per_volume: int, *, seed: int = 0
                 ) -> list[ProtonSlice]:
    """Axial slices of deformed MNI152 brains (2 mm), rotated and flipped at random.

    Slices are drawn from the axial positions where the brain covers at least 30 % of its
    largest cross-section; each gets a random multiple of 90° and a random flip.
    """
    from nacode.anatomy.brain import brain_subject

    rng = np.random.default_rng(seed)
    slices = []
    for v in range(n_volumes):
        subject = brain_subject(seed * 1000 + v, texture=False)  # tubes removed by label
        brain = subject.extra["brain_mask"]
        proton = np.where(np.isin(subject.labels, [t.label for t in subject.tubes]), 0.0,
                          subject.proton)
        area = brain.sum(axis=(0, 1))
        candidates = np.flatnonzero(area >= 0.3 * area.max())
        chosen = rng.choice(candidates, size=min(slices_per_volume, candidates.size),
                            replace=False)
        for z in np.sort(chosen):
            image = np.rot90(proton[:, :, z].T[::-1], k=int(rng.integers(4)))
            if rng.random() < 0.5:
                image = image[:, ::-1]
            slices.append(ProtonSlice(np.ascontiguousarray(image, dtype=np.float64),
                                      f"brain-{seed}-{v}"))
    return slices


def calf_corpus(n_subjects: int, *, seed: int = 0) -> list[ProtonSlice]:
    """Procedural calf 1H images, one volume each (seeds offset so they never meet the
    sodium volunteers of the study, which use seeds below 1000)."""
    from nacode.anatomy.calf import calf_subject

    return [ProtonSlice(calf_subject(10_000 + seed * 1000 + i, texture=False)
                        .proton.astype(np.float64), f"calf-{seed}-{i}")
            for i in range(n_subjects)]


def fastmri_corpus(folder: str | Path, *, axial: str = "AX",
                   fat_suppressed: tuple[str, ...] = ("FS", "FAT", "SPAIR", "STIR"),
                   ) -> list[ProtonSlice]:
    """Axial fat-suppressed slices of a fastMRI knee DICOM folder (one volume per series).

    A file is kept when its SeriesDescription contains ``axial`` and any of
    ``fat_suppressed`` (case-insensitive). Unreadable files are skipped; a folder with no
    matching slice raises ``ValueError`` naming the folder.
    """
    import pydicom

    folder = Path(folder)
    slices = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
            description = str(getattr(ds, "SeriesDescription", "")).upper()
            if axial.upper() not in description or not any(
                    marker.upper() in description for marker in fat_suppressed):
                continue
            image = ds.pixel_array.astype(np.float64)
        except (pydicom.errors.InvalidDicomError, AttributeError, ValueError):
            continue
        volume = str(getattr(ds, "SeriesInstanceUID", path.parent))
        slices.append(ProtonSlice(image, volume))
    if not slices:
        raise ValueError(f"{folder}: no axial fat-suppressed DICOM slices found (series "
                         f"descriptions need {axial!r} and one of {fat_suppressed}); point "
                         "NACODE_FASTMRI_DIR at the fastMRI knee DICOM folder or unset it")
    return slices


def split_by_volume(slices: list[ProtonSlice], fractions=SPLIT, *, seed: int = 0
                    ) -> dict[str, list[ProtonSlice]]:
    """Split slices into train/val/test by volume; no volume is in two parts (asserted)."""
    volumes = sorted({s.volume for s in slices})
    rng = np.random.default_rng(seed)
    order = [volumes[i] for i in rng.permutation(len(volumes))]
    n_train = round(fractions[0] * len(order))
    n_val = round(fractions[1] * len(order))
    groups = {"train": set(order[:n_train]), "val": set(order[n_train:n_train + n_val]),
              "test": set(order[n_train + n_val:])}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"]
                or groups["val"] & groups["test"]), "a volume is in two splits"
    return {name: [s for s in slices if s.volume in members] for name, members in groups.items()}


def normalise(noisy: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min–max normalisation of the noisy image, applied to both (the paper's)."""
    low, high = float(noisy.min()), float(noisy.max())
    if not high > low:
        raise ValueError("cannot normalise a constant image")
    return (noisy - low) / (high - low), (clean - low) / (high - low)


def make_pairs(image: np.ndarray, rng: np.random.Generator, nsas=NSAS
               ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Noisy/clean pairs of one 1H image at every NSA, from one set of 150 replicates.

    Returns
    -------
    dict of int to (noisy, clean)
        Normalised float32 magnitude images, shape (80, 80).
    """
    traj, weights = paper_spiral()
    prepared = prepare_proton(image, rng, matrix=traj.matrix[0])
    kspace = sample_image(prepared.image, traj)
    clean = np.abs(gridding(kspace, traj, weights))
    sigma = noise.paper_sigma(kspace, NOISE_LEVEL)
    averaged = noise.averages(kspace, sigma, nsas, rng)
    pairs = {}
    for n in nsas:
        noisy = np.abs(gridding(averaged[n], traj, weights))
        a, b = normalise(noisy, clean)
        pairs[n] = (a.astype(np.float32), b.astype(np.float32))
    return pairs


def build_dataset(slices: list[ProtonSlice], *, seed: int = 0, nsas=NSAS, progress=True
                  ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Paired arrays for a list of slices: NSA → (noisy, clean), each (n, 80, 80) float32."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    noisy = {n: [] for n in nsas}
    clean = {n: [] for n in nsas}
    for item in tqdm(slices, desc="simulating pairs", disable=not progress):
        for n, (a, b) in make_pairs(item.image, rng, nsas).items():
            noisy[n].append(a)
            clean[n].append(b)
    return {n: (np.stack(noisy[n]), np.stack(clean[n])) for n in nsas}
