"""The calf CNN's training data: corpus, splits, pairs, noise level against the paper."""

from __future__ import annotations

import numpy as np
import pytest

from nacode.denoise import classic
from nacode.evaluate.metrics import psnr
from nacode.studies import calf_data


@pytest.fixture(scope="module")
def small_corpus():
    return calf_data.brain_corpus(3, 6, seed=7) + calf_data.calf_corpus(4, seed=7)


def test_split_is_by_volume(small_corpus):
    parts = calf_data.split_by_volume(small_corpus, seed=3)
    volumes = {name: {s.volume for s in items} for name, items in parts.items()}
    assert not (volumes["train"] & volumes["val"] or volumes["train"] & volumes["test"]
                or volumes["val"] & volumes["test"])
    assert sum(len(v) for v in parts.values()) == len(small_corpus)


def test_corpus_images_are_distinct_and_seeded(small_corpus):
    images = [s.image for s in small_corpus]
    assert len({im.tobytes() for im in images}) == len(images)
    again = calf_data.brain_corpus(3, 6, seed=7)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(again, small_corpus,
                                                                strict=False))


def test_input_psnr_is_within_1_dB_of_the_paper(small_corpus):
    data = calf_data.build_dataset(small_corpus, seed=1, progress=False)
    for nsa, (noisy, clean) in data.items():
        assert noisy.shape == clean.shape == (len(small_corpus), 80, 80)
        assert noisy.min() == 0.0 and noisy.max() == pytest.approx(1.0)
        median = float(np.median([psnr(c, n) for n, c in zip(noisy, clean, strict=True)]))
        print(f"NSA {nsa}: input PSNR {median:.2f} dB (paper {calf_data.PAPER_INPUT_PSNR[nsa]})")
        assert abs(median - calf_data.PAPER_INPUT_PSNR[nsa]) < 1.0


def test_normalise_rejects_constant_images():
    with pytest.raises(ValueError, match="constant"):
        calf_data.normalise(np.ones((4, 4)), np.ones((4, 4)))


def write_dicom(path, description, uid, value):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SeriesDescription, ds.SeriesInstanceUID = description, uid
    ds.Rows = ds.Columns = 32
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = (np.full((32, 32), value, np.uint16)).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_fastmri_corpus_keeps_axial_fat_suppressed_series(tmp_path):
    write_dicom(tmp_path / "a1", "AX T2 FS", "1.1", 100)
    write_dicom(tmp_path / "a2", "AX T2 FS", "1.1", 110)
    write_dicom(tmp_path / "b1", "AX PD", "1.2", 120)  # not fat-suppressed
    write_dicom(tmp_path / "c1", "COR PD FS", "1.3", 130)  # not axial
    (tmp_path / "junk.dcm").write_bytes(b"not a dicom")
    slices = calf_data.fastmri_corpus(tmp_path)
    assert [s.volume for s in slices] == ["1.1", "1.1"]
    assert slices[1].image.mean() == 110
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="NACODE_FASTMRI_DIR"):
        calf_data.fastmri_corpus(empty)


def test_baselines_denoise_and_tuning_picks_the_best():
    rng = np.random.default_rng(0)
    _, x = np.mgrid[:32, :32]
    clean = np.stack([np.clip(np.sin(x / 5.0 + k) * 0.4 + 0.5, 0, 1) for k in range(4)])
    noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    from nacode.evaluate.tuning import tune_filter

    tuning = tune_filter("Gaussian", "sigma", classic.gaussian, [0.01, 0.1, 1.0, 10.0], noisy,
                         clean)
    scores = dict(zip(tuning.values, tuning.scores, strict=True))
    assert 0.1 <= tuning.best < 10 and not tuning.on_edge
    assert scores[tuning.best] > scores[0.01] + 2  # σ = 0.01 px leaves the noise in
    assert scores[0.01] == pytest.approx(np.median([psnr(c, n) for c, n in zip(
        clean, noisy, strict=True)]), abs=0.01)
    smoothed = classic.nlm(noisy.astype(np.float32), 0.08)
    assert np.median([psnr(c, s) for c, s in zip(clean, smoothed, strict=True)]) > scores[0.01]
    with pytest.raises(ValueError, match="sigma"):
        classic.gaussian(noisy, -1)


def test_table1_compares_methods_against_the_input():
    import torch

    from nacode.denoise.dncnn import ResidualDnCNN
    from nacode.studies import calf

    rng = np.random.default_rng(1)
    _, x = np.mgrid[:24, :24]
    clean = np.stack([np.clip(np.sin(x / 4.0 + k) * 0.4 + 0.5, 0, 1) for k in range(6)])
    noisy = np.clip(clean + 0.08 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
    data = {30: (noisy, clean.astype(np.float32))}
    torch.manual_seed(0)
    per_image, summary, tunings = calf.table1({30: ResidualDnCNN(blocks=1, channels=4)}, data,
                                              data, val_limit=6)
    assert set(tunings.method) == {"Gaussian", "NLM"} and tunings.chosen.sum() == 2
    assert set(summary["image"]) == {"input", "denoised", "gaussian", "nlm"}
    assert len(per_image) == 4 * 6
    rows = summary.set_index("image")
    assert np.isnan(rows.loc["input", "p_psnr"]) and 0 < rows.loc["gaussian", "p_psnr"] <= 1
    assert rows.loc["gaussian", "psnr_median"] > rows.loc["input", "psnr_median"]
    assert rows.loc["input", "tube_change_median"] == 0.0  # the input against itself
    table = calf.gains(summary)
    assert table.loc[0, "paper_cnn_gain"] == pytest.approx(32.6 - 26.9)


def test_tube_roi_finds_the_simulated_tube_inside_its_disc():
    from nacode.physics.proton import add_tube, tube_disc
    from nacode.studies import calf

    rng = np.random.default_rng(3)
    for _ in range(20):
        prepared = add_tube(rng.random((80, 80)) * 2, rng)
        roi = calf.tube_roi(prepared.image)
        inside = tube_disc(80, prepared.centre) > 0.99
        assert roi.sum() > 30 and not (roi & ~inside).any()


def test_tube_diagnosis_sees_a_known_gain_and_its_repair():
    import torch

    from nacode.physics.proton import add_tube
    from nacode.studies import calf

    class Gain(torch.nn.Module):
        def forward(self, x):
            return 1.05 * x, None

    rng = np.random.default_rng(4)
    clean = np.stack([add_tube(0.2 + 0.1 * rng.random((80, 80)), rng).image
                      for _ in range(4)]).astype(np.float32)
    noisy = (clean + 0.01 * rng.standard_normal(clean.shape)).astype(np.float32)
    row = calf.tube_diagnosis({30: Gain()}, {30: (noisy, clean)}).iloc[0]
    assert row.cnn_vs_input_pct == pytest.approx(5.0, abs=1e-3)
    assert row.object_vs_input_pct == pytest.approx(5.0, abs=1e-3)
    assert abs(row.input_vs_truth_pct) < 0.5
    # restoring the input's local mean undoes a gain inside the tube's flat interior
    assert abs(row.restored_vs_truth_pct) < 1.0


def test_tube_scale_response_is_flat_for_an_equivariant_denoiser_only():
    import torch

    from nacode.studies import calf

    class Gain(torch.nn.Module):  # f(a x) = a f(x): the same change at every level
        def forward(self, x):
            return 0.9 * x, None

    class Squash(torch.nn.Module):  # bright values pulled down more: level-dependent
        def forward(self, x):
            return x - 0.1 * x**2, None

    rng = np.random.default_rng(5)
    images, rois = [], []
    for _ in range(3):
        image = 2.0 + rng.random((40, 40))
        image[0, 0] = 0.0  # min–max normalisation maps the background to exactly 0
        tube = np.zeros((40, 40), bool)
        tube[10:20, 10:20] = True
        image[tube] = 10.0
        images.append(image)
        rois.append([tube])
    flat = calf.tube_scale_response({30: Gain()}, {30: (images, rois)}, scales=(1, 2, 4))
    np.testing.assert_allclose(flat.median_pct, -10.0, atol=1e-4)
    np.testing.assert_allclose(flat.tube_level, [1.0, 0.5, 0.25], atol=1e-6)
    bent = calf.tube_scale_response({30: Squash()}, {30: (images, rois)}, scales=(1, 2, 4))
    # x − 0.1 x² at level 1/s: a change of −10/s %
    np.testing.assert_allclose(bent.median_pct, [-10.0, -5.0, -2.5], atol=1e-4)
