"""Noise: exact and fast averaging agree in distribution; multi-coil covariance; scan time."""

from __future__ import annotations

import numpy as np
import pytest

from nacode.physics import noise
from nacode.physics.signal import CALF_SEQUENCE, acquisition_time_s, format_minutes

N_SAMPLES = 4000


@pytest.mark.parametrize("nsa", [1, 10, 50, 150])
def test_exact_and_fast_modes_have_the_same_noise_level(nsa):
    sigma = 2.0
    clean = np.zeros(N_SAMPLES, dtype=complex)
    exact = noise.average(clean, sigma, nsa, np.random.default_rng(1), mode="exact")
    fast = noise.average(clean, sigma, nsa, np.random.default_rng(2), mode="fast")
    expected = sigma / np.sqrt(nsa)
    for name, draw in (("exact", exact), ("fast", fast)):
        observed = np.concatenate([draw.real, draw.imag]).std()
        assert observed == pytest.approx(expected, rel=0.03), name
    sd_exact = np.concatenate([exact.real, exact.imag]).std()
    sd_fast = np.concatenate([fast.real, fast.imag]).std()
    assert sd_exact == pytest.approx(sd_fast, rel=0.03)


def test_retrospective_averages_are_nested():
    clean = np.zeros(20000, dtype=complex)
    out = noise.averages(clean, 1.0, [10, 150], np.random.default_rng(0))
    # the 10-average shares its replicates with the 150-average: corr = sqrt(10/150)
    corr = np.corrcoef(out[10].real, out[150].real)[0, 1]
    assert corr == pytest.approx(np.sqrt(10 / 150), abs=0.02)


def test_paper_sigma():
    k = np.array([1 + 1j, -3.0, 0.5j])
    assert noise.paper_sigma(k) == pytest.approx(0.038 * 3.0)
    with pytest.raises(ValueError, match="NaN"):
        noise.paper_sigma(np.array([np.nan]))


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_bad_nsa_is_rejected(bad):
    with pytest.raises(ValueError, match="positive integer"):
        noise.average(np.zeros(4, complex), 1.0, bad, np.random.default_rng(0))


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        noise.average(np.zeros(4, complex), 1.0, 2, np.random.default_rng(0), mode="slow")


def test_coil_noise_has_the_requested_covariance():
    psi = noise.correlated_covariance(8, 0.4, seed=3)
    assert np.allclose(psi, psi.conj().T)
    assert np.linalg.eigvalsh(psi).min() > 0
    n = noise.coil_noise((50000,), psi, np.random.default_rng(0))
    empirical = n @ n.conj().T / n.shape[1] / 2
    assert np.abs(empirical - psi).max() < 0.03 * np.abs(psi).max()


def test_acquisition_times_match_the_calf_paper():
    # 150 averages x 20 interleaves x 2 half-pulse excitations x 100 ms = 10 min
    assert format_minutes(acquisition_time_s(150, 20, CALF_SEQUENCE)) == "10:00"
    assert format_minutes(acquisition_time_s(30, 20, CALF_SEQUENCE)) == "2:00"
    assert format_minutes(acquisition_time_s(10, 20, CALF_SEQUENCE)) == "0:40"
    with pytest.raises(ValueError, match="NSA"):
        acquisition_time_s(-1, 20, CALF_SEQUENCE)


def test_gridded_noise_sd_and_snr_calibration():
    from nacode.physics import trajectory
    from nacode.physics.nufft import density_compensation, gridding

    traj = trajectory.radial(matrix=32)
    weights = density_compensation(traj)
    rng = np.random.default_rng(0)
    images = np.stack([gridding(noise.complex_noise(traj.times_ms.shape, 1.5, rng), traj,
                                weights) for _ in range(40)])
    predicted = noise.gridded_noise_sd(1.5, weights, traj.matrix)
    assert images.real.std() == pytest.approx(predicted, rel=0.03)
    # magnitude background SD of pure noise: Rayleigh
    assert np.abs(images).std() == pytest.approx(noise.RAYLEIGH_SD * predicted, rel=0.03)
    sigma = noise.sigma_for_snr(10.0, 5.0, 4, weights, traj.matrix)
    assert 10.0 / (noise.RAYLEIGH_SD * noise.gridded_noise_sd(sigma, weights, traj.matrix)
                   / 2) == pytest.approx(5.0)


def test_prescan_whitening_decorrelates_the_coils():
    covariance = noise.correlated_covariance(8, seed=3) * 4.0
    rng = np.random.default_rng(0)
    prescan = noise.coil_noise((4000,), covariance, rng)
    estimate = noise.noise_covariance(prescan)
    np.testing.assert_allclose(estimate, covariance, atol=0.15 * np.abs(covariance).max())
    matrix = noise.whitening_matrix(estimate)
    measured = noise.whiten(noise.coil_noise((20000,), covariance, rng), matrix)
    after = noise.noise_covariance(measured)
    level = np.real(np.diag(covariance)).mean()
    np.testing.assert_allclose(after, level * np.eye(8), atol=0.06 * level)
    before = np.abs(covariance - np.diag(np.diag(covariance))).max() / level
    assert before > 0.2  # the array really was correlated
    with pytest.raises(ValueError, match="pre-scan"):
        noise.noise_covariance(prescan[:, :10])
