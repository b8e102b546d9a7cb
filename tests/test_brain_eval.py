"""SSIM/pSNR conventions and tube changes of the brain study (nacode.studies.brain_eval)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.metrics import structural_similarity

from nacode.evaluate import metrics
from nacode.evaluate.metrics import region_psnr, windowed_ssim
from nacode.studies import brain, brain_eval


def _volume(n: int = 16, half: float = 0.5, seed: int = 0):
    """A smooth bright block ("brain") in a dark field, its mask and a noise generator."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, n)
    gx, gy, gz = np.meshgrid(x, x, x, indexing="ij")
    mask = (np.abs(gx) < half) & (np.abs(gy) < half) & (np.abs(gz) < half)
    reference = np.where(mask, 0.4 + 0.2 * np.cos(3 * gx) * np.sin(2 * gy), 0.0)
    return reference, mask, rng


def test_whole_fov_ssim_is_one_for_identical_volumes_and_matches_skimage():
    reference, mask, rng = _volume()
    image = reference + rng.normal(0, 0.05, reference.shape)
    assert windowed_ssim(reference, reference) == pytest.approx(1.0)
    span = reference.max() - reference.min()
    assert windowed_ssim(reference, image) == pytest.approx(
        structural_similarity(reference, image, data_range=span))
    assert windowed_ssim(reference, image, data_range=2.0) == pytest.approx(
        structural_similarity(reference, image, data_range=2.0))
    assert windowed_ssim(reference, image, gaussian=True, data_range=1.0) == pytest.approx(
        metrics.ssim(reference, image, data_range=1.0))
    slices = np.mean([structural_similarity(reference[:, :, z], image[:, :, z], data_range=span)
                      for z in range(reference.shape[2])])
    assert windowed_ssim(reference, image, slice_axis=2) == pytest.approx(slices)
    # the chapter's masked SSIM is one of the conventions
    assert windowed_ssim(reference, image, gaussian=True, mask=mask) == pytest.approx(
        metrics.masked_ssim(reference, image, mask))


def test_masked_and_whole_fov_differ_when_the_background_is_noisy():
    reference, mask, rng = _volume(n=32, half=0.3)  # background beyond a window's reach
    noisy_background = reference + np.where(mask, 0.0, rng.normal(0, 0.05, reference.shape))
    inside = windowed_ssim(reference, noisy_background, mask=mask)
    everywhere = windowed_ssim(reference, noisy_background)
    assert inside > 0.9 and everywhere < inside - 0.2
    assert region_psnr(reference, noisy_background, mask=mask) == float("inf")
    assert np.isfinite(region_psnr(reference, noisy_background))


def test_region_psnr_known_answers():
    reference, mask, _ = _volume()
    shifted = reference + 0.1
    assert region_psnr(reference, shifted, mask=mask) == pytest.approx(
        metrics.masked_psnr(reference, shifted, mask))
    assert region_psnr(reference, shifted, peak="max") == pytest.approx(
        10 * np.log10(reference.max() ** 2 / 0.01))
    assert region_psnr(reference, shifted, peak=1.0) == pytest.approx(
        metrics.psnr(reference, shifted))
    # slice-wise: every slice has the same MSE, so the mean equals the 3D value
    assert region_psnr(reference, shifted, slice_axis=2) == pytest.approx(
        region_psnr(reference, shifted))
    with pytest.raises(ValueError, match="peak"):
        region_psnr(reference, shifted, peak="mean")
    with pytest.raises(ValueError, match="mask"):
        windowed_ssim(reference, shifted, mask=np.zeros(reference.shape, bool))


def test_every_convention_of_an_unchanged_image_is_perfect():
    reference, mask, _ = _volume()
    rows = pd.DataFrame(brain_eval.convention_rows({"fold": 1}, "input", reference, reference,
                                                   mask))
    assert len(rows) == len(brain_eval.SSIM_CONVENTIONS) + len(brain_eval.PSNR_CONVENTIONS)
    np.testing.assert_allclose(rows[rows.metric == "ssim"].value, 1.0)
    assert np.isinf(rows[rows.metric == "psnr"].value).all()


def test_conventions_table_known_answers():
    rows = []
    for s, values in enumerate([(0.5, 0.6, 0.65), (0.8, 0.84, 0.88)]):
        for c in brain_eval.SSIM_CONVENTIONS:
            rows += [{"fold": 1, "subject": s, "acquisition": 1, "metric": "ssim",
                      "convention": c.key, "method": m, "value": v}
                     for m, v in zip(("input", "NLM", "DAE"), values, strict=True)]
    table = brain_eval.conventions_table(pd.DataFrame(rows), "ssim", brain.PAPER_TABLE3)
    row = table.iloc[0]
    assert row["convention"] == "brain mask · Gaussian σ 1.5 · 3D · range of reference"
    assert row["input"] == pytest.approx(0.65)
    assert row["NLM %"] == pytest.approx(np.mean([20.0, 5.0]))
    assert row["DAE %"] == pytest.approx(np.mean([30.0, 10.0]))
    assert row["distance (pp)"] == pytest.approx((18.85 - 12.5 + 28.75 - 20.0) / 2)


def test_conventions_table_over_all_conventions():
    reference, mask, rng = _volume()
    rows = []
    for s in range(2):
        noisy = reference + rng.normal(0, 0.05, reference.shape)
        for method, image in (("input", noisy), ("NLM", 0.5 * (noisy + reference)),
                              ("DAE", reference + 0.2 * (noisy - reference))):
            rows += brain_eval.convention_rows({"fold": 1, "subject": s, "acquisition": 1},
                                               method, reference, image, mask)
    scores = pd.DataFrame(rows)
    table = brain_eval.conventions_table(scores, "ssim", brain.PAPER_TABLE3)
    assert len(table) == len(brain_eval.SSIM_CONVENTIONS)
    assert (table["DAE %"] > table["NLM %"]).all() and (table["NLM %"] > 0).all()
    row = table.iloc[0]
    assert row["distance (pp)"] == pytest.approx(
        (abs(row["NLM %"] - 18.85) + abs(row["DAE %"] - 28.75)) / 2)
    closest = brain_eval.closest_convention(table)
    assert closest["distance (pp)"] == table["distance (pp)"].min()
    assert len(brain_eval.conventions_table(scores, "psnr", brain.PAPER_TABLE2)) == len(
        brain_eval.PSNR_CONVENTIONS)


def _tubes(n: int = 12):
    concentrations = [25.0, 50.0, 75.0, 100.0]
    labels = np.zeros((n, n, n), np.int8)
    for k in range(4):
        labels[1 + 3 * k: 3 + 3 * k, 1:3, 2:8] = k + 1
    image = np.zeros((n, n, n))
    for k, c in enumerate(concentrations):
        image[labels == k + 1] = c / 100
    return image, [labels == k + 1 for k in range(4)], concentrations


def test_identity_denoiser_leaves_the_tubes_and_a_scaling_moves_them_by_its_factor():
    image, rois, concentrations = _tubes()
    same = pd.DataFrame(brain_eval.tube_rows({"fold": 1}, "identity", image, image.copy(),
                                             concentrations, rois))
    np.testing.assert_allclose(same.change_pct, 0.0)
    np.testing.assert_allclose(same.before_mM, concentrations)
    scaled = pd.DataFrame(brain_eval.tube_rows({"fold": 1}, "x1.05", image, 1.05 * image,
                                               concentrations, rois))
    np.testing.assert_allclose(scaled.change_pct, 5.0)
    change = brain_eval.tube_change_table(pd.concat([same, scaled]))
    assert change.method.tolist() == ["identity"] * 4 + ["x1.05"] * 4
    assert change.median_pct.tolist() == pytest.approx([0.0] * 4 + [5.0] * 4)
    worst = brain_eval.worst_tube_change(change)
    assert worst.loc["x1.05", "tube_change_pct"] == pytest.approx(5.0)
    assert worst.loc["identity", "worst_image_pct"] == pytest.approx(0.0)


def test_tube_change_aggregates_with_median_and_iqr_and_skips_small_tubes():
    image, rois, concentrations = _tubes()
    rows = []
    for v, factor in enumerate((1.00, 1.02, 1.04, 1.10)):
        after = image.copy()
        after[rois[0]] *= 0.5  # the 25 mM tube halves in every volume
        after[rois[1]] *= factor
        rows += brain_eval.tube_rows({"fold": 1, "subject": v}, "M", image, after,
                                     concentrations, rois)
    change = brain_eval.tube_change_table(pd.DataFrame(rows)).set_index("tube_mM")
    assert change.loc[50.0, "median_pct"] == pytest.approx(3.0)  # median of 0, 2, 4, 10
    assert change.loc[50.0, "iqr_pct"] == pytest.approx(5.5 - 1.5)
    assert change.loc[50.0, "max_abs_pct"] == pytest.approx(10.0)
    assert change.loc[25.0, "n"] == 4
    worst = brain_eval.worst_tube_change(change.reset_index())
    assert worst.loc["M", "tube_change_pct"] == pytest.approx(-50.0)
    above = brain_eval.worst_tube_change(change.reset_index(), min_mm=50.0)
    assert above.loc["M", "tube_mM"] == 50.0


def test_recalibration_undoes_a_scaling_of_the_tubes():
    image, rois, concentrations = _tubes()
    tissue = (np.arange(image.size).reshape(image.shape) % 7 == 0) & ~np.any(rois, axis=0)
    image = image + 0.3 * tissue
    np.testing.assert_allclose(brain_eval.recalibrated(image, rois, concentrations), image,
                               atol=1e-6)
    np.testing.assert_allclose(brain_eval.recalibrated(1.05 * image + 0.01, rois,
                                                       concentrations), image, atol=1e-6)


def test_summary_table_joins_scores_tsc_and_tubes():
    image, rois, concentrations = _tubes()
    scores = pd.DataFrame([{"fold": 1, "subject": 0, "acquisition": 1, "method": m,
                            "metric": metric, "convention": key, "value": value}
                           for m in ("input", "NLM")
                           for metric, key, value in (("psnr", "mask_range", 30.0),
                                                      ("ssim", "mask_gauss_3d", 0.9),
                                                      ("ssim", "fov_uniform_3d", 0.8))])
    tubes = pd.DataFrame(brain_eval.tube_rows({}, "input", image, image, concentrations, rois)
                         + brain_eval.tube_rows({}, "NLM", image, 1.05 * image,
                                                concentrations, rois))
    tsc = brain.tsc_error_table({("input", "GM"): np.array([1.0, -1.0]),
                                 ("NLM", "GM"): np.array([0.5, -0.5]),
                                 ("noiseless", "GM"): np.array([2.0, 2.0])})
    table = brain_eval.summary_table(scores, brain_eval.tube_change_table(tubes), tsc)
    assert table.method.tolist() == ["input", "NLM", "noiseless"]
    row = table.set_index("method").loc["NLM"]
    assert row["tube Δ worst (%)"] == pytest.approx(5.0)
    assert row["MAE GM (mM)"] == pytest.approx(0.5)
    assert row["SSIM whole FOV"] == pytest.approx(0.8)
    assert np.isnan(table.set_index("method").loc["noiseless", "SSIM masked"])
