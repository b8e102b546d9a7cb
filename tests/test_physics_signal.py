"""Sodium signal model and the forward acquisition, on a small synthetic subject."""

from __future__ import annotations

import numpy as np
import pytest

from nacode.anatomy.subject import AIR, Subject, Tissue, Tube
from nacode.physics import signal, trajectory
from nacode.physics.acquire import acquire, downsample, signal_image, tissue_curves
from nacode.physics.nufft import density_compensation, gridding, sample_image


def disc_subject(t2_fast=3.0, t2_slow=15.0, frac_fast=0.6, matrix=160, fov=180.0):
    """A 40 mM disc (radius 30 mm) and a 100 mM tube on a fine grid."""
    pos = (np.arange(matrix) - matrix // 2) * fov / matrix
    y, x = np.meshgrid(pos, pos, indexing="ij")
    labels = np.zeros((matrix, matrix), np.int16)
    labels[np.hypot(y, x) < 30] = 1
    labels[np.hypot(y - 60, x - 60) < 10] = 2
    tissues = {0: AIR, 1: Tissue("disc", 40.0, t2_fast, t2_slow, frac_fast, 30.0, 0.5),
               2: Tissue("tube_100mM", 100.0, 3.5, 20.0, 0.6, 40.0, 0.6)}
    return Subject("test", 0, labels, tissues, labels.astype(np.float32) * 0.5,
                   (fov / matrix,) * 2, (Tube(2, 100.0, (60.0, 60.0), 10.0),))


def test_saturation_and_decay_limits():
    assert signal.saturation(30.0, 1e6) == pytest.approx(1.0)
    assert signal.saturation(30.0, 100.0) == pytest.approx(1 - np.exp(-100 / 30))
    assert signal.decay(0.0, 3.0, 15.0, 0.6) == pytest.approx(1.0)
    assert signal.decay(15.0, 15.0, 15.0, 0.0) == pytest.approx(np.exp(-1))
    with pytest.raises(ValueError, match="T1"):
        signal.saturation(-1.0, 100.0)


def test_decay_basis_reconstructs_the_curves():
    times = np.linspace(0.2, 8.0, 500)
    curves = np.stack([signal.decay(times, f, s, 0.6) for f, s in
                       [(0.5, 5), (3, 13), (3.9, 26.3), (55, 55), (2, 12)]])
    coefficients, basis, error = signal.decay_basis(curves, tol=1e-3)
    assert error <= 1e-3 and basis.shape[0] < curves.shape[0]
    relative = np.linalg.norm(coefficients @ basis - curves) / np.linalg.norm(curves)
    assert relative == pytest.approx(error, rel=1e-6)


def test_acquisition_without_readout_decay_is_one_nufft_of_the_signal_image():
    subject = disc_subject()
    traj = trajectory.spiral()
    kspace = acquire(subject, traj, readout_decay=False)
    direct = sample_image(signal_image(subject, te_ms=traj.times_ms.min()), traj)
    assert np.linalg.norm(kspace - direct) / np.linalg.norm(direct) < 1e-5


def test_low_rank_readout_decay_matches_the_per_sample_model():
    """The time-segmented model equals an explicit per-time-point sum (for a coarse grid)."""
    subject = disc_subject(matrix=80)
    traj = trajectory.spiral(n_interleaves=40, matrix=40, fov_mm=180.0)
    fast = acquire(subject, traj)
    times, index = np.unique(traj.times_ms, return_inverse=True)
    curves = tissue_curves(subject, signal.CALF_SEQUENCE, times)
    explicit = np.zeros(traj.times_ms.shape, complex)
    for label in (1, 2):
        k = sample_image((subject.labels == label).astype(float), traj)
        explicit += curves[label][index.reshape(traj.times_ms.shape)] * k
    assert np.linalg.norm(fast - explicit) / np.linalg.norm(explicit) < 1e-4


def test_readout_decay_blurs_short_t2_tissue():
    traj = trajectory.spiral()
    weights = density_compensation(traj)
    peaks = {}
    for name, (t2f, t2s) in {"short": (1.0, 4.0), "long": (50.0, 50.0)}.items():
        subject = disc_subject(t2_fast=t2f, t2_slow=t2s)
        image = np.abs(gridding(acquire(subject, traj), traj, weights))
        ideal = np.abs(gridding(acquire(subject, traj, readout_decay=False), traj, weights))
        # sharpness of the disc edge relative to the same tissue without readout decay
        peaks[name] = np.abs(np.diff(image[40])).max() / np.abs(np.diff(ideal[40])).max()
    assert peaks["short"] < 0.8 < peaks["long"]


def test_fov_and_dimension_mismatch_are_rejected():
    subject = disc_subject(fov=200.0)
    with pytest.raises(ValueError, match="FOV"):
        acquire(subject, trajectory.spiral())


def test_nan_tsc_is_rejected():
    with pytest.raises(ValueError, match="finite"):
        Tissue("bad", float("nan"), 3.0, 15.0, 0.6, 30.0)


def test_downsample_is_a_block_mean_centred_on_the_nufft_grid():
    fine = np.zeros((8, 8))
    fine[2:6, 2:6] = 1.0  # a 4x4 block centred on fine index 4 = physical 0
    coarse = downsample(fine, (2, 2))
    # acquisition voxel 1 is centred at physical 0: it holds the whole block
    assert coarse[1, 1] == pytest.approx(1.0)
    assert coarse.sum() == pytest.approx(fine.sum() / 16)
    with pytest.raises(ValueError, match="integer multiple"):
        downsample(np.zeros((10, 10)), (4, 4))


def test_3d_radial_acquisition_of_a_3d_subject_reconstructs_it():
    """A 3D ball scanned with the 3D radial scheme grids back to the ball (4 mm-style)."""
    fine = 32
    pos = (np.arange(fine) - fine // 2) * 4.0
    x, y, z = np.meshgrid(pos, pos, pos, indexing="ij")
    labels = (np.sqrt(x**2 + y**2 + z**2) < 36).astype(np.int16)
    subject = Subject("test", 0, labels, {0: AIR, 1: Tissue("ball", 40.0, 50.0, 50.0, 0.0,
                                                            30.0, 0.5)},
                      labels.astype(np.float32), (4.0, 4.0, 4.0))
    traj = trajectory.radial3d(matrix=16, fov_mm=128.0)
    image = np.abs(gridding(acquire(subject, traj), traj, density_compensation(traj)))
    truth = downsample(subject.tsc, (16, 16, 16)) * signal.saturation(30.0, 100.0)
    centre = (slice(6, 10),) * 3
    assert image[centre].mean() == pytest.approx(truth[centre].mean(), rel=0.05)
    assert image[0, 0, 0] < 0.2 * image[centre].mean()  # outside the ball: ringing only


def test_multicoil_acquisition_matches_the_single_coil_one():
    from nacode.physics.coils import coil_maps, sum_of_squares

    subject = disc_subject()
    traj = trajectory.radial(matrix=80)
    weights = density_compensation(traj)
    single = acquire(subject, traj, readout_decay=False)
    one_coil = acquire(subject, traj, readout_decay=False,
                       coil_maps=np.ones((1, *subject.shape)))
    assert np.allclose(one_coil[0], single)
    maps_fine = coil_maps(subject.shape, 8)
    coils = gridding(acquire(subject, traj, readout_decay=False, coil_maps=maps_fine), traj,
                     weights)
    combined = sum_of_squares(coils)
    plain = np.abs(gridding(single, traj, weights))
    rss = downsample(sum_of_squares(maps_fine), traj.matrix)
    inside = downsample((subject.labels == 1).astype(float), traj.matrix) == 1
    assert np.allclose(combined[inside], (plain * rss)[inside], rtol=0.05)
    with pytest.raises(ValueError, match="coil maps"):
        acquire(subject, traj, coil_maps=np.ones((2, 10, 10)))


def test_gridding_rejects_mismatched_kspace_and_weights():
    traj = trajectory.radial(matrix=16)
    weights = density_compensation(traj)
    with pytest.raises(ValueError, match="k-space shape"):
        gridding(np.zeros((3, 7), complex), traj, weights)
    with pytest.raises(ValueError, match="weights shape"):
        gridding(np.zeros(traj.times_ms.shape, complex), traj, weights[:, :-1])
