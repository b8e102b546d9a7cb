"""The prospective part of the calf study on two virtual volunteers (smoke-sized)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nacode.denoise.dncnn import ResidualDnCNN
from nacode.studies import calf_volunteers as cv


@pytest.fixture(scope="module")
def measured():
    torch.manual_seed(0)
    models = {30: ResidualDnCNN(blocks=1, channels=8)}
    return cv.run(models, volunteers=(0, 1, 2), nsas=(30,), cs_iter=20, progress=False)


def test_every_method_is_measured(measured):
    table, images, atsc = measured
    assert set(atsc) >= {(0, 30, m) for m in cv.METHODS}
    assert len(table) == 3 * 4 and set(table.method) == set(cv.METHODS)
    assert set(images[(0, 30)]) == set(cv.METHODS)
    assert np.all(np.isfinite(table[["snr", "edge", "muscle", "skin"]].to_numpy()))
    # the 150-average reference is less noisy than 30 averages of the same replicates
    snr = table.groupby("method").snr.mean()
    assert snr["reference"] > snr["nufft"]
    # TV-CS raises the estimated SNR over gridding at 30 averages
    assert snr["cs"] > snr["nufft"]


def test_tables_have_the_papers_statistics(measured):
    table = measured[0]
    quality, tests = cv.table2(table)
    assert set(quality.method) == set(cv.METHODS)
    assert {"Friedman", "Wilcoxon, Bonferroni"} == set(tests.test)
    muscle = cv.agreement(table, "muscle")
    row = muscle[muscle.method == "nufft"].iloc[0]
    assert row.loa_low < row.bias < row.loa_high and 0 <= row.bias_p <= 1
    assert np.isnan(muscle[muscle.method == "reference"].iloc[0]["bias"])
    assert set(cv.timing(table).method) == {"nufft", "cnn", "cs"}


def test_edge_sharpness_of_an_ideal_step():
    volunteer = cv.scan(0)
    tube = max(volunteer.subject.tubes, key=lambda t: t.concentration)
    voxel = volunteer.traj.fov_mm / volunteer.matrix[0]
    n = volunteer.matrix[0]
    rows, cols = np.mgrid[:n, :n]
    centre = np.array(tube.centre_mm) / voxel + n // 2
    radius = np.hypot(rows - centre[0], cols - centre[1]) * voxel
    ramp = np.clip((tube.radius_mm + 2.25 - radius) / 4.5, 0, 1) * 100.0  # 100 mM over 4.5 mm
    assert cv.edge_sharpness(ramp, volunteer) == pytest.approx(100 / 4.5, rel=0.15)
