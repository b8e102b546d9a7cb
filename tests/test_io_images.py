"""nacode.io.images: layouts (singleton axes, multi-frame DICOM, slice axis), derived DICOM
series, compressed DICOM from pydicom's own test files, provenance, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nacode.io import images as io


def _mr_small():
    from pydicom.data import get_testdata_file

    return get_testdata_file("MR_small.dcm", download=False)


@pytest.mark.parametrize(("shape", "fmt", "axis"), [
    ((80, 80, 12), "nifti", 2), ((12, 80, 80), "dicom", 0), ((5, 80, 80), "dicom", 0),
    ((40, 50, 60), "nifti", 2), ((3, 40, 40), "npy", 0), ((1, 160, 160), "nifti", None),
    ((160, 1, 160), "nifti", None), ((64, 64, 64), "nifti", 2), ((30, 30, 60), "nifti", 2),
])
def test_the_slice_axis_rule(shape, fmt, axis):
    assert io.choose_slice_axis(shape, fmt) == axis


def test_an_explicit_slice_axis_wins_and_bad_ones_are_named():
    assert io.choose_slice_axis((12, 80, 80), "nifti", slice_axis=2) == 2
    assert io.choose_slice_axis((12, 80, 80), "nifti", slice_axis=-1) == 2
    with pytest.raises(ValueError, match="is not an axis"):
        io.choose_slice_axis((12, 80, 80), "nifti", slice_axis=3)
    with pytest.raises(ValueError, match="without 2D images"):
        io.choose_slice_axis((1, 80, 80), "nifti", slice_axis=1)


def _nifti(path, data):
    import nibabel

    nibabel.save(nibabel.Nifti1Image(data.astype(np.float32), np.diag([3, 3, 3, 1.0])), path)


def test_a_single_slice_nifti_with_a_leading_singleton_axis(tmp_path):
    """(1, 160, 160) was refused as '(1, 160) pixels are too small'."""
    data = np.random.default_rng(0).random((1, 160, 160))
    _nifti(tmp_path / "a.nii.gz", data)
    stack, layout = io.read_images(tmp_path / "a.nii.gz")
    assert stack.shape == (1, 160, 160) and layout.slice_axis is None
    assert layout.describe() == "1 image of (1, 160, 160)"
    io.write_images(tmp_path / "b.nii.gz", 2 * stack, layout, {"method": "test"})
    import nibabel

    out = nibabel.load(tmp_path / "b.nii.gz")
    assert out.shape == (1, 160, 160)
    np.testing.assert_allclose(out.get_fdata(), 2 * data, rtol=1e-6)
    assert out.header["descrip"].tobytes().decode().startswith("nacode ")
    sidecar = json.loads((tmp_path / "b.nii.gz.json").read_text(encoding="utf-8"))
    assert sidecar["method"] == "test" and sidecar["layout"] == layout.describe()


def test_a_nifti_stack_round_trips_along_any_axis(tmp_path):
    data = np.random.default_rng(1).random((20, 24, 10))
    _nifti(tmp_path / "a.nii", data)
    for axis, n in ((None, 10), (0, 20)):
        stack, layout = io.read_images(tmp_path / "a.nii", slice_axis=axis)
        assert stack.shape[0] == n
        io.write_images(tmp_path / "b.nii", stack, layout)
        import nibabel

        np.testing.assert_allclose(nibabel.load(tmp_path / "b.nii").get_fdata(), data,
                                   rtol=1e-6)


def _multiframe(path, frames: int):
    import pydicom

    ds = pydicom.dcmread(_mr_small())
    rng = np.random.default_rng(frames)
    pixels = rng.integers(100, 2000, (frames, ds.Rows, ds.Columns)).astype(np.int16)
    ds.NumberOfFrames = frames
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return pixels


@pytest.mark.parametrize("frames", [12, 5])
def test_multi_frame_dicom_is_read_as_frames(tmp_path, frames):
    """12 frames of 64² were read as 64 images of 12 × 64; 5 frames refused as (5, 64)."""
    pixels = _multiframe(tmp_path / "mf.dcm", frames)
    stack, layout = io.read_images(tmp_path / "mf.dcm")
    assert stack.shape == (frames, 64, 64) and layout.slice_axis == 0
    np.testing.assert_array_equal(stack, pixels)
    io.write_images(tmp_path / "out.dcm", stack + 1, layout)
    import pydicom

    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert int(out.NumberOfFrames) == frames
    np.testing.assert_array_equal(out.pixel_array, pixels + 1)


def test_dicom_output_is_a_derived_series(tmp_path):
    import pydicom

    original = pydicom.dcmread(_mr_small())
    stack, layout = io.read_images(_mr_small())
    io.write_images(tmp_path / "out.dcm", stack, layout, {"method": "cnn", "sha256": "ab" * 32})
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert out.SeriesInstanceUID != original.SeriesInstanceUID
    assert out.SOPInstanceUID != original.SOPInstanceUID
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert int(out.SeriesNumber) == int(original.SeriesNumber) + 1000
    assert list(out.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert out.DerivationDescription.startswith("nacode ") and "cnn abababababab" in \
        out.DerivationDescription
    np.testing.assert_array_equal(out.pixel_array, original.pixel_array)


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                                  "MR_small_jp2klossless.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm"])
def test_pydicoms_own_files_are_read_and_written_back_uncompressed(tmp_path, name):
    """Files nacode did not write. A compressed one without an installed decoder is refused
    in one line that names the package to install (and the test says so as its skip)."""
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    try:
        stack, layout = io.read_images(path)
    except ValueError as exc:
        message = str(exc)
        assert "no decoder" in message and "pip install" in message and "\n" not in message
        pytest.skip(f"{name}: {message.split('; ', 1)[1]}")
    reference = pydicom.dcmread(_mr_small()).pixel_array  # the same image, uncompressed
    np.testing.assert_array_equal(stack[0], reference)
    io.write_images(tmp_path / "out.dcm", stack, layout)
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert not out.file_meta.TransferSyntaxUID.is_compressed
    np.testing.assert_array_equal(out.pixel_array, reference)


def test_a_failed_sidecar_leaves_no_image(tmp_path, monkeypatch):
    from nacode import results

    np.save(tmp_path / "a.npy", np.ones((2, 16, 16)))
    stack, layout = io.read_images(tmp_path / "a.npy")

    def broken(path, data):
        raise OSError("disk full")

    monkeypatch.setattr(results, "write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        io.write_images(tmp_path / "b.npy", stack, layout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


def _series(folder, positions, uid="1.2.3.4", names=None):
    """Single-frame files of one series at the given slice positions (mm), files named out
    of order; pixel value 100 + position so that the order can be checked."""
    import pydicom

    folder.mkdir(exist_ok=True)
    for k, z in enumerate(positions):
        ds = pydicom.dcmread(_mr_small())
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = f"{uid}.{k + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, z]
        ds.InstanceNumber = k + 1
        ds.PixelData = np.full((ds.Rows, ds.Columns), 100 + z, np.int16).tobytes()
        ds.save_as(folder / (names[k] if names else f"x{k:02d}.dcm"),
                   enforce_file_format=True)
    (folder / "notes.txt").write_text("not DICOM", encoding="utf-8")


def test_a_series_folder_is_read_in_slice_order_and_written_as_a_derived_series(tmp_path):
    import pydicom

    _series(tmp_path / "in", [30, 10, 40, 20], names=["b.dcm", "d.dcm", "a.dcm", "c.dcm"])
    stack, layout = io.read_images(tmp_path / "in")
    assert stack.shape == (4, 64, 64) and layout.describe().startswith("a DICOM series of 4")
    assert [int(s[0, 0]) for s in stack] == [110, 120, 130, 140]  # by position, not by name
    io.write_images(tmp_path / "out", stack + 1, layout, {"method": "test"})
    files = sorted((tmp_path / "out").glob("*.dcm"))
    assert [f.name for f in files] == ["a.dcm", "b.dcm", "c.dcm", "d.dcm"]
    out = [pydicom.dcmread(f) for f in files]
    assert len({ds.SeriesInstanceUID for ds in out}) == 1
    assert out[0].SeriesInstanceUID != "1.2.3.4"
    assert len({ds.SOPInstanceUID for ds in out}) == 4
    back, _ = io.read_images(tmp_path / "out")
    np.testing.assert_array_equal(back, stack + 1)
    assert json.loads((tmp_path / "out" / "nacode.json").read_text())["method"] == "test"
    with pytest.raises(ValueError, match="a series is written into a new folder"):
        io.write_images(tmp_path / "out", stack, layout)


def test_a_folder_with_two_series_or_none_is_refused(tmp_path):
    _series(tmp_path / "two", [0, 5])
    _series(tmp_path / "two", [0], uid="9.9.9", names=["other.dcm"])
    with pytest.raises(ValueError, match="2 DICOM series in one folder"):
        io.read_images(tmp_path / "two")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="without DICOM files"):
        io.read_images(tmp_path / "empty")
