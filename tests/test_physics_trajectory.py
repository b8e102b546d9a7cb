"""Trajectories: the calf spiral within its gradient limits, radial patterns, sample times."""

from __future__ import annotations

import numpy as np
import pytest
import sigpy.mri

from nacode.physics import trajectory

SLEW_LIMIT = 1e-3 / 8.125e-6  # T/m/s


@pytest.fixture(scope="module")
def spiral():
    return trajectory.spiral()


def slew_T_m_s(traj):
    g = traj.gradients_mT_m() * 1e-3
    dt = np.diff(traj.times_ms, axis=1)[:, 1:] * 1e-3
    return np.sqrt((np.diff(g, axis=1) ** 2).sum(-1)) / dt


def test_calf_spiral_readout_and_extent(spiral):
    print(f"calf spiral: {spiral.n_shots} interleaves x {spiral.coord.shape[1]} samples, "
          f"readout {spiral.readout_ms:.2f} ms, k_max {spiral.kmax:.3f}")
    assert 7.2 <= spiral.readout_ms <= 8.0
    assert spiral.kmax == pytest.approx(40.0, abs=1e-9)
    assert spiral.times_ms[0, 0] == pytest.approx(0.23)
    assert spiral.coord.shape == (20, spiral.coord.shape[1], 2)
    # samples one dwell apart
    assert np.allclose(np.diff(spiral.times_ms[0])[:-1], 0.0148)


def test_calf_spiral_respects_the_gradient_limits(spiral):
    gradient = np.sqrt((spiral.gradients_mT_m() ** 2).sum(-1))
    nyquist = 1e3 / (2 * 0.18 * trajectory.GAMMA_BAR_NA * 14.8e-6)  # mT/m
    assert gradient.max() <= 24.0
    assert gradient.max() <= nyquist * 1.001
    assert gradient.max() >= 0.99 * nyquist  # amplitude-limited for most of the readout
    assert slew_T_m_s(spiral).max() <= 1.02 * SLEW_LIMIT  # finite differences at the dwell


def test_the_arm_is_sigpys_uniform_density_spiral(spiral):
    """Same curve as sigpy.mri.spiral; sigpy's own time course breaks the limits (or is NaN)."""
    gamma_bar = trajectory.GAMMA_BAR_NA
    g_max = 1.0 / (2 * 0.18 * gamma_bar * 14.8e-6)
    with np.errstate(invalid="ignore"):
        ref = sigpy.mri.spiral(0.18, 80, 0.5, 1, 20, 1.0, g_max, SLEW_LIMIT, gamma=gamma_bar)
    ref = ref.reshape(20, -1, 2)[0] * 0.18  # first arm, grid units, (kx, ky)
    finite = np.all(np.isfinite(ref), axis=1)
    assert not finite.all()  # sigpy returns NaN samples in this regime
    ours = spiral.coord[0][:, ::-1]  # back to (kx, ky)
    for arm in (ref[finite], ours):
        radius = np.hypot(arm[:, 0], arm[:, 1])
        angle = np.unwrap(np.arctan2(arm[:, 1], arm[:, 0]))
        # uniform density: r = (N/2) θ / θ_max with θ_max = 2π · 2 turns
        assert np.allclose(radius, 40 * angle / (4 * np.pi), atol=0.05)


@pytest.mark.parametrize("golden", [False, True])
@pytest.mark.parametrize("undersampling", [1, 2, 4, 6, 8])
def test_radial_spokes(undersampling, golden):
    traj = trajectory.radial(matrix=80, undersampling=undersampling, golden=golden)
    assert traj.n_shots == int(np.ceil(np.pi * 80 / undersampling))
    assert traj.kmax == pytest.approx(40.0)
    angles = np.arctan2(traj.coord[:, -1, 0], traj.coord[:, -1, 1])
    steps = np.mod(np.diff(angles), 2 * np.pi)
    expected = trajectory.GOLDEN_ANGLE if golden else 2 * np.pi / traj.n_shots
    assert np.allclose(steps, expected)
    assert np.all(np.diff(traj.times_ms, axis=1) > 0)


def test_radial3d_covers_the_sphere():
    traj = trajectory.radial3d(matrix=16)
    directions = traj.coord[:, -1] / 8.0
    assert np.allclose(np.linalg.norm(directions, axis=1), 1.0)
    assert traj.n_shots == int(np.ceil(np.pi * 16**2))
    assert np.abs(directions.mean(0)).max() < 0.02  # no hemisphere favoured


@pytest.mark.parametrize("kwargs", [{"matrix": 0}, {"fov_mm": -1.0}, {"dwell_us": 0.0},
                                    {"te_ms": -0.1}])
def test_bad_spiral_arguments(kwargs):
    with pytest.raises(ValueError, match="positive"):
        trajectory.spiral(**kwargs)


def test_bad_radial_arguments():
    with pytest.raises(ValueError, match="undersampling"):
        trajectory.radial(undersampling=0.5)
