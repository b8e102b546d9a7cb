"""The breast study: undersampling, references, priors on the truth, tables, tuning artifact,
and the same tables from two executions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from nacode.denoise.dip import DIPConfig
from nacode.evaluate.tuning import Tuning
from nacode.studies import breast, breast_data, breast_tuning
from nacode.studies import breast_tables as tables


@pytest.fixture(scope="module")
def scans():
    return breast_data.cohort(2, 1, 32, seed=5, progress=False)


def _fixed_tuning(rates=(4,)):
    classical = {(m, r): Tuning(m, "λ", (0.01,), (0.0,), 1.0 if m == "NLM" else 0.02, False, 0)
                 for m in (*breast.VARIATIONAL, "NLM") for r in rates}
    dip = {"DIP": {"lr": 0.01, "rule": "fixed", "iteration": 6},
           "DIP-Fusion": {"lr": 0.01, "lam_dtv": 0.1, "lam_gc": 0.0, "lam_gc_best": 0.1,
                          "rule": "ES-WMV"}}
    return classical, dip


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
    healthy, patient = scans[0], scans[2]
    assert healthy.cohort == "healthy" and not healthy.lesions
    assert patient.cohort == "patient" and patient.lesions[-1]["kind"] == "sodium_only"
    assert healthy.kspace.shape[0] == breast_data.N_COILS
    roi = patient.rois[patient.lesions[-1]["name"]]
    fgt = patient.rois["fibroglandular"]
    assert patient.truth[roi].mean() > 1.5 * patient.truth[fgt].mean()
    # the acquired 1H image is noisy: its SNR in the allowed range, its noise measurable
    assert breast_data.PROTON_SNR[0] <= healthy.proton_snr <= breast_data.PROTON_SNR[1]
    assert set(healthy.reference) == set(breast_data.COMBINES)
    # the fully sampled noiseless reference is closer to the truth than the noisy gridding
    noisy = breast_data.reconstruct(healthy, 1, "adaptive").image
    ref = healthy.reference["adaptive"]
    assert tables.psnr(healthy, ref) > tables.psnr(healthy, noisy) + 3


def test_reconstruction_and_maps(scans):
    scan = scans[0]
    for combine in breast_data.COMBINES:
        recon = breast_data.reconstruct(scan, 2, combine)
        assert recon.image.shape == scan.truth.shape
        rss = np.sqrt((np.abs(recon.maps) ** 2).sum(0))[scan.body]
        assert np.median(rss) == pytest.approx(1.0, rel=0.15)
    sharp = breast_data.reconstruct(scan, 2, "adaptive").image
    coarse = breast_data.reconstruct(scan, 8, "adaptive").image
    assert tables.psnr(scan, sharp) > tables.psnr(scan, coarse)


def test_ls_scale_and_scores_known_answers(scans):
    scan = scans[0]
    truth = scan.truth
    np.testing.assert_allclose(tables.ls_scale(truth, 3.0 * truth, scan.body), truth, rtol=1e-6)
    perfect = tables.scores(scan, 2.0 * truth, "adaptive")
    assert perfect["psnr"] > 100 and perfect["ssim"] == pytest.approx(1.0)
    assert perfect["fsim"] == pytest.approx(1.0) and np.isnan(perfect["lpips"])
    assert perfect["ref_psnr"] < perfect["psnr"]  # the reference has shading and a PSF
    reference = tables.scores(scan, scan.reference["sos"], "sos")
    assert reference["ref_psnr"] > 100
    noisy = tables.scores(scan, truth + np.random.default_rng(0).normal(0, 0.1, truth.shape),
                          "sos")
    assert noisy["psnr"] < 30 and noisy["mse"] > perfect["mse"]


def test_priors_prefer_the_truth_on_the_validation_subjects(scans):
    checks, built, _jobs = breast.prior_checks(scans, [0, 1])
    assert len(checks) == 2
    assert np.all(checks["GC truth"] < checks["GC gridding"])  # the term prefers the truth
    old = checks["|xi| flat, fused (gridded sodium, η = 0.05)"]
    new = checks["|xi| flat, fused (CS-TV sodium, η from the noise)"]
    assert np.all(new < old)  # noise no longer counts as edges
    assert built["1H only"].xi.shape == (2, 2, 32, 32)


def test_target_and_wilcoxon_tables_on_synthetic_scores():
    rows = []
    rng = np.random.default_rng(0)
    for subject in range(6):
        for method, level in (("DIP-Fusion", 30.0), ("DIP", 28.0), ("CS-TV", 27.0),
                              ("dTV (fused)", 29.0)):
            rows.append({"subject": subject, "cohort": "healthy", "R": 4, "combine": "sos",
                         "method": method, "psnr": level + rng.normal(0, 0.1),
                         "ssim": level / 40})
    metrics = pd.DataFrame(rows)
    target = tables.target_table(metrics)
    assert target["beats_both"].tolist() == [True]
    assert target["psnr_margin"].iloc[0] == pytest.approx(2.0, abs=0.3)
    table = tables.wilcoxon_table(metrics)
    assert set(table.versus) == {"DIP", "CS-TV", "dTV (fused)"}
    assert np.all(table.median_difference > 0)
    # 6 subjects, all differences positive: the exact two-sided p is 2/64, ×3 by Bonferroni
    np.testing.assert_allclose(table.p, 2 / 64)
    np.testing.assert_allclose(table.p_bonferroni, 6 / 64)
    beyond = tables.beyond_dtv(metrics)
    assert beyond["psnr_vs_dTV (fused)"].iloc[0] == pytest.approx(1.0, abs=0.3)
    cells = tables.formatted(metrics.assign(combine="adaptive"))
    assert list(cells.columns) == ["method", "R = 4"] and " ± " in cells["R = 4"].iloc[0]
    wide = tables.wide_medians(metrics.assign(combine="adaptive"))
    assert list(wide.columns) == ["method", "R = 4", "R = 4 IQR"]
    median, iqr = wide["R = 4"].iloc[0], wide["R = 4 IQR"].iloc[0]
    assert cells["R = 4"].iloc[0] == f"{median:.2f} ± {iqr:.2f}"


def _run(scans):
    classical, dip = _fixed_tuning()
    base = DIPConfig(max_iter=12, base=4, levels=3, window=4, patience=4)
    outputs, extra = breast.evaluate(scans, [1, 2], base, classical, dip, rates=(4,),
                                     ablation_subjects=[1, 2], max_iter=200, tol=1e-4,
                                     every=2, progress=False)
    return tables.tables(scans, outputs, extra), extra


def test_evaluate_returns_every_table_on_a_tiny_run(scans):
    (metrics, ablation, lesions), extra = _run(scans)
    methods = {"gridding", "NLM", *breast.VARIATIONAL, "DIP", "DIP-Fusion",
               "noiseless, fully sampled"}
    assert methods <= set(metrics.method)
    assert len(metrics[metrics.method == "DIP"]) == 2  # adaptive only, both subjects
    fused = metrics[metrics.method == "DIP-Fusion"]
    assert np.all(fused.oracle_psnr >= fused.psnr - 1e-9)  # the oracle is the best iterate seen
    assert set(ablation.method) == {"DIP-Fusion", "no dTV", "no bias field", "1H-only prior",
                                    "with gradient consistency"}
    hidden = lesions[lesions.kind == "sodium_only"]
    assert {"noiseless truth", "noiseless, fully sampled", "1H-only prior"} <= set(hidden.method)
    assert extra["seconds"]["DIP"] > 0
    assert all(v["iterations"].shape == (4,) for v in extra["variational"].values())
    loss = tables.stopping_loss(metrics)
    assert np.all(loss.median_loss_db >= -1e-9)


def test_two_executions_give_identical_tables(scans):
    """Same seed, same tables: deterministic algorithms, the process's fixed thread count."""
    torch.use_deterministic_algorithms(True)
    try:
        first = _run(scans)[0]
        second = _run(scans)[0]
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(first, second, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_tuning_artifact_is_checked(tmp_path, monkeypatch):
    settings = {"matrix": 32, "n_val": 2}
    path = tmp_path / "tuning.json"
    with pytest.raises(FileNotFoundError, match="nacode tune breast"):
        breast_tuning.load(settings, path)
    path.write_text(json.dumps({"settings": settings, "DIP": {}, "DIP-Fusion": {}}))
    assert breast_tuning.load(settings, path)["settings"] == settings
    with pytest.raises(ValueError, match="matrix differ"):
        breast_tuning.load({**settings, "matrix": 64}, path)
    monkeypatch.setattr("nacode.studies.calf.manifest_digests",
                        lambda: {path.resolve(): "0" * 64})
    with pytest.raises(ValueError, match="sha256"):
        breast_tuning.load(settings, path)
    monkeypatch.undo()
    path.write_text("{not json")
    with pytest.raises(ValueError, match="readable"):
        breast_tuning.load(settings, path)


def test_dip_tuning_follows_the_protocol_on_a_tiny_run(scans):
    base = DIPConfig(max_iter=12, base=4, levels=3, window=4, patience=4)
    result = breast_tuning.tune_dip(scans, [0, 1], base, budget=12, every=4, long_factor=2,
                                    progress=False)
    fused = result["DIP-Fusion"]
    assert result["DIP"]["lr"] in breast_tuning.LR_GRID or result["on_edge"]
    assert fused["lam_dtv"] > 0 and fused["rule"] in ("fixed", "ES-WMV")
    assert fused["lam_gc"] in (0.0, fused["lam_gc_best"])
    tunings = pd.DataFrame(result["tunings"])
    for method, parameter in (("DIP", "learning rate"), ("DIP-Fusion", "λ1 (dTV)")):
        values = tunings[(tunings.method == method) & (tunings.parameter == parameter)].value
        assert np.log10(values.astype(float).max() / values.astype(float).min()) >= 2 - 1e-9
    assert tunings.groupby(["method", "parameter"]).chosen.sum().eq(1).all()
    traces = pd.DataFrame(result["traces"])
    longer = traces[traces.parameter == "beyond the budget"]
    assert set(longer.method) == {"DIP", "DIP-Fusion"} and longer.iteration.max() == 24
