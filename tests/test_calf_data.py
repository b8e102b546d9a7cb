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
    best, scores = classic.tune(classic.gaussian, [0.0, 0.5, 1.0, 2.0], noisy, clean)
    assert best > 0 and scores[best] > scores[0.0] + 2
    smoothed = classic.nlm(noisy.astype(np.float32), 0.08)
    assert np.median([psnr(c, s) for c, s in zip(clean, smoothed, strict=True)]) > scores[0.0]
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
    per_image, summary = calf.table1({30: ResidualDnCNN(blocks=1, channels=4)}, data, data,
                                     val_limit=6)
    assert set(summary["image"]) == {"input", "denoised", "gaussian", "nlm"}
    assert len(per_image) == 4 * 6
    rows = summary.set_index("image")
    assert np.isnan(rows.loc["input", "p_psnr"]) and 0 < rows.loc["gaussian", "p_psnr"] <= 1
    assert rows.loc["gaussian", "psnr_median"] > rows.loc["input", "psnr_median"]
    table = calf.gains(summary)
    assert table.loc[0, "paper_cnn_gain"] == pytest.approx(32.6 - 26.9)
