"""The sodium signal: bi-exponential T2* decay, T1 saturation, sequence timing.

For a voxel of concentration ρ (mM) the complex signal at time t after excitation is

    s(t) = ρ · S(T1; TR, α) · [f e^{−t/T2*f} + (1 − f) e^{−t/T2*s}]

with the steady-state saturation of a spoiled sequence
``S = sin α (1 − E1) / (1 − cos α E1)``, ``E1 = e^{−TR/T1}``. Readout decay makes every
k-space sample see the object at its own time ``t``; :func:`decay_basis` factors the
tissues' decay curves into a few temporal basis functions so that the whole readout costs a
handful of NUFFTs instead of one per sample time (a low-rank, "time-segmented" model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sequence:
    """Timing of a sodium acquisition.

    The echo time belongs to the trajectory (``Trajectory.times_ms`` starts at TE).

    Attributes
    ----------
    tr_ms : float
        Repetition time, ms.
    flip_deg : float
        Flip angle, degrees.
    excitations_per_shot : int
        Excitations needed per interleave or spoke: 2 for the calf paper's half-sinc pulses
        (each k-space line is acquired with both slice-gradient polarities), else 1.
    """

    tr_ms: float = 100.0
    flip_deg: float = 90.0
    excitations_per_shot: int = 2

    def __post_init__(self) -> None:
        if self.tr_ms <= 0 or not 0 < self.flip_deg <= 180:
            raise ValueError(f"invalid sequence {self}: need tr > 0 and 0 < flip ≤ 180")
        if self.excitations_per_shot < 1:
            raise ValueError("excitations_per_shot must be ≥ 1")


#: The calf paper's sequence: TR 100 ms, half-pulse excitation (TE 0.23 ms is the spiral's).
CALF_SEQUENCE = Sequence(tr_ms=100.0, flip_deg=90.0, excitations_per_shot=2)


def saturation(t1_ms, tr_ms: float, flip_deg: float = 90.0):
    """Steady-state longitudinal saturation factor of a spoiled sequence, in (0, 1].

    Parameters
    ----------
    t1_ms : float or ndarray
        T1 in ms (> 0).
    tr_ms : float
        Repetition time in ms.
    flip_deg : float
        Flip angle in degrees.
    """
    t1 = np.asarray(t1_ms, dtype=float)
    if np.any(t1 <= 0):
        raise ValueError("T1 must be > 0 ms")
    e1 = np.exp(-tr_ms / t1)
    alpha = np.deg2rad(flip_deg)
    return np.sin(alpha) * (1 - e1) / (1 - np.cos(alpha) * e1)


def decay(t_ms, t2_fast, t2_slow, frac_fast):
    """Bi-exponential transverse decay ``f e^{−t/T2f} + (1 − f) e^{−t/T2s}``.

    Arguments broadcast; times and T2* in ms, ``frac_fast`` in [0, 1].
    """
    t = np.asarray(t_ms, dtype=float)
    return frac_fast * np.exp(-t / t2_fast) + (1 - frac_fast) * np.exp(-t / t2_slow)


def acquisition_time_s(nsa: int, n_shots: int, seq: Sequence) -> float:
    """Scan time of ``nsa`` averages of ``n_shots`` interleaves/spokes: NSA·shots·exc·TR."""
    if int(nsa) != nsa or nsa < 1:
        raise ValueError(f"NSA must be a positive integer, got {nsa!r}")
    if int(n_shots) != n_shots or n_shots < 1:
        raise ValueError(f"n_shots must be a positive integer, got {n_shots!r}")
    return float(nsa * n_shots * seq.excitations_per_shot * seq.tr_ms * 1e-3)


def format_minutes(seconds: float) -> str:
    """``m:ss`` as the calf paper labels its acquisition times."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


def decay_basis(curves: np.ndarray, tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray, float]:
    """Low-rank factorisation of decay curves: ``curves ≈ coefficients @ basis``.

    Parameters
    ----------
    curves : ndarray, shape (n_tissues, n_times)
        Each tissue's signal (weighting included) at each sample time.
    tol : float
        Largest relative Frobenius error accepted.

    Returns
    -------
    coefficients : ndarray, shape (n_tissues, rank)
    basis : ndarray, shape (rank, n_times)
    error : float
        Relative Frobenius error of the factorisation (≤ ``tol``).
    """
    u, s, vt = np.linalg.svd(curves, full_matrices=False)
    total = np.sqrt((s**2).sum())
    if total == 0:
        return np.zeros((curves.shape[0], 1)), np.zeros((1, curves.shape[1])), 0.0
    tail = np.sqrt(np.maximum(total**2 - np.cumsum(s**2), 0.0)) / total
    rank = int(np.argmax(tail <= tol)) + 1 if np.any(tail <= tol) else len(s)
    return u[:, :rank] * s[:rank], vt[:rank], float(tail[rank - 1])
