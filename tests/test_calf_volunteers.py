"""The prospective part of the calf study on two virtual volunteers (smoke-sized)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from nacode.denoise.dncnn import ResidualDnCNN
from nacode.studies import calf_volunteers as cv


@pytest.fixture(scope="module")
def measured():
    torch.manual_seed(0)
    models = {30: ResidualDnCNN(blocks=1, channels=8)}
    return cv.run(models, volunteers=(0, 1, 2), nsas=(30, 50), lamdas={30: 0.03, 50: 0.02},
                  cs_tol=1e-3, progress=False)


def test_every_method_is_measured(measured):
    table, images, atsc = measured
    assert set(atsc) >= {(0, 30, m) for m in cv.METHODS}
    assert len(table) == 3 * 2 * 4 and set(table.method) == set(cv.METHODS)
    assert set(images[(0, 30)]) == set(cv.METHODS)
    assert np.all(np.isfinite(table[["snr", "edge", "muscle", "skin"]].to_numpy()))
    # the 150-average reference is less noisy than 30 averages of the same replicates
    snr = table[table.nsa == 30].groupby("method").snr.mean()
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


def test_tube_change_is_zero_for_the_input_and_follows_a_known_scaling(measured):
    table = measured[0]
    # a "denoiser" that returns its input, and one that scales it by 1.05
    fake = pd.concat([table[table.method != "cnn"],
                      table[table.method == "nufft"].assign(method="cnn")])
    tubes = [c for c in table.columns if c.startswith("tube_")]
    scaled = fake.copy()
    rows = scaled.method == "cs"
    scaled.loc[rows, tubes] = scaled.loc[scaled.method == "nufft", tubes].to_numpy() * 1.05
    per_image, summary = cv.tube_change(scaled)
    assert set(per_image.tube_mM) == {10, 25, 50, 75, 100}
    assert np.allclose(per_image[per_image.method == "cnn"].change_pct, 0.0)
    assert np.allclose(per_image[per_image.method == "cs"].change_pct, 5.0)
    worst = cv.worst_tube_change(summary).set_index(["nsa", "method"])
    assert worst.loc[(30, "cs"), "tube_change_pct"] == pytest.approx(5.0)
    assert worst.loc[(30, "cnn"), "worst_image_pct"] == pytest.approx(0.0)


def test_real_denoisers_report_their_tube_change(measured):
    per_image, summary = cv.tube_change(measured[0])
    assert len(per_image) == 2 * 3 * 2 * 5  # methods × volunteers × NSAs × tubes
    assert np.all(np.isfinite(per_image.change_pct))
    assert (summary.max_abs_pct >= summary.median_pct.abs() - 1e-9).all()


def test_cs_converges_and_tuning_picks_an_interior_lambda():
    volunteer = cv.scan(99)
    result = cv.cs_reconstruct(volunteer, [volunteer.kspace] * 2, [0.001, 0.1], tol=1e-3)
    assert result.converged.all()
    smooth, sharp = (np.abs(image) for image in result.images[::-1])
    # a larger λ gives a smoother image (lower total variation)
    tv = [np.abs(np.diff(image, axis=0)).sum() + np.abs(np.diff(image, axis=1)).sum()
          for image in (smooth, sharp)]
    assert tv[0] < tv[1]
    tunings = cv.tune_cs(nsas=(10,), grid=(0.003, 0.03, 0.3), seeds=(99,), tol=1e-3)
    assert not tunings[10].on_edge and tunings[10].decades >= 2
    rows = cv.tuning_rows(tunings)
    assert set(rows.nsa) == {10} and rows.chosen.sum() == 1


def test_two_executions_give_identical_tables(measured):
    """Same seed, same tables (the chapter is not re-executed under nbval: see the Makefile)."""
    torch.manual_seed(0)
    models = {30: ResidualDnCNN(blocks=1, channels=8)}
    again = cv.run(models, volunteers=(0, 1, 2), nsas=(30, 50), lamdas={30: 0.03, 50: 0.02},
                   cs_tol=1e-3, progress=False)
    first, second = (frame.drop(columns="recon_s") for frame in (measured[0], again[0]))
    pd.testing.assert_frame_equal(first, second)
    for key, image in measured[2].items():
        np.testing.assert_array_equal(image, again[2][key])
    for one, two in zip(cv.table2(measured[0]), cv.table2(again[0]), strict=True):
        pd.testing.assert_frame_equal(one, two)
    tunings = [cv.tune_cs(nsas=(10,), grid=(0.003, 0.03, 0.3), seeds=(99,), tol=1e-3)
               for _ in range(2)]
    pd.testing.assert_frame_equal(*(cv.tuning_rows(t) for t in tunings))
