"""The cross-study benchmark: cases, noise levels, units, scores and the rank tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nacode.studies import benchmark
from nacode.studies import benchmark_data as bench_data


@pytest.fixture(scope="module")
def cases():
    return {study: bench_data.make_case(study, bench_data.SEEDS[study], breast_matrix=32)
            for study in bench_data.STUDIES}


def test_cases_have_consistent_shapes_and_units(cases):
    for study, case in cases.items():
        n = case.traj.matrix
        assert case.truth_mm.shape == case.noiseless.shape == case.proton.shape == n, study
        assert case.clean.shape[1:] == case.traj.times_ms.shape
        assert case.clean.shape[0] == (8 if study == "breast" else 1)
        assert case.mask.any() and case.rois and case.factor > 0
        # the calibration is a least-squares fit: the mean over the mask matches the truth's
        # to within the relaxation contrast between tissues
        ratio = case.noiseless[case.mask].mean() / case.truth_mm[case.mask].mean()
        assert 0.8 < ratio < 1.2, (study, ratio)


@pytest.mark.parametrize("snr", [5.0, 10.0])
def test_noise_gives_the_requested_snr_in_every_study(cases, snr):
    for study, case in cases.items():
        noisy = bench_data.acquire_noisy(case, snr, seed=1)
        # noise of the (complex) gridded image, measured against the noiseless one; the
        # magnitude of a single coil equals the complex modulus, so the difference is mostly
        # the real-channel noise in tissue where the signal is well above it
        residual = (noisy.image_mm - case.noiseless)[case.mask]
        measured = case.noiseless[case.mask].mean() / residual.std()
        assert measured == pytest.approx(snr, rel=0.15), (study, measured)


def test_noise_is_seeded(cases):
    case = cases["calf"]
    a = bench_data.acquire_noisy(case, 5.0, seed=3).image_mm
    b = bench_data.acquire_noisy(case, 5.0, seed=3).image_mm
    c = bench_data.acquire_noisy(case, 5.0, seed=4).image_mm
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_scores_know_the_answer(cases):
    case = cases["brain"]
    perfect = bench_data.score(case, case.noiseless)
    assert perfect["psnr"] == np.inf and perfect["ssim"] == pytest.approx(1.0)
    truth = bench_data.score(case, case.truth_mm)
    assert truth["tsc_error"] == pytest.approx(0.0, abs=1e-9)
    assert truth["tsc_voxel_error"] == pytest.approx(0.0, abs=1e-9)
    shifted = bench_data.score(case, case.truth_mm + 2.0)
    assert shifted["tsc_error"] == pytest.approx(2.0)
    assert shifted["tsc_voxel_error"] == pytest.approx(2.0)


def test_smoothing_lowers_the_error_in_every_study(cases):
    from nacode.denoise import classic

    for study, case in cases.items():
        noisy = bench_data.acquire_noisy(case, 4.0, seed=0)
        before = bench_data.score(case, noisy.image_mm)["psnr"]
        after = bench_data.score(case, classic.gaussian(noisy.image_mm[None], 0.8)[0])["psnr"]
        assert after > before, study


def test_dips_run_on_a_batch_and_report_every_copy(cases):
    from nacode.denoise.dip import DIPConfig

    noisy = [bench_data.acquire_noisy(cases["breast"], snr, seed=0) for snr in (5.0, 10.0)]
    rows, images = benchmark.run_dips(noisy, DIPConfig(max_iter=4, base=4, levels=2,
                                                       window=2, patience=10))
    assert {r["method"] for r in rows} == {"DIP", "DIP-Fusion"} and len(rows) == 4
    assert all(np.isfinite(r["psnr"]) and r["seconds"] > 0 for r in rows)
    assert images["DIP"].shape == (2, *cases["breast"].traj.matrix)


def _toy_table():
    rows = []
    for study, psnrs in {"calf": (20, 25, 30), "brain": (20, 30, 25)}.items():
        for snr in (5.0, 10.0):
            for method, p in zip(("gridding", "NLM", "CS-TV"), psnrs, strict=True):
                rows.append({"study": study, "seed": 1, "snr": snr, "method": method,
                             "psnr": p + snr, "ssim": 0.5, "tsc_error": 1.0,
                             "tsc_voxel_error": 1.0, "seconds": 0.1})
            rows.append({"study": study, "seed": 1, "snr": snr, "method": "noiseless",
                         "psnr": np.inf, "ssim": 1.0, "tsc_error": 0.5, "tsc_voxel_error": 0.5,
                         "seconds": np.nan})
    return pd.DataFrame(rows)


def test_ranking_and_gains_on_a_toy_table():
    table = benchmark.summary(_toy_table())
    assert table.loc[table["method"] == "noiseless", "rank"].isna().all()
    ranks = benchmark.ranking(table)
    assert list(ranks.columns) == ["calf", "brain"]
    assert ranks.loc["CS-TV", "calf"] == 1 and ranks.loc["NLM", "brain"] == 1
    assert ranks.loc["gridding"].tolist() == [3.0, 3.0]
    gains = benchmark.gains(table)
    assert set(gains["method"]) == {"NLM", "CS-TV"}
    row = gains[(gains.study == "calf") & (gains.method == "CS-TV") & (gains.snr == 5.0)]
    assert float(row["psnr_gain"].iloc[0]) == pytest.approx(10.0)
    facts = benchmark.findings(ranks.reindex(["CS-TV", "NLM", "gridding"]).rename(
        index={"CS-TV": "calf CNN", "NLM": "brain DAE"}), top=2)
    assert facts["best"] == "calf CNN on the calf, brain DAE on the brain"
    assert facts["consistent"] == "calf CNN, brain DAE"
    assert facts["cs"] == "not available"
    toy = table.copy()
    toy.loc[toy.method == "NLM", ["tsc_voxel_error", "tsc_error"]] = [0.5, 2.0]
    toy.loc[toy.method == "CS-TV", ["tsc_voxel_error", "tsc_error"]] = [0.5, 0.5]
    text = benchmark.findings(ranks, toy)["tsc"]
    assert text.startswith("in 4 of the 8 ")


def test_unknown_study_is_refused():
    with pytest.raises(ValueError, match="unknown study"):
        bench_data.make_case("knee", 0)


def test_two_executions_give_identical_tables():
    """Same seed, same tables (the chapter is not re-executed under nbval: see the Makefile)."""
    import torch

    from nacode.denoise.dip import DIPConfig

    models = benchmark.load_models()
    config = DIPConfig(max_iter=4, base=4, levels=2, window=2, patience=10)
    torch.use_deterministic_algorithms(True)
    try:
        first, second = (benchmark.run(models, levels=(5.0,), n_test=1, cs_iter=30,
                                       dip_config=config, breast_matrix=32, progress=False)
                         for _ in range(2))
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(first[:2], second[:2], strict=True):
        pd.testing.assert_frame_equal(a.drop(columns=["seconds"], errors="ignore"),
                                      b.drop(columns=["seconds"], errors="ignore"))
    assert set(first[0].study) == set(bench_data.STUDIES)
    tuning = first[1]
    assert (tuning.groupby(["study", "snr", "method"]).chosen.sum() == 1).all()
    spans = tuning[tuning.method != "calf CNN"].groupby(["study", "method"]).value.agg(
        lambda v: np.log10(v.max() / v.min()))
    assert (spans >= 2).all()  # the shared protocol's two decades, for every tuned method
