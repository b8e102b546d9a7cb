"""The breast study: undersampling, reconstruction, scaling, lesion contrast, tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nacode.studies import breast, breast_data


@pytest.fixture(scope="module")
def scans():
    return breast_data.cohort(1, 1, 32, seed=5, progress=False)


def test_undersampling_keeps_uniform_angles_for_every_rate():
    full = breast_data.full_trajectory(64)
    assert full.n_shots % 24 == 0 and full.n_shots >= np.pi * 64
    for rate in breast_data.RATES:
        sub = breast_data.undersample(full, rate)
        angles = np.arctan2(sub.coord[:, -1, 0], sub.coord[:, -1, 1]) % (2 * np.pi)
        gaps = np.diff(np.sort(angles))
        np.testing.assert_allclose(gaps, 2 * np.pi / sub.n_shots, rtol=1e-9)
    with pytest.raises(ValueError, match="divide"):
        breast_data.undersample(full, 7)


def test_scan_has_the_requested_structure(scans):
    healthy, patient = scans
    assert healthy.cohort == "healthy" and not healthy.lesions
    assert patient.cohort == "patient" and patient.lesions[-1]["kind"] == "sodium_only"
    assert healthy.kspace.shape[0] == breast_data.N_COILS
    # the sodium-only tumour is invisible in 1H but bright in the true sodium image
    roi = patient.rois[patient.lesions[-1]["name"]]
    fgt = patient.rois["fibroglandular"]
    assert patient.truth[roi].mean() > 1.5 * patient.truth[fgt].mean()
    ratios = breast.lesion_rows(patient, patient.truth)
    assert ratios[-1]["true_ratio"] == patient.lesions[-1]["tsc_ratio"]


def test_reconstruction_and_maps(scans):
    scan = scans[0]
    for combine in breast_data.COMBINES:
        recon = breast_data.reconstruct(scan, 2, combine)
        assert recon.image.shape == scan.truth.shape
        assert recon.maps.shape == (breast_data.N_COILS, *scan.truth.shape)
        # maps are coil images over the combined image: root-sum-of-squares ≈ 1 in the body
        rss = np.sqrt((np.abs(recon.maps) ** 2).sum(0))[scan.body]
        assert np.median(rss) == pytest.approx(1.0, rel=0.15)
    sharp = breast_data.reconstruct(scan, 2, "adaptive").image
    coarse = breast_data.reconstruct(scan, 8, "adaptive").image
    fit = [breast.ls_scale(scan.truth, x, scan.body) for x in (sharp, coarse)]
    assert np.mean((fit[0] - scan.truth) ** 2) < np.mean((fit[1] - scan.truth) ** 2)


def test_ls_scale_and_scores_known_answers(scans):
    scan = scans[0]
    truth = scan.truth
    np.testing.assert_allclose(breast.ls_scale(truth, 3.0 * truth, scan.body), truth,
                               rtol=1e-6)
    perfect = breast.scores(scan, 2.0 * truth)
    assert perfect["psnr"] > 100 and perfect["ssim"] == pytest.approx(1.0)
    assert perfect["fsim"] == pytest.approx(1.0) and np.isnan(perfect["lpips"])
    noisy = breast.scores(scan, truth + np.random.default_rng(0).normal(0, 0.1, truth.shape))
    assert noisy["psnr"] < 30 and noisy["mse"] > perfect["mse"]


def test_target_and_wilcoxon_tables_on_synthetic_scores():
    rows = []
    rng = np.random.default_rng(0)
    for subject in range(6):
        for method, level in (("DIP-Fusion", 30.0), ("DIP", 28.0), ("CS-TV", 27.0)):
            rows.append({"subject": subject, "cohort": "healthy", "R": 4, "combine": "sos",
                         "method": method, "psnr": level + rng.normal(0, 0.1),
                         "ssim": level / 40})
    metrics = pd.DataFrame(rows)
    target = breast.target_table(metrics)
    assert target["beats_both"].tolist() == [True]
    table = breast.wilcoxon_table(metrics)
    assert set(table.versus) == {"DIP", "CS-TV"}
    assert np.all(table.median_difference > 0)
    # 6 subjects, all differences positive: the exact two-sided p is 2/64, doubled by Bonferroni
    np.testing.assert_allclose(table.p, 2 / 64)
    np.testing.assert_allclose(table.p_bonferroni, 4 / 64)


def test_evaluate_returns_every_table_on_a_tiny_run(scans):
    from nacode.denoise.dip import DIPConfig

    base = DIPConfig(max_iter=8, base=4, levels=3, window=4, patience=4)
    tuned = {"cs_lambda": 0.01, "nlm_h": 1.0, "fusion": (0.1, 0.01)}
    metrics, ablation, lesions, timing, outputs = breast.evaluate(
        scans, [0, 1], base, tuned, rates=(4,), dip_combines=("adaptive",), cs_iter=3,
        progress=False)
    assert set(metrics.method) == {"gridding", "CS-TV", "NLM", "DIP", "DIP-Fusion"}
    assert len(metrics[metrics.method == "DIP"]) == 2  # adaptive only, both subjects
    assert set(ablation.method) == {"DIP-Fusion", *breast.ABLATIONS}
    assert len(ablation) == 2 * (1 + len(breast.ABLATIONS))
    hidden = lesions[lesions.kind == "sodium_only"]
    assert "noiseless truth" in set(hidden.method) and "1H-only prior" in set(hidden.method)
    assert timing["DIP"] > 0 and ("DIP", "DIP") not in outputs
