"""`nacode denoise` on a researcher's own files: formats, normalisation, refusals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from nacode.denoise import apply
from nacode.denoise.dncnn import ResidualDnCNN
from nacode.manifest import sha256_file


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ResidualDnCNN().state_dict().items()}, str(path))
    return path


def cli(*args):
    return subprocess.run([sys.executable, "-m", "nacode", "denoise", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def image(shape=(40, 40), seed=0):
    rng = np.random.default_rng(seed)
    return (50 + 20 * rng.random(shape)).astype(np.float32)


def test_npy_single_and_stack(tmp_path, weights):
    for data in (image(), np.stack([image(seed=s) for s in range(3)])):
        src, dst = tmp_path / "in.npy", tmp_path / "out.npy"
        np.save(src, data)
        result = cli(src, dst, "--nsa", 28, "--model", weights)
        assert result.returncode == 0, result.stderr
        out = np.load(dst)
        assert out.shape == data.shape and np.all(np.isfinite(out))
        assert "NSA 30 model" in result.stdout  # nearest trained NSA
        # normalisation undone: the output lives in the input's intensity range
        assert abs(float(out.mean()) - float(data.mean())) < 0.5 * float(data.std()) + 5


def test_nifti_stack_keeps_affine(tmp_path, weights):
    import nibabel

    data = np.stack([image(seed=s) for s in range(2)], axis=-1)
    affine = np.diag([2.25, 2.25, 30.0, 1.0])
    nibabel.save(nibabel.Nifti1Image(data, affine), tmp_path / "in.nii.gz")
    assert cli(tmp_path / "in.nii.gz", tmp_path / "out.nii.gz", "--nsa", 10, "--model",
               weights).returncode == 0
    out = nibabel.load(tmp_path / "out.nii.gz")
    assert out.shape == data.shape and np.allclose(out.affine, affine)


def test_dicom_round_trip(tmp_path, weights):
    from test_calf_data import write_dicom

    write_dicom(tmp_path / "in.dcm", "AX NA", "1.9", 100)
    result = cli(tmp_path / "in.dcm", tmp_path / "out.dcm", "--nsa", 50, "--model", weights)
    assert result.returncode == 0, result.stderr
    import pydicom

    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert out.pixel_array.shape == (32, 32) and "denoised" in out.SeriesDescription


@pytest.mark.parametrize(("data", "message"), [
    (np.ones((16, 16), complex), "complex"),
    (np.full((16, 16), np.nan), "NaN"),
    (np.ones((2, 2, 16, 16)), "4 non-singleton axes"),
    (np.ones((4, 4)), "too small"),
    (np.full((16, 16), 1e300), "exceed float32's range"),  # was an all-Inf output, exit 0
])
def test_refusals_are_one_line_and_leave_no_output(tmp_path, weights, data, message):
    np.save(tmp_path / "in.npy", data)
    result = cli(tmp_path / "in.npy", tmp_path / "out.npy", "--nsa", 30, "--model", weights)
    assert result.returncode == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.npy").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.npy"]  # no sidecar either


def test_corrupt_file_is_refused(tmp_path, weights):
    (tmp_path / "in.nii.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    result = cli(tmp_path / "in.nii.gz", tmp_path / "out.nii.gz", "--nsa", 30, "--model",
                 weights)
    assert result.returncode == 1 and "corrupt or truncated" in result.stderr


def test_tampered_weights_listed_in_the_manifest_are_refused(tmp_path, weights, monkeypatch):
    from nacode.studies import calf

    copy = tmp_path / "model.safetensors"
    copy.write_bytes(weights.read_bytes())
    digest = sha256_file(copy)
    monkeypatch.setattr(calf, "manifest_digests", lambda: {copy.resolve(): digest})
    np.save(tmp_path / "in.npy", image())
    apply.run(tmp_path / "in.npy", tmp_path / "ok.npy", copy, digest=digest)  # intact
    raw = bytearray(copy.read_bytes())
    raw[-3] ^= 0x55
    copy.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        apply.run(tmp_path / "in.npy", tmp_path / "out.npy", copy, digest=digest)
    assert not (tmp_path / "out.npy").exists()


def test_nearest_nsa():
    assert apply.nearest_nsa(150, (50, 40, 30, 20, 10)) == 50
    assert apply.nearest_nsa(25, (50, 40, 30, 20, 10)) == 30
    with pytest.raises(ValueError, match="positive"):
        apply.nearest_nsa(0, (50,))


def test_nan_weights_are_refused_and_nothing_is_written(tmp_path):
    """A weight file holding NaN gave an all-NaN image with exit 0."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in ResidualDnCNN().state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], float("nan"))
    save_file(state, str(tmp_path / "nan.safetensors"))
    np.save(tmp_path / "in.npy", image())
    result = cli(tmp_path / "in.npy", tmp_path / "out.npy", "--nsa", 30, "--model",
                 tmp_path / "nan.safetensors")
    assert result.returncode == 1 and "NaN or infinity" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.npy").exists()


def test_a_constant_image_comes_back_unchanged(tmp_path, weights):
    """5.0 everywhere came back as 4.965: there is no range to normalise by."""
    stack = np.stack([np.full((16, 16), 5.0, np.float32), image((16, 16))])
    np.save(tmp_path / "in.npy", stack)
    assert cli(tmp_path / "in.npy", tmp_path / "out.npy", "--nsa", 30, "--model",
               weights).returncode == 0
    out = np.load(tmp_path / "out.npy")
    assert np.array_equal(out[0], stack[0]) and not np.array_equal(out[1], stack[1])


def test_output_paths_are_checked_before_any_work(tmp_path, weights):
    import os

    np.save(tmp_path / "in.npy", image())
    before = (tmp_path / "in.npy").read_bytes()
    same = cli(tmp_path / "in.npy", tmp_path / "in.npy", "--nsa", 30, "--model", weights)
    assert same.returncode == 1 and "is the input" in same.stderr and "--force" in same.stderr
    assert (tmp_path / "in.npy").read_bytes() == before  # not overwritten
    forced = cli(tmp_path / "in.npy", tmp_path / "in.npy", "--nsa", 30, "--model", weights,
                 "--force")
    assert forced.returncode == 0 and (tmp_path / "in.npy").read_bytes() != before
    (tmp_path / "folder").mkdir()
    for output, message in ((tmp_path / "folder", "is a folder; give an output file"),
                            (tmp_path / "missing" / "o.npy", "does not exist")):
        result = cli(tmp_path / "in.npy", output, "--nsa", 30, "--model", weights)
        assert result.returncode == 1 and message in result.stderr
        assert "Traceback" not in result.stderr
    folder_in = cli(tmp_path / "folder", tmp_path / "o.npy", "--nsa", 30, "--model", weights)
    assert folder_in.returncode == 1 and "is a folder without DICOM files" in folder_in.stderr
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = cli(tmp_path / "in.npy", locked / "o.npy", "--nsa", 30, "--model", weights)
        assert result.returncode == 1 and "not writable" in result.stderr


def test_an_unwritable_output_folder_is_named(tmp_path, monkeypatch):
    """The permission check itself (the subprocess test above cannot fail as root)."""
    import os

    (tmp_path / "in.npy").write_bytes(b"")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match=r"folder .* is not writable; choose another output"):
        apply.check_output(tmp_path / "in.npy", tmp_path / "o.npy")


def test_weights_of_another_model_are_refused_with_what_differs(tmp_path):
    """The state-dict mismatch used to be cut off before it said what mismatched."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in ResidualDnCNN().state_dict().items()}
    first = next(iter(state))
    state["extra.weight"] = torch.zeros(3)
    state[first] = torch.zeros(2, 2)
    save_file(state, str(tmp_path / "other.safetensors"))
    np.save(tmp_path / "in.npy", image())
    result = cli(tmp_path / "in.npy", tmp_path / "out.npy", "--nsa", 30, "--model",
                 tmp_path / "other.safetensors")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "1 unexpected (first: extra.weight)" in result.stderr
    assert f"1 of another shape (first: {first} (2, 2) in the file" in result.stderr
    assert not (tmp_path / "out.npy").exists()


def test_a_dicom_series_folder_is_denoised_into_a_new_folder(tmp_path, weights):
    from test_io_images import _series

    _series(tmp_path / "series", [0, 6, 3])
    result = cli(tmp_path / "series", tmp_path / "denoised", "--nsa", 30, "--model", weights)
    assert result.returncode == 0, result.stderr
    assert "a DICOM series of 3 slices" in result.stdout
    assert len(list((tmp_path / "denoised").glob("*.dcm"))) == 3
    again = cli(tmp_path / "series", tmp_path / "denoised", "--nsa", 30, "--model", weights)
    assert again.returncode == 1 and "exists; a series is written into a new folder" in \
        again.stderr


@pytest.mark.parametrize("method", ["nlm", "tv", "gaussian"])
def test_classical_methods_lower_the_error_and_record_their_strength(tmp_path, method):
    import json

    yy, xx = np.mgrid[:48, :48]
    truth = 40.0 + 30.0 * (np.hypot(yy - 24, xx - 24) < 14)
    noisy = truth + 4.0 * np.random.default_rng(3).standard_normal(truth.shape)
    np.save(tmp_path / "in.npy", noisy.astype(np.float32))
    result = cli(tmp_path / "in.npy", tmp_path / "out.npy", "--method", method)
    assert result.returncode == 0, result.stderr
    out = np.load(tmp_path / "out.npy")
    assert np.sqrt(np.mean((out - truth) ** 2)) < 0.8 * np.sqrt(np.mean((noisy - truth) ** 2))
    sidecar = json.loads((tmp_path / "out.npy.json").read_text(encoding="utf-8"))
    assert sidecar["method"] == method and sidecar["strength"] == apply.STRENGTH[method]


def test_method_arguments_are_checked(tmp_path):
    np.save(tmp_path / "in.npy", image())
    no_model = cli(tmp_path / "in.npy", tmp_path / "out.npy")
    assert no_model.returncode == 1 and "--method cnn needs --nsa" in no_model.stderr
    weak = cli(tmp_path / "in.npy", tmp_path / "out.npy", "--method", "tv", "--strength", "0")
    assert weak.returncode == 1 and "--strength must be > 0" in weak.stderr
    assert not (tmp_path / "out.npy").exists()
