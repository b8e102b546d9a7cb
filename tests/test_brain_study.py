"""The brain study: 3D radial model, cohort, folds, masked metrics and the evaluation tables."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from nacode.anatomy.subject import AIR, Subject
from nacode.anatomy.tissues import LITERATURE
from nacode.evaluate.metrics import masked_psnr, masked_ssim, relative_improvement
from nacode.physics import dapr
from nacode.physics.acquire import signal_image
from nacode.studies import brain, brain_data


def test_density_adapted_timing_keeps_shell_density_constant_beyond_k0():
    readout = dapr.Readout(te_ms=0.3, readout_ms=10.0, k0_fraction=0.25)
    r = np.linspace(0.0, 1.0, 2001)
    t = readout.times_ms(r)
    assert t[0] == pytest.approx(0.3) and t[-1] == pytest.approx(10.3)
    assert np.all(np.diff(t) > 0)
    # samples per shell ∝ k² dk/dt: constant beyond k0, where the density adaptation acts
    density = r[1:] ** 2 / np.diff(t) * np.diff(r)
    outer = density[r[1:] > 0.3]
    assert outer.std() / outer.mean() < 1e-2
    # continuous at k0 (no jump in time)
    k0 = np.searchsorted(r, 0.25)
    assert abs(t[k0 + 1] - t[k0]) < 0.01
    assert readout.scan_time_s(dapr.BRAIN_SEQUENCE) == 400.0


def test_noise_has_the_requested_image_domain_sd():
    rng = np.random.default_rng(0)
    kspace = np.zeros((32, 32, 32), complex)
    noisy = dapr.add_noise(kspace, 2.5, dapr.BRAIN_READOUT, rng)
    image = np.fft.ifftn(np.fft.ifftshift(noisy))
    assert image.real.std() == pytest.approx(2.5, rel=0.03)
    assert image.imag.std() == pytest.approx(2.5, rel=0.03)
    weight = dapr.noise_weight((32, 32, 32), dapr.BRAIN_READOUT)
    assert weight[0, 0, 0] == 0.0 and weight.max() == 1.0  # corners outside the sphere


def _block_subject(n: int = 16, voxel: float = 2.0) -> Subject:
    labels = np.zeros((n, n, n), np.int16)
    labels[4:12, 5:11, 6:10] = 1
    return Subject(kind="brain", seed=0, labels=labels,
                   tissues={0: AIR, 1: LITERATURE["GM"]},
                   proton=np.zeros((n, n, n), np.float32), voxel_mm=(voxel,) * 3)


def test_k_space_centre_is_the_mean_signal_and_decay_lowers_the_image():
    subject = _block_subject()
    kspace = dapr.acquire_kspace(subject, (8, 8, 8), readout_decay=False)
    te_signal = signal_image(subject, dapr.BRAIN_SEQUENCE, te_ms=dapr.BRAIN_READOUT.te_ms)
    assert kspace[4, 4, 4].real == pytest.approx(te_signal.mean() * 8**3, rel=1e-6)
    assert abs(kspace[4, 4, 4].imag) < 1e-9 * abs(kspace[4, 4, 4])
    decayed = dapr.reconstruct(dapr.acquire_kspace(subject, (8, 8, 8)))
    plain = dapr.reconstruct(kspace)
    assert decayed.sum() < plain.sum()  # T2* decay during the readout loses signal
    with pytest.raises(ValueError, match="multiple"):
        dapr.acquire_kspace(subject, (6, 6, 6))


def test_folds_follow_the_paper_and_never_reuse_a_subject():
    folds = brain_data.folds()
    assert [len(f.val) + len(f.test) for f in folds] == [3, 3, 3, 2, 2]
    tested = [s for f in folds for s in f.test]
    assert len(tested) == len(set(tested)) == 8
    for fold in folds:
        roles = set(fold.train), set(fold.val), set(fold.test)
        assert not (roles[0] & roles[1] or roles[0] & roles[2] or roles[1] & roles[2])
        assert set().union(*roles) == set(range(13))
    assert brain_data.folds() == folds  # seeded
    with pytest.raises(ValueError, match="add up"):
        brain_data.folds(13, (3, 3, 3, 3, 2))
    with pytest.raises(ValueError, match="add up"):
        brain_data.folds(4, (3, 1))


def test_masked_metrics_known_answers():
    reference = np.linspace(0.0, 1.0, 12**3).reshape(12, 12, 12)  # ≥ the 11³ SSIM window
    mask = np.ones(reference.shape, bool)
    mask[0] = False
    shifted = reference + 0.1
    ref_range = reference[mask].max() - reference[mask].min()
    assert masked_psnr(reference, shifted, mask) == pytest.approx(
        10 * np.log10(ref_range**2 / 0.01))
    assert masked_ssim(reference, reference, mask) == pytest.approx(1.0)
    assert masked_ssim(reference, shifted, mask) < 1.0
    assert relative_improvement(20.0, 21.0) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="mask"):
        masked_psnr(reference, shifted, np.zeros(reference.shape, bool))


def test_improvement_table_and_tsc_error_known_answers():
    rows = []
    for s, (before, after) in enumerate([(20.0, 21.0), (25.0, 25.5), (30.0, 30.3)]):
        rows += [{"fold": 1, "subject": s, "acquisition": 1, "method": "input", "psnr": before},
                 {"fold": 1, "subject": s, "acquisition": 1, "method": "DAE", "psnr": after}]
    table = brain.improvement_table(pd.DataFrame(rows), "psnr").set_index("method")
    assert table.loc["DAE", "mean"] == pytest.approx(np.mean([5.0, 2.0, 1.0]))
    assert table.loc["DAE", "median"] == pytest.approx(2.0)
    assert table.loc["DAE", "sd"] == pytest.approx(np.std([5.0, 2.0, 1.0], ddof=1))
    errors = {("DAE", "GM"): np.array([1.0, -1.0, 3.0, 1.0])}
    tsc = brain.tsc_error_table(errors).iloc[0]
    sd = np.std([1.0, -1.0, 3.0, 1.0], ddof=1)
    assert tsc["bias_mM"] == pytest.approx(1.0)
    assert tsc["loa_high_mM"] == pytest.approx(1.0 + 1.96 * sd)
    assert tsc["mae_mM"] == pytest.approx(1.5)


@pytest.fixture(scope="module")
def scan():
    from nacode.anatomy.brain import brain_subject

    subject = brain_subject(3000, voxel_mm=2, acquisition_mm=4.0)
    return brain_data.scan_subject(subject, np.random.default_rng(0))


def test_scan_is_calibrated_and_has_the_requested_noise(scan):
    for fit in scan.calibrations:
        assert fit.r2 > 0.99
    mask = scan.brain_mask
    assert scan.acquisitions.shape == (3, 60, 60, 60) and mask.sum() > 20000
    # inside the brain the noise (one acquisition minus the noiseless one) has the set SD
    noise_sd = scan.sigma / np.mean([c.slope for c in scan.calibrations]) / brain_data.NORM_MM
    residual = (scan.acquisitions[0] - scan.noiseless)[mask]
    assert residual.std() == pytest.approx(noise_sd, rel=0.05)
    # mean noiseless brain signal / noise SD is the cohort's SNR (in signal units, before
    # the tube calibration's intercept is removed)
    slope = np.mean([c.slope for c in scan.calibrations])
    intercept = np.mean([c.intercept for c in scan.calibrations])
    signal = scan.noiseless[mask].mean() * brain_data.NORM_MM * slope + intercept
    assert signal / scan.sigma == pytest.approx(brain_data.SNR, rel=0.05)
    # averaging three acquisitions lowers the error against the noiseless image by ≈ √3
    single = np.sqrt(np.mean(residual**2))
    mean3 = np.sqrt(np.mean((scan.reference - scan.noiseless)[mask] ** 2))
    assert single / mean3 == pytest.approx(np.sqrt(3), rel=0.1)


def test_tubes_are_read_back_at_their_concentration(scan):
    from nacode.anatomy.brain import brain_subject

    subject = brain_subject(3000, voxel_mm=2, acquisition_mm=4.0)
    rois = brain_data.cylinder_rois(subject.tubes, brain_data.MATRIX, brain_data.VOXEL_MM,
                                    subject.extra["tube_length_mm"])
    for roi, tube in zip(rois, subject.tubes, strict=True):
        assert scan.noiseless[roi].mean() * brain_data.NORM_MM == pytest.approx(
            tube.concentration, abs=2.0)
    # the scan keeps its calibration ROIs, in the order of the fit's concentrations
    kept = scan.tube_rois()
    assert len(kept) == len(rois)
    for mine, theirs in zip(kept, rois, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    # each acquisition's tube means lie where its own calibration line put them
    fit = scan.calibrations[1]
    means = [scan.acquisitions[1][roi].mean() * brain_data.NORM_MM for roi in kept]
    np.testing.assert_allclose(means, (fit.signals - fit.intercept) / fit.slope, rtol=1e-5)
    with pytest.raises(ValueError, match="tube ROIs"):
        brain_data.BrainScan(**{**scan.__dict__, "tube_labels": None}).tube_rois()


def test_nlm_lowers_the_error_and_keeps_voxels_outside_the_mask(scan):
    from nacode.denoise.classic import nlm_volume

    mask = scan.brain_mask
    noisy = scan.acquisitions[0]
    out = nlm_volume(noisy, 1.0, mask)
    np.testing.assert_array_equal(out[~mask], noisy[~mask])
    assert masked_psnr(scan.noiseless, out, mask) > masked_psnr(scan.noiseless, noisy, mask)


def test_cohort_round_trips_through_its_cache_file(scan, tmp_path):
    path = tmp_path / "cohort.npz"
    brain_data.save_cohort([scan], path)
    loaded = brain_data.load_cohort(path)[0]
    np.testing.assert_array_equal(loaded.acquisitions, scan.acquisitions)
    np.testing.assert_array_equal(loaded.brain_mask, scan.brain_mask)
    assert loaded.calibrations[1].slope == scan.calibrations[1].slope
    np.testing.assert_array_equal(loaded.calibrations[2].signals, scan.calibrations[2].signals)
    np.testing.assert_array_equal(loaded.tube_labels, scan.tube_labels)
    assert [p.name for p in tmp_path.iterdir()] == ["cohort.npz"]  # atomic: no temp file left


def test_bm4d_baseline_is_skipped_cleanly_when_not_installed(monkeypatch):
    import builtins

    from nacode.denoise.classic import bm4d_volume

    real_import = builtins.__import__

    def no_bm4d(name, *args, **kwargs):
        if name == "bm4d":
            raise ImportError("No module named 'bm4d'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bm4d)
    assert bm4d_volume(np.zeros((8, 8, 8), np.float32)) is None


def test_evaluate_scores_every_method_and_two_executions_agree(scan):
    """End to end on one fold (validation and test subject: the same scan, for speed).

    Same seed, same tables: the chapter is not re-executed under nbval (see the Makefile).
    """
    import torch

    from nacode.denoise.dae import PatchDAE

    z = slice(scan.brain_mask.shape[2] // 2 - 6, scan.brain_mask.shape[2] // 2 + 6)
    slab = dataclasses.replace(  # 12 central slices: the tubes run through them
        scan, acquisitions=scan.acquisitions[..., z], noiseless=scan.noiseless[..., z],
        truth_mm=scan.truth_mm[..., z], brain_mask=scan.brain_mask[..., z],
        fractions={k: v[..., z] for k, v in scan.fractions.items()},
        tube_labels=scan.tube_labels[..., z])
    torch.manual_seed(0)
    models = {1: PatchDAE()}
    fold = brain_data.Fold(index=1, train=(), val=(0,), test=(1,))
    first, second = (brain.evaluate([slab, slab], [fold], models, tuning_acquisitions=1,
                                    progress=False)
                     for _ in range(2))
    for name in ("per_volume", "scores", "tubes"):
        pd.testing.assert_frame_equal(getattr(first, name).drop(columns="seconds",
                                                                errors="ignore"),
                                      getattr(second, name).drop(columns="seconds",
                                                                 errors="ignore"))
    for key, error in first.errors.items():
        np.testing.assert_array_equal(error, second.errors[key])
    table = first.per_volume
    assert len(table) == 3 * len(set(table.method)) and {"input", "NLM", "DAE"} <= set(
        table.method)
    tuning = first.tunings[1]
    assert not tuning.on_edge and tuning.decades >= 2 and table.h.dropna().eq(tuning.best).all()
    rows = brain.tuning_rows(first.tunings)
    assert rows.chosen.sum() == 1 and set(rows.fold) == {1}
    # the tuned NLM beats the input against the mean of three
    psnr = table.groupby("method").psnr.mean()
    assert psnr["NLM"] > psnr["input"]
