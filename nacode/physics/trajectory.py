"""k-space trajectories with the acquisition time of every sample.

Coordinates follow sigpy's convention: grid units (cycles per field of view), so that a matrix
of N samples spans ``[-N/2, N/2]``; the last axis holds (ky, kx) in 2D or (kx, ky, kz) in 3D,
matching the image axes. Times are in ms after the excitation (TE included).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: 23Na gyromagnetic ratio / 2π in Hz/T.
GAMMA_BAR_NA = 11.262e6
GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))  # 2π(1 − 1/φ) ≈ 137.51°, for half-spokes over 2π


@dataclass(frozen=True)
class Trajectory:
    """Sample positions and times of one full acquisition (all interleaves or spokes).

    Attributes
    ----------
    coord : ndarray, shape (n_shots, n_samples, ndim), float64, read-only
        k-space positions in grid units (``|k| ≤ N/2`` reaches the matrix edge).
    times_ms : ndarray, shape (n_shots, n_samples), float64
        Time of each sample after excitation, ms (TE is the time of the first sample).
    matrix : tuple of int
        Reconstruction matrix the coordinates refer to.
    fov_mm : float
        Field of view in mm (isotropic).
    name : str
        Human-readable description.
    """

    coord: np.ndarray
    times_ms: np.ndarray
    matrix: tuple[int, ...]
    fov_mm: float
    name: str

    def __post_init__(self) -> None:
        if self.coord.shape[:-1] != self.times_ms.shape:
            raise ValueError(f"coord {self.coord.shape} and times {self.times_ms.shape} differ")
        if self.coord.shape[-1] != len(self.matrix):
            raise ValueError(f"coord has {self.coord.shape[-1]} dims, matrix {self.matrix}")
        # a read-only copy: the NUFFT plan cache then recognises it by identity (no hashing)
        for name in ("coord", "times_ms"):
            frozen = np.array(getattr(self, name), dtype=np.float64)
            frozen.flags.writeable = False
            object.__setattr__(self, name, frozen)

    @property
    def n_shots(self) -> int:
        """Number of interleaves (spiral) or spokes (radial)."""
        return self.coord.shape[0]

    @property
    def n_samples(self) -> int:
        """Total number of k-space samples."""
        return int(np.prod(self.coord.shape[:-1]))

    @property
    def readout_ms(self) -> float:
        """Duration of one readout (first to last sample of a shot), ms."""
        return float(np.max(self.times_ms[:, -1] - self.times_ms[:, 0]))

    @property
    def kmax(self) -> float:
        """Largest ``|k|`` reached, grid units."""
        return float(np.sqrt((self.coord**2).sum(-1)).max())

    def gradients_mT_m(self) -> np.ndarray:
        """Gradient waveform implied by the samples, mT/m, shape (n_shots, n_samples − 1, ndim).

        ``G = Δk / (γ̄ Δt)`` with k converted to 1/m through the field of view.
        """
        k_per_m = self.coord / (self.fov_mm * 1e-3)
        dt_s = np.diff(self.times_ms, axis=1)[..., None] * 1e-3
        return np.diff(k_per_m, axis=1) / (GAMMA_BAR_NA * dt_s) * 1e3


def spiral(
    *,
    matrix: int = 80,
    fov_mm: float = 180.0,
    n_interleaves: int = 20,
    te_ms: float = 0.23,
    g_max_mT_m: float = 24.0,
    rise_us_per_mT_m: float = 8.125,
    dwell_us: float = 14.8,
    readout_oversampling: int = 2,
) -> Trajectory:
    """Centre-out uniform-density spiral (the calf paper's), within the gradient limits.

    The arm is the Archimedean spiral of :func:`sigpy.mri.spiral` with ``alpha = 1`` (uniform
    density): ``k(θ) = k_max θ / θ_max · e^{iθ}`` with ``θ_max = 2π N / (2 n_interleaves)``
    turns' worth of angle, so that successive turns of one arm are ``n_interleaves / FOV``
    apart. sigpy's analytic time course (Kim et al. 2003) starts with an infinite slew
    rate — its first samples exceed 24 mT/m — and returns NaN samples when it switches from
    the slew- to the amplitude-limited regime, so the curve is traversed instead by
    :func:`traverse`, the constrained integration of Hargreaves' ``vds``: at every 1 µs step
    the angular acceleration is the largest the slew rate allows and the speed is capped by
    the gradient amplitude. The amplitude limit is the smaller of ``g_max`` and the largest
    gradient whose k-space step per dwell still samples the field of view
    ``readout_oversampling`` times over, ``1 / (os · FOV · γ̄ · dwell)`` (16.7 mT/m for the
    defaults), which is what sets the ≈ 7.5 ms readout. Samples are one dwell apart.

    Parameters
    ----------
    matrix : int
        Reconstruction matrix N (N × N).
    fov_mm : float
        Field of view, mm.
    n_interleaves : int
        Number of spiral arms, rotated by 2π/n.
    te_ms : float
        Echo time: time of the first sample (k = 0) after excitation, ms.
    g_max_mT_m : float
        Maximum gradient amplitude, mT/m.
    rise_us_per_mT_m : float
        Minimum rise time, µs per mT/m (slew rate = 1/rise).
    dwell_us : float
        ADC dwell time, µs.
    readout_oversampling : int
        Readout oversampling factor.

    Returns
    -------
    Trajectory
        ``coord`` of shape (n_interleaves, n, 2) in (ky, kx) order, times in ms.
    """
    if min(matrix, n_interleaves, readout_oversampling) < 1 or min(
            fov_mm, g_max_mT_m, rise_us_per_mT_m, dwell_us) <= 0 or te_ms < 0:
        raise ValueError("spiral parameters must be positive (te_ms ≥ 0)")
    fov = fov_mm * 1e-3
    g_nyquist = 1.0 / (readout_oversampling * fov * GAMMA_BAR_NA * dwell_us * 1e-6)  # T/m
    g_max = min(g_max_mT_m * 1e-3, g_nyquist)
    slew = 1e-3 / (rise_us_per_mT_m * 1e-6)  # T/m/s
    k_max = matrix / 2 / fov  # 1/m
    theta_max = 2 * np.pi * matrix / 2 / n_interleaves
    theta, t = traverse(k_max / theta_max, theta_max, GAMMA_BAR_NA * g_max, GAMMA_BAR_NA * slew)
    samples = np.arange(0.0, t[-1], dwell_us * 1e-6)
    samples = np.append(samples, t[-1]) if t[-1] - samples[-1] > 1e-9 else samples
    angle = np.interp(samples, t, theta)
    arm = k_max * angle / theta_max * np.exp(1j * angle) * fov  # grid units
    arms = arm[None, :] * np.exp(2j * np.pi * np.arange(n_interleaves) / n_interleaves)[:, None]
    coord = np.stack([arms.imag, arms.real], axis=-1)  # (ky, kx) to match (row, column)
    times = te_ms + samples * 1e3
    return Trajectory(coord=coord, times_ms=np.broadcast_to(times, coord.shape[:2]).copy(),
                      matrix=(matrix, matrix), fov_mm=fov_mm,
                      name=f"spiral {n_interleaves} interleaves, {matrix}x{matrix}")


def traverse(a: float, theta_max: float, k_speed_max: float, k_accel_max: float,
             dt: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Time course θ(t) along the Archimedean spiral ``k = a θ e^{iθ}`` within limits.

    Parameters
    ----------
    a : float
        Spiral constant, 1/m per radian.
    theta_max : float
        Final angle, rad.
    k_speed_max : float
        Largest ``|dk/dt| = γ̄ G_max``, 1/m/s.
    k_accel_max : float
        Largest ``|d²k/dt²| = γ̄ S_max``, 1/m/s².
    dt : float
        Integration step, s.

    Returns
    -------
    theta, t : ndarray
        Angle (rad) and time (s) of each integration step, from 0 to ``theta_max``.
    """
    thetas, times = [0.0], [0.0]
    theta, speed = 0.0, 0.0
    while theta < theta_max:
        # k' = a(1 + iθ)e^{iθ}, k'' = a(2i − θ)e^{iθ}: |k'' θ̇² + k' θ̈| ≤ A solved for θ̈
        d1, d2 = a * complex(1.0, theta), a * complex(-theta, 2.0)
        qa = abs(d1) ** 2
        qb = 2 * (d1.conjugate() * d2).real * speed**2
        qc = abs(d2) ** 2 * speed**4 - k_accel_max**2
        accel = (-qb + np.sqrt(max(qb**2 - 4 * qa * qc, 0.0))) / (2 * qa)
        speed = min(speed + accel * dt, k_speed_max / abs(d1))
        theta = min(theta + speed * dt, theta_max)
        thetas.append(theta)
        times.append(times[-1] + dt)
    return np.asarray(thetas), np.asarray(times)


def radial(
    *,
    matrix: int = 80,
    fov_mm: float = 180.0,
    undersampling: float = 1.0,
    golden: bool = False,
    te_ms: float = 0.2,
    readout_ms: float = 5.0,
    samples_per_spoke: int | None = None,
) -> Trajectory:
    """2D centre-out radial (half-spoke) trajectory, fully sampled or undersampled by R.

    Full sampling uses ⌈π N⌉ half-spokes (azimuthal spacing at the edge of k-space ≤ 1 grid
    unit); ``undersampling = R`` keeps ⌈π N / R⌉. Angles are uniform over 2π, or successive
    golden angles (≈ 137.5°) when ``golden``. Each spoke runs from k = 0 at TE to ``|k| = N/2`` at
    constant speed over ``readout_ms``.

    Returns
    -------
    Trajectory
        ``coord`` of shape (n_spokes, n_samples, 2) in (ky, kx) order.
    """
    if matrix < 2 or undersampling < 1 or readout_ms <= 0 or te_ms < 0:
        raise ValueError("radial needs matrix ≥ 2, undersampling ≥ 1, readout_ms > 0, te ≥ 0")
    n_spokes = int(np.ceil(np.pi * matrix / undersampling))
    n_samples = samples_per_spoke or matrix  # 2× oversampled along the half-spoke
    if golden:
        angles = np.mod(np.arange(n_spokes) * GOLDEN_ANGLE, 2 * np.pi)
    else:
        angles = np.arange(n_spokes) * 2 * np.pi / n_spokes
    radius = np.linspace(0.0, matrix / 2, n_samples)
    coord = np.stack([np.outer(np.sin(angles), radius), np.outer(np.cos(angles), radius)], -1)
    times = te_ms + np.linspace(0.0, readout_ms, n_samples)
    return Trajectory(coord=coord, times_ms=np.broadcast_to(times, coord.shape[:2]).copy(),
                      matrix=(matrix, matrix), fov_mm=fov_mm,
                      name=f"radial {n_spokes} half-spokes (R={undersampling:g}"
                           f"{', golden' if golden else ''}), {matrix}x{matrix}")


def radial3d(
    *,
    matrix: int = 56,
    fov_mm: float = 224.0,
    undersampling: float = 1.0,
    te_ms: float = 0.2,
    readout_ms: float = 5.0,
    samples_per_spoke: int | None = None,
) -> Trajectory:
    """3D centre-out radial (kooshball) trajectory with golden-means spoke directions.

    Full sampling uses ⌈π N²⌉ half-spokes (surface spacing ≤ 1 grid unit at ``|k| = N/2``,
    i.e. 4π(N/2)² / spokes ≤ 1); directions follow the 2D golden means of Chan et al. (2009),
    which cover the sphere uniformly for any number of spokes.

    Returns
    -------
    Trajectory
        ``coord`` of shape (n_spokes, n_samples, 3) in (kx, ky, kz) order.
    """
    if matrix < 2 or undersampling < 1 or readout_ms <= 0 or te_ms < 0:
        raise ValueError("radial3d needs matrix ≥ 2, undersampling ≥ 1, readout_ms > 0")
    n_spokes = int(np.ceil(np.pi * matrix**2 / undersampling))
    n_samples = samples_per_spoke or matrix // 2 + 1
    phi1, phi2 = 0.4656, 0.6823  # 2D golden means (Chan et al., MRM 2009)
    m = np.arange(n_spokes)
    kz = 2 * np.mod(m * phi1, 1.0) - 1.0
    azimuth = 2 * np.pi * np.mod(m * phi2, 1.0)
    sin_polar = np.sqrt(1 - kz**2)
    direction = np.stack([sin_polar * np.cos(azimuth), sin_polar * np.sin(azimuth), kz], -1)
    radius = np.linspace(0.0, matrix / 2, n_samples)
    coord = direction[:, None, :] * radius[None, :, None]
    times = te_ms + np.linspace(0.0, readout_ms, n_samples)
    return Trajectory(coord=coord, times_ms=np.broadcast_to(times, coord.shape[:2]).copy(),
                      matrix=(matrix, matrix, matrix), fov_mm=fov_mm,
                      name=f"3D radial {n_spokes} half-spokes (R={undersampling:g}), "
                           f"{matrix}^3")
