"""`nacode denoise --method dae`: the brain autoencoder on a user's 3D aTSC volume (mM)."""

from __future__ import annotations

import json

import nibabel
import numpy as np
import pytest
import torch

from conftest import ROOT
from nacode import cli
from nacode.denoise import apply, apply_dae
from nacode.denoise.dae import NORM_MM, PatchDAE, denoise_volume
from nacode.denoise.trainer import load_weights

FOLD1 = ROOT / "weights" / "brain_dae_fold1.safetensors"
#: A virtual brain outside the study's cohort (seeds 3000–3012): no fold has seen it.
SEED = 3100


@pytest.fixture(scope="module")
def scan():
    """One acquisition of a virtual brain at the training SNR (10), calibrated to mM."""
    from nacode.anatomy.brain import brain_subject
    from nacode.studies import brain_data

    subject = brain_subject(SEED, voxel_mm=2, acquisition_mm=brain_data.VOXEL_MM)
    s = brain_data.scan_subject(subject, np.random.default_rng(SEED), n_acquisitions=1)
    return {"noisy": (s.acquisitions[0] * NORM_MM).astype(np.float32),
            "noiseless": s.noiseless * NORM_MM, "truth": s.truth_mm, "brain": s.brain_mask,
            "tubes": s.tube_labels.astype(np.int16)}


@pytest.fixture(scope="module")
def model():
    return load_weights(PatchDAE(), FOLD1)


def nifti(path, volume, voxel=4.0):
    nibabel.save(nibabel.Nifti1Image(volume, np.diag([voxel] * 3 + [1.0])), path)
    return path


def denoise(args, capsys):
    code = cli.main(["denoise", *map(str, args), "--device", "cpu"])
    return code, capsys.readouterr()


def rmse(a, b, mask):
    return float(np.sqrt(np.mean((a[mask] - b[mask]) ** 2)))


def test_cli_equals_the_direct_computation_and_lowers_the_error(tmp_path, scan, model,
                                                                capsys):
    noisy, brain = scan["noisy"], scan["brain"]
    np.save(tmp_path / "mask.npy", brain.astype(np.uint8))
    code, out = denoise([nifti(tmp_path / "in.nii.gz", noisy), tmp_path / "out.nii.gz",
                         "--method", "dae", "--mask", tmp_path / "mask.npy", "--tubes", "none"],
                        capsys)
    assert code == 0, out.err
    assert out.err == ""  # 4 mm and a brain's aTSC: no warning
    assert out.out.startswith("denoised 1 volume (60 × 60 × 60, 4.0 mm) with the brain DAE, "
                              "fold 1 (brain_dae_fold1.safetensors, checksum verified): ")
    result = np.asanyarray(nibabel.load(tmp_path / "out.nii.gz").dataobj)
    exact = denoise_volume(model, noisy / NORM_MM, brain) * NORM_MM
    assert np.allclose(result[brain], exact[brain], rtol=1e-5, atol=1e-4)
    assert np.array_equal(result[~brain], noisy[~brain])  # outside the mask: untouched
    before, after = rmse(noisy, scan["noiseless"], brain), rmse(result, scan["noiseless"], brain)
    assert after < 0.85 * before  # measured 4.16 → 3.29 mM: the noise it can remove
    assert rmse(result, scan["truth"], brain) < rmse(noisy, scan["truth"], brain)
    sidecar = json.loads((tmp_path / "out.nii.gz.json").read_text(encoding="utf-8"))
    assert sidecar["mask"] == "file mask.npy" and sidecar["mask_voxels"] == int(brain.sum())
    assert sidecar["model"] == FOLD1.name and len(sidecar["sha256"]) == 64
    assert sidecar["method"] == "dae (brain, fold 1)"


def test_the_automatic_mask_covers_the_brain_and_the_rest_is_unchanged(tmp_path, scan, model):
    noisy, brain = scan["noisy"], scan["brain"]
    mask, threshold = apply_dae.auto_mask(noisy.astype(np.float64))
    assert mask[brain].mean() > 0.97  # measured 98.7 %, threshold 21.7 mM
    assert mask.sum() < 1.2 * brain.sum() and 10 < threshold < 30  # air excluded
    info = apply.run(nifti(tmp_path / "in.nii", noisy), tmp_path / "out.nii", FOLD1,
                     method="dae")
    result = np.asanyarray(nibabel.load(tmp_path / "out.nii").dataobj)
    assert np.array_equal(result[~mask], noisy[~mask]) and not np.array_equal(result, noisy)
    assert info["mask"].startswith("automatic: above the Otsu threshold")
    assert info["mask_voxels"] == int(mask.sum()) and not info["checksum_verified"]
    exact = denoise_volume(model, noisy / NORM_MM, mask) * NORM_MM
    assert np.allclose(result[mask], exact[mask], rtol=1e-5, atol=1e-4)


def test_a_singleton_axis_is_dropped_and_restored(tmp_path, scan, model):
    volume = scan["noisy"][..., None]  # (60, 60, 60, 1), as some pipelines write a 3D map
    info = apply.run(nifti(tmp_path / "in.nii.gz", volume), tmp_path / "out.nii.gz", FOLD1,
                     method="dae")
    out = nibabel.load(tmp_path / "out.nii.gz")
    assert out.shape == (60, 60, 60, 1) and np.allclose(out.affine, np.diag([4, 4, 4, 1.0]))
    assert info["volume"] == "60 × 60 × 60, 4.0 mm" and info["warnings"] == []
    mask, _ = apply_dae.auto_mask(scan["noisy"].astype(np.float64))
    exact = denoise_volume(model, scan["noisy"] / NORM_MM, mask) * NORM_MM
    assert np.allclose(np.asanyarray(out.dataobj)[..., 0][mask], exact[mask], atol=1e-4)


def test_another_voxel_size_is_denoised_with_a_one_line_warning(tmp_path, scan, capsys):
    code, out = denoise([nifti(tmp_path / "in.nii", scan["noisy"], voxel=2.0),
                         tmp_path / "out.nii", "--method", "dae", "--fold", 2, "--tubes", "none"],
                        capsys)
    assert code == 0 and (tmp_path / "out.nii").exists()
    assert out.err.count("\n") == 1 and "warning: voxels of 2 × 2 × 2 mm" in out.err
    assert "trained at 4 mm" in out.err and "(60 × 60 × 60, 2.0 mm)" in out.out
    sidecar = json.loads((tmp_path / "out.nii.json").read_text(encoding="utf-8"))
    assert sidecar["warnings"] and sidecar["voxel_mm"] == [2.0, 2.0, 2.0]
    brain = scan["brain"]
    assert apply_dae.warnings_for(scan["noisy"], brain, (4.3, 4.0, 3.7)) == []  # within 10 %
    assert "is the input calibrated?" in apply_dae.warnings_for(  # raw signal, not mM
        scan["noisy"] * 1e3, brain, (4.0, 4.0, 4.0))[0]


@pytest.mark.parametrize(("name", "message"), [
    ("image", "the brain autoencoder denoises 3D volumes; "),
    ("slice", "holds 2D images (shape (1, 60, 60))"),
    ("stack", "3 slices, fewer than the 5-voxel patch"),
    ("mask", "mask of shape (60, 60) for a volume of shape (60, 60, 60)"),
    ("nan", "contains NaN or infinity"),
])
def test_refusals_are_one_line_and_leave_no_output(tmp_path, capsys, name, message):
    volume = np.full((60, 60, 60), 35.0, np.float32)
    volume[20:40, 20:40, 20:40] = 45.0
    data = {"image": volume[0], "slice": volume[:1], "stack": volume[..., :3],
            "mask": volume, "nan": np.where(volume > 40, np.nan, volume)}[name]
    np.save(tmp_path / "in.npy", data)
    np.save(tmp_path / "m.npy", np.ones((60, 60)))
    extra = ["--mask", tmp_path / "m.npy"] if name == "mask" else []
    code, out = denoise([tmp_path / "in.npy", tmp_path / "out.npy", "--method", "dae", *extra],
                        capsys)
    assert code == 1 and message in out.err and out.out == ""
    assert len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "m.npy"]
    if name == "image":
        assert f"{tmp_path / 'in.npy'} holds 2D images" in out.err


def test_mask_voxels_on_the_volume_edge_are_denoised(tmp_path, model):
    """The network runs over a zero-padded copy, so a mask may reach the faces."""
    volume = (35 + 3.5 * np.random.default_rng(0).standard_normal((12, 12, 12))).astype(
        np.float32)
    np.save(tmp_path / "in.npy", volume)
    np.save(tmp_path / "m.npy", np.ones(volume.shape, bool))
    info = apply.run(tmp_path / "in.npy", tmp_path / "out.npy", FOLD1, method="dae",
                     mask_path=tmp_path / "m.npy")
    assert info["mask_voxels"] == volume.size and info["volume"].endswith("not recorded")
    exact = denoise_volume(model, volume / NORM_MM, np.ones(volume.shape, bool)) * NORM_MM
    assert np.allclose(np.load(tmp_path / "out.npy"), exact, atol=1e-4)


def test_nan_weights_are_refused_and_nothing_is_written(tmp_path, scan):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in PatchDAE().state_dict().items()}
    state["dense3.bias"] = torch.full_like(state["dense3.bias"], float("nan"))
    save_file(state, str(tmp_path / "nan.safetensors"))
    with pytest.raises(ValueError, match=r"NaN or infinity.*nothing was written"):
        apply.run(nifti(tmp_path / "in.nii", scan["noisy"]), tmp_path / "out.nii",
                  tmp_path / "nan.safetensors", method="dae")
    assert not (tmp_path / "out.nii").exists() and not (tmp_path / "out.nii.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "cnn", "--mask", "m.npy"], "--fold and --mask are for --method dae"),
    (["--method", "dae", "--fold", "2", "--model", "w.safetensors"], "not both"),
    (["--method", "dae", "--nsa", "30"], "--nsa: not used by --method dae"),
])
def test_option_mistakes_are_refused(tmp_path, capsys, args, message):
    np.save(tmp_path / "in.npy", np.ones((8, 8, 8)))
    code, out = denoise([tmp_path / "in.npy", tmp_path / "out.npy", *args], capsys)
    assert code == 1 and message in out.err and not (tmp_path / "out.npy").exists()


def test_tube_report_on_a_volume(tmp_path, scan, capsys):
    """The tube ROIs' means before and after, in the output and the sidecar: tubes outside
    the mask are untouched (0 %), inside the automatic mask they are reported as they moved."""
    src = nifti(tmp_path / "in.nii.gz", scan["noisy"])
    np.save(tmp_path / "brain.npy", scan["brain"].astype(np.uint8))
    nifti(tmp_path / "tubes.nii.gz", scan["tubes"])
    n_tubes = int(scan["tubes"].max())
    outside = denoise([src, tmp_path / "b.nii.gz", "--method", "dae", "--mask",
                       tmp_path / "brain.npy", "--tubes", tmp_path / "tubes.nii.gz"], capsys)
    assert outside[0] == 0
    assert outside[1].out.count("after (+0.00 %)") == n_tubes and "warning" not in outside[1].err
    inside = denoise([src, tmp_path / "a.nii.gz", "--method", "dae", "--tubes",
                      tmp_path / "tubes.nii.gz"], capsys)
    assert inside[0] == 0 and inside[1].out.count("tube ") == n_tubes
    result = np.asanyarray(nibabel.load(tmp_path / "a.nii.gz").dataobj)
    first = scan["tubes"] == 1
    change = 100 * (result[first].mean() / scan["noisy"][first].mean() - 1)
    assert f"({change:+.2f} %)" in inside[1].out
    assert ("warning: tube 1" in inside[1].err) == (abs(change) > 1)
    sidecar = json.loads((tmp_path / "a.nii.gz.json").read_text(encoding="utf-8"))
    assert "tube" in json.dumps(sidecar)
