"""End to end on virtual calves: calibration, aTSC, determinism, the primer's measurements."""

from __future__ import annotations

import numpy as np
import pytest

from nacode.anatomy.brain import brain_subject
from nacode.anatomy.breast import breast_subject
from nacode.anatomy.calf import calf_subject
from nacode.physics import noise
from nacode.studies import primer


@pytest.fixture(scope="module")
def scan():
    return primer.calf_scan(0)


def test_calibration_recovers_the_tubes_on_a_noiseless_acquisition(scan):
    calibration, _, _ = primer.quantify(scan, scan.image())
    recovered = calibration.to_mm(calibration.signals)
    print("tube concentrations recovered (mM):", np.round(recovered, 3))
    assert np.abs(recovered - calibration.concentrations).max() < 0.5
    assert calibration.r2 > 0.999


def test_noiseless_muscle_atsc_is_within_1_mM_of_the_truth(scan):
    _, _, table = primer.quantify(scan, scan.image())
    muscle = table.set_index("roi").loc["muscle"]
    assert abs(muscle["median"] - muscle["true_median"]) < 1.0


def test_noise_is_set_to_the_papers_reference_snr(scan):
    _, table = primer.nsa_series(scan, (150, 10), seed=3)
    snr = table.set_index("nsa")["estimated_snr"]
    assert snr[150] == pytest.approx(primer.REFERENCE_SNR, rel=0.1)
    assert snr[10] < snr[150]


def test_readout_decay_widens_the_point_spread_function(scan):
    still = primer.point_spread(scan.traj, scan.weights)
    decaying = primer.point_spread(scan.traj, scan.weights, 3.0, 13.0)
    centre = scan.matrix[0] // 2
    assert primer.fwhm_pixels(decaying[centre]) > 1.1 * primer.fwhm_pixels(still[centre])


def test_same_seed_gives_bit_identical_subjects_and_acquisitions():
    for make in (lambda s: calf_subject(s), lambda s: breast_subject(s, n_tumours=1),
                 lambda s: brain_subject(s)):
        a, b = make(5), make(5)
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.proton, b.proton)
        assert a.tissues == b.tissues and a.tubes == b.tubes
        assert not np.array_equal(a.labels, make(6).labels)
    first, second = primer.calf_scan(2), primer.calf_scan(2)
    assert np.array_equal(first.kspace, second.kspace)
    noisy = [noise.averages(first.kspace, first.sigma, [50], np.random.default_rng(9))[50]
             for _ in range(2)]
    assert np.array_equal(noisy[0], noisy[1])
