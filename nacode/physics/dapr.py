"""3D density-adapted radial sodium imaging, modelled through its Cartesian equivalent.

The brain study acquires 4 mm isotropic sodium volumes with a centre-out 3D radial sequence.
In the density-adapted variant (DA-3DPR, Nagel et al. 2009) each spoke runs at constant
gradient up to ``k0`` and then slows so that the sampling density stays uniform out to
``k_max``; after density compensation and gridding the reconstructed volume is therefore the
inverse FFT of the object's spectrum inside the k-space sphere ``|k| ≤ k_max``, each
frequency weighted by the T2* decay at the time it was sampled, plus complex noise whose
k-space standard deviation is flat outside the core and falls as ``|k| / k0`` inside it
(the oversampled centre averages more samples). This module computes exactly that on the
Cartesian grid of the acquisition, with FFTs instead of a 3D NUFFT — the finite sphere, the
readout's T2* blurring and the noise colour are kept; undersampling streaks are not (the
spokes are taken at or near Nyquist).

Positions follow the package convention: voxel ``i`` of an axis of ``N`` voxels sits at
``(i − N//2)`` voxels from the centre, the origin of the centred FFT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nacode.anatomy.subject import Subject
from nacode.physics.acquire import tissue_curves, voxel_image
from nacode.physics.signal import Sequence, decay_basis

#: The brain study's sequence: TR 50 ms, 90° excitation, one excitation per spoke.
BRAIN_SEQUENCE = Sequence(tr_ms=50.0, flip_deg=90.0, excitations_per_shot=1)


@dataclass(frozen=True)
class Readout:
    """Timing of a density-adapted radial spoke.

    Attributes
    ----------
    te_ms : float
        Time of the k-space centre after excitation, ms.
    readout_ms : float
        Duration from ``k = 0`` to ``k_max``, ms.
    k0_fraction : float
        ``k0 / k_max``: the radius where the density adaptation starts.
    spokes : int
        Spokes per acquisition (sets the scan time with the sequence's TR).
    """

    te_ms: float = 0.3
    readout_ms: float = 10.0
    k0_fraction: float = 0.25
    spokes: int = 8000

    def __post_init__(self) -> None:
        if not (self.te_ms >= 0 and self.readout_ms > 0 and 0 < self.k0_fraction <= 1
                and self.spokes >= 1):
            raise ValueError(f"invalid readout {self}")

    def times_ms(self, radius: np.ndarray) -> np.ndarray:
        """Sample time (ms) at a relative radius ``|k| / k_max`` in [0, 1].

        Linear up to ``k0`` (time ``T0``), then ``t − T0 = T0 (k³ − k0³) / (3 k0³)`` so that
        ``k² dk/dt`` (the density per shell) is constant; ``T0`` makes ``k_max`` fall at
        ``te_ms + readout_ms``.
        """
        r = np.clip(np.asarray(radius, dtype=float), 0.0, 1.0)
        k0 = self.k0_fraction
        t0 = self.readout_ms / (1.0 + (k0**-3 - 1.0) / 3.0)
        outer = t0 + t0 * (r**3 - k0**3) / (3.0 * k0**3)
        return self.te_ms + np.where(r <= k0, t0 * r / k0, outer)

    def scan_time_s(self, seq: Sequence) -> float:
        """Duration of one acquisition: spokes × excitations × TR, in s."""
        return self.spokes * seq.excitations_per_shot * seq.tr_ms * 1e-3


#: The brain study's readout: 8,000 spokes at TR 50 ms → 6 min 40 s per acquisition.
BRAIN_READOUT = Readout()


def radius(matrix: tuple[int, ...]) -> np.ndarray:
    """Relative k-space radius ``|k| / k_max`` of each Cartesian frequency, centred layout.

    ``k_max`` is ``N/2`` cycles per field of view (the smallest axis).
    """
    axes = [(np.arange(n) - n // 2) / (min(matrix) / 2) for n in matrix]
    grids = np.meshgrid(*axes, indexing="ij")
    return np.sqrt(sum(g**2 for g in grids))


def noise_weight(matrix: tuple[int, ...], readout: Readout) -> np.ndarray:
    """Relative noise SD per frequency after density compensation: ``min(1, |k| / k0)``.

    Zero outside the sphere (not sampled). Inside ``k0`` the spokes are denser than Nyquist,
    and averaging ``(k0/|k|)²`` samples lowers the SD by ``|k| / k0``; the centre sample
    (``k = 0``) gets the weight of the first shell rather than zero.
    """
    r = radius(matrix)
    first = 1.0 / (min(matrix) / 2)
    weight = np.minimum(1.0, np.maximum(r, first) / readout.k0_fraction)
    return np.where(r <= 1.0, weight, 0.0)


def _centred_fft(volume: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(volume)))


def _centred_ifft(spectrum: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(spectrum)))


def acquire_kspace(subject: Subject, matrix: tuple[int, int, int], *,
                   seq: Sequence = BRAIN_SEQUENCE, readout: Readout = BRAIN_READOUT,
                   readout_decay: bool = True, tol: float = 1e-5) -> np.ndarray:
    """Noiseless k-space of a 3D subject on the acquisition matrix (centred layout).

    Parameters
    ----------
    subject : Subject
        3D subject; its fine grid must be an integer multiple of ``matrix`` per axis.
    matrix : tuple of 3 int
        Acquisition matrix (e.g. 60³ for 4 mm over 240 mm).
    seq, readout : Sequence, Readout
        T1 saturation (TR, flip) and sample timing.
    readout_decay : bool
        If False every frequency sees the object at TE (no T2* blurring).
    tol : float
        Relative error accepted in the low-rank decay model.

    Returns
    -------
    ndarray, shape ``matrix``, complex128
        Spectrum scaled so that its inverse FFT (:func:`reconstruct`) is in signal units
        (TSC × saturation × decay, mM-like), zero outside the sampled sphere.
    """
    if subject.ndim != 3 or len(matrix) != 3:
        raise ValueError(f"need a 3D subject and matrix, got {subject.shape} and {matrix}")
    if any(f % m for f, m in zip(subject.shape, matrix, strict=True)):
        raise ValueError(f"fine grid {subject.shape} is not an integer multiple of {matrix}")
    r = radius(matrix)
    grid = np.linspace(0.0, 1.0, 257)
    times = readout.times_ms(grid) if readout_decay else np.full(grid.size, readout.te_ms)
    coefficients, basis, _ = decay_basis(tissue_curves(subject, seq, times), tol=tol)
    crop = tuple(slice(f // 2 - m // 2, f // 2 - m // 2 + m)
                 for f, m in zip(subject.shape, matrix, strict=True))
    scale = np.prod(matrix) / np.prod(subject.shape)
    inside = r <= 1.0
    kspace = np.zeros(matrix, dtype=np.complex128)
    for rank in range(basis.shape[0]):
        weight = np.interp(np.minimum(r, 1.0), grid, basis[rank])
        spectrum = _centred_fft(voxel_image(subject, coefficients[:, rank]))[crop]
        kspace += weight * spectrum
    return kspace * inside * scale


def add_noise(kspace: np.ndarray, sigma: float, readout: Readout, rng: np.random.Generator
              ) -> np.ndarray:
    """k-space plus complex noise giving an image-domain SD of ``sigma`` per Re/Im channel.

    The k-space SD follows :func:`noise_weight`; ``sigma`` is the SD of the reconstructed
    (complex) image's real and imaginary parts, so the magnitude image has background
    Rayleigh noise of mean ``sigma·√(π/2)``.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be ≥ 0, got {sigma}")
    weight = noise_weight(kspace.shape, readout)
    n = kspace.size
    sigma_k = sigma * n / np.sqrt((weight**2).sum())
    noise = rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
    return kspace + sigma_k * weight * noise


def reconstruct(kspace: np.ndarray) -> np.ndarray:
    """Magnitude image (float32, shape of ``kspace``) of a centred spectrum."""
    return np.abs(_centred_ifft(kspace)).astype(np.float32)
