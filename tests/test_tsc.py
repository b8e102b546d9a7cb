"""`nacode tsc` and the tube report of `nacode denoise`: calibration, tube detection, refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nacode import cli
from nacode.anatomy.subject import Tube
from nacode.recon import calibration, tsc, tube_detect, tube_objects

MM = (10.0, 25.0, 50.0, 75.0, 100.0)


def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def line_image(slope=2.0, intercept=5.0):
    """80 × 80 (2.25 mm): a textured body and five uniform tubes on signal = slope · c + b."""
    tubes = tuple(Tube(i + 1, c, (62.0 * np.sin(a), 62.0 * np.cos(a)), 9.0)
                  for i, (c, a) in enumerate(zip(MM, np.linspace(0.3, 5.3, 5), strict=True)))
    full = calibration.tube_rois(tubes, (80, 80), 180.0, margin=0.0)
    y, x = np.mgrid[:80, :80] - 40.0
    body = (y / 16) ** 2 + (x / 20) ** 2 <= 1
    rng = np.random.default_rng(0)
    image = np.full((80, 80), intercept) + body * slope * (25 + 5 * rng.random((80, 80)))
    labels = np.zeros((80, 80), np.int16)
    for k, (roi, c) in enumerate(zip(full, MM, strict=True), start=1):
        image[roi], labels[roi] = slope * c + intercept, k
    return image, labels, tubes


def virtual_calf(seed, noise_mm=3.0):
    """A virtual calf's TSC at 80 × 80 (partial volume), blurred, with complex noise (σ in mM):
    a muscle SNR near the calf paper's 150-average reference."""
    from scipy.ndimage import gaussian_filter

    from nacode.anatomy.calf import calf_subject
    from nacode.physics.acquire import downsample

    subject = calf_subject(seed)
    clean = gaussian_filter(downsample(subject.tsc, (80, 80)), 0.6)
    rng = np.random.default_rng(seed)
    noisy = np.abs(clean + noise_mm * (rng.standard_normal(clean.shape)
                                       + 1j * rng.standard_normal(clean.shape)))
    return noisy, subject


def brain_like(seed=0, shape=(48, 48, 40), voxel=4.0, snr=10.0):
    """A 3D head-like volume (x, y, z) at 4 mm: a textured ellipsoid (GM/WM-like 35–45 mM,
    CSF-like 140 mM ventricles) and four tubes along z (radius 7 mm, 64 mm long, 25–100 mM)
    beside it, as in the brain study; partial volume by 3³ supersampling, complex noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    tubes = tuple(Tube(k + 1, c, (side * 70.0, dy, rng.uniform(-8, 8)), 7.0) for k, (side, c, dy)
                  in enumerate(((-1, 25.0, -22.0), (-1, 75.0, 22.0), (1, 50.0, -22.0),
                                (1, 100.0, 22.0))))
    offsets = (np.arange(3) - 1) / 3 * voxel
    grids = np.meshgrid(*[(np.arange(n) - n // 2) * voxel for n in shape], indexing="ij")
    volume = np.zeros(shape)
    for ox in offsets:
        for oy in offsets:
            for oz in offsets:
                x, y, z = grids[0] + ox, grids[1] + oy, grids[2] + oz
                head = (x / 55) ** 2 + (y / 70) ** 2 + (z / 60) ** 2 <= 1
                csf = (x / 8) ** 2 + (y / 20) ** 2 + (z / 10) ** 2 <= 1
                part = np.where(csf, 140.0, np.where(head, 40.0, 0.0))
                for t in tubes:
                    inside = (((x - t.centre_mm[0]) ** 2 + (y - t.centre_mm[1]) ** 2
                               <= t.radius_mm ** 2) & (np.abs(z - t.centre_mm[2]) <= 32.0))
                    part = np.where(inside, t.concentration, part)
                volume += part / 27
    texture = 1 + 0.15 * gaussian_filter(rng.standard_normal(shape), 1.0) / 0.2
    volume = np.where((volume > 0) & (volume < 60) & (grids[0] ** 2 < 56 ** 2), volume * texture,
                      volume)
    sigma = 40.0 / snr
    noisy = np.abs(volume + sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)))
    from nacode.studies.brain_data import cylinder_rois

    return noisy, cylinder_rois(tubes, shape, voxel, 64.0), tubes


def run_cli(capsys, *args):
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


# --- calibration on a known line -------------------------------------------------------------

@pytest.mark.parametrize("tubes", ["mask", "auto"])
def test_known_line_is_recovered(tmp_path, capsys, tubes):
    image, labels, _ = line_image(slope=2.0, intercept=5.0)
    np.save(tmp_path / "na.npy", image)
    np.save(tmp_path / "tubes.npy", labels)
    given = tmp_path / "tubes.npy" if tubes == "mask" else "auto"
    status, out, err = run_cli(capsys, "tsc", tmp_path / "na.npy", tmp_path / "atsc.npy",
                               "--tubes", given)
    assert status == 0, err
    assert "slope 2 per mM, intercept 5, R² = 1.0000" in out and "tube5" in out
    atsc = np.load(tmp_path / "atsc.npy")
    used = np.load(tmp_path / "atsc_tubes.npy")
    for k, c in enumerate(MM, start=1):
        assert (used == k).any() and not ((used == k) & (labels != k)).any()  # inside its tube
        assert np.allclose(atsc[used == k], c, atol=1e-3)  # float32 output
    table = pd.read_csv(tmp_path / "atsc.csv")
    assert list(table.columns[:9]) == list(tsc.TUBE_COLUMNS)
    assert list(table.label) == [1, 2, 3, 4, 5] and set(table.kind) == {"tube"}
    assert np.allclose(table.concentration_mM, MM) and np.allclose(table.fitted_mM, MM)
    assert np.allclose(table.mean_signal, 2 * np.array(MM) + 5)
    assert np.allclose(table.error_mM, 0, atol=1e-6) and np.allclose(table.sd_signal, 0)
    assert list(table.n_voxels) == [int((used == k).sum()) for k in range(1, 6)]
    record = json.loads((tmp_path / "atsc.npy.json").read_text())
    assert record["slope"] == pytest.approx(2.0) and record["intercept"] == pytest.approx(5.0)
    assert record["r2"] == pytest.approx(1.0) and record["concentrations_mM"] == list(MM)
    assert record["tubes"] == ("auto" if tubes == "auto" else str(given))


def test_auto_labels_follow_the_order_of_mm(tmp_path, capsys):
    image, labels, _ = line_image()
    np.save(tmp_path / "na.npy", image)
    order = (50.0, 10.0, 100.0, 25.0, 75.0)
    status, _, err = run_cli(capsys, "tsc", tmp_path / "na.npy", tmp_path / "a.npy", "--mM",
                             ",".join(f"{c:g}" for c in order))
    assert status == 0, err
    used = np.load(tmp_path / "a_tubes.npy")
    for k, c in enumerate(order, start=1):  # label k sits in the tube of the k-th --mM value
        assert (labels[used == k] == MM.index(c) + 1).all()


def test_roi_rows(tmp_path, capsys):
    image, labels, _ = line_image()
    np.save(tmp_path / "na.npy", image)
    rois = np.zeros((80, 80), np.int16)
    rois[35:45, 35:45], rois[labels == 3] = 4, 2
    np.save(tmp_path / "roi.npy", rois)
    status, out, err = run_cli(capsys, "tsc", tmp_path / "na.npy", tmp_path / "a.npy", "--roi",
                               tmp_path / "roi.npy", "--roi-names", "tube50,muscle")
    assert status == 0, err
    table = pd.read_csv(tmp_path / "a.csv")
    rows = table[table.kind == "roi"].set_index("name")
    assert list(rows.index) == ["tube50", "muscle"] and list(rows.label) == [2, 4]
    assert rows.loc["tube50", "median_mM"] == pytest.approx(50, abs=1e-3)
    assert rows.loc["tube50", "iqr_mM"] == pytest.approx(0, abs=1e-3)
    atsc = np.load(tmp_path / "a.npy")
    assert rows.loc["muscle", "mean_mM"] == pytest.approx(atsc[35:45, 35:45].mean(), rel=1e-5)
    assert rows.loc["muscle", "n_voxels"] == 100 and "muscle" in out
    status, _, _ = run_cli(capsys, "tsc", tmp_path / "na.npy", tmp_path / "b.npy", "--roi",
                           tmp_path / "roi.npy")
    assert list(pd.read_csv(tmp_path / "b.csv").query("kind == 'roi'").name) == ["roi2", "roi4"]


# --- detection on virtual subjects ---------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 3])
def test_detection_on_virtual_calves(seed):
    image, subject = virtual_calf(seed)
    truth = calibration.tube_rois(subject.tubes, (80, 80), 180.0, margin=1.0)
    walls = calibration.tube_rois(subject.tubes, (80, 80), 180.0, margin=0.0)
    order = np.argsort([t.concentration for t in subject.tubes])
    found = tube_detect.detect_tubes(image, 5)
    for k, i in enumerate(order, start=1):
        assert dice(found == k, truth[i]) > 0.75
        assert (found == k)[~walls[i]].sum() <= 0.1 * (found == k).sum()  # inside the wall
    concentrations = sorted(t.concentration for t in subject.tubes)
    true_fit = calibration.calibrate(image, [truth[i] for i in order], concentrations)
    fit = calibration.calibrate(image, [found == k for k in range(1, 6)], concentrations)
    assert fit.slope == pytest.approx(true_fit.slope, rel=0.03)
    assert abs(fit.to_mm(true_fit.slope * 20 + true_fit.intercept) - 20) < 1.0  # mM at 20 mM


def test_detection_refuses_what_it_cannot_find():
    image, _ = virtual_calf(0, noise_mm=25.0)  # a 10-average image: faint tubes drown
    with pytest.raises(tube_detect.TubeDetectionError, match=r"found [0-4] tube\(s\), expected 5"):
        tube_detect.detect_tubes(image, 5)
    with pytest.raises(tube_detect.TubeDetectionError, match="found 0 tube"):
        tube_detect.detect_tubes(np.random.default_rng(0).rayleigh(1.0, (64, 64)), None)
    rows = [c for c in tube_objects.candidates(line_image()[0]) if not c.is_tube]
    assert any("not ringed by air" in c.reason or "large" in c.reason for c in rows)  # the body


def test_brain_like_volume_as_nifti(tmp_path, capsys):
    import nibabel

    volume, truth, _ = brain_like()
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    nibabel.save(nibabel.Nifti1Image(volume.astype(np.float32), affine), tmp_path / "na.nii.gz")
    labels = np.zeros(volume.shape, np.int16)
    for k, roi in enumerate(truth, start=1):
        labels[roi] = k
    nibabel.save(nibabel.Nifti1Image(labels, affine), tmp_path / "truth.nii.gz")
    mm = "25,75,50,100"  # the tubes' label order
    status, out, err = run_cli(capsys, "tsc", tmp_path / "na.nii.gz", tmp_path / "auto.nii.gz",
                               "--mM", mm)
    assert status == 0, err
    found = np.asarray(nibabel.load(tmp_path / "auto_tubes.nii.gz").dataobj)
    assert found.shape == volume.shape
    for k, roi in enumerate(truth, start=1):
        assert dice(found == k, roi) > 0.6
    status, _, err = run_cli(capsys, "tsc", tmp_path / "na.nii.gz", tmp_path / "mask.nii.gz",
                             "--mM", mm, "--tubes", tmp_path / "truth.nii.gz")
    assert status == 0, err
    auto, mask = (pd.read_csv(tmp_path / f"{n}.csv") for n in ("auto", "mask"))
    assert np.allclose(auto.fitted_mM, mask.fitted_mM, atol=2.0)  # within 2 mM of each other
    out_image = nibabel.load(tmp_path / "mask.nii.gz")
    assert out_image.shape == volume.shape and np.allclose(out_image.affine, affine)
    atsc = np.asarray(out_image.dataobj)
    assert abs(np.median(atsc[truth[3]]) - 100) < 5 and "R² = 0.99" in out


# --- refusals ---------------------------------------------------------------------------------

def bad_masks(labels):
    reverse = labels.copy()
    reverse[labels > 0] = 6 - labels[labels > 0]  # concentrations in reverse: negative slope
    six = labels.copy()
    six[40, 40] = 6
    empty = labels.copy()
    empty[labels == 3] = 0
    return {"shape": (labels[:60], "has shape (60, 80), the image (80, 80)"),
            "six": (six, "labels 1..6 but --mM 10,25,50,75,100 has 5 concentrations"),
            "empty": (empty, "label 3 is empty"),
            "slope": (reverse, "slope is not positive"),
            "fraction": (labels * 0.5, "not a label image")}


@pytest.mark.parametrize("case", ["shape", "six", "empty", "slope", "fraction"])
def test_bad_tube_masks_are_refused(tmp_path, capsys, case):
    image, labels, _ = line_image()
    np.save(tmp_path / "na.npy", image)
    mask, message = bad_masks(labels)[case]
    np.save(tmp_path / "m.npy", mask)
    status, _, err = run_cli(capsys, "tsc", tmp_path / "na.npy", tmp_path / "a.npy",
                             "--tubes", tmp_path / "m.npy")
    assert status == 1 and message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy", "na.npy"]  # nothing written


@pytest.mark.parametrize(("args", "message"), [
    (("--mM", "10"), "at least 2 distinct concentrations"),
    (("--mM", "10,x"), "comma-separated concentrations"),
    (("--mM", "10,25,50,75"), "tube detection found 5 tube(s), expected 4; give --tubes MASK"),
    (("--roi-names", "a"), "--roi-names needs --roi"),
    (("--roi", "ROI", "--roi-names", "a,b"), "1 labels ([1]) but --roi-names gives 2 names"),
])
def test_bad_options_are_refused(tmp_path, capsys, args, message):
    image, labels, _ = line_image()
    np.save(tmp_path / "na.npy", image)
    np.save(tmp_path / "roi.npy", (labels == 1).astype(np.int16))
    args = [str(tmp_path / "roi.npy") if a == "ROI" else a for a in args]
    status, _, err = run_cli(capsys, "tsc", tmp_path / "na.npy", tmp_path / "a.npy", *args)
    assert status == 1 and message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["na.npy", "roi.npy"]


def test_nan_input_and_failed_writes_leave_nothing(tmp_path, capsys, monkeypatch):
    image = line_image()[0]
    image[0, 0] = np.nan
    np.save(tmp_path / "na.npy", image)
    status, _, err = run_cli(capsys, "tsc", tmp_path / "na.npy", tmp_path / "a.npy")
    assert status == 1 and "NaN" in err and sorted(p.name for p in tmp_path.iterdir()) == [
        "na.npy"]
    image[0, 0] = 5.0
    np.save(tmp_path / "na.npy", image)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail)  # the last write fails
    with pytest.raises(OSError, match="disk full"):
        tsc.run(tmp_path / "na.npy", tmp_path / "a.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["na.npy"]  # the first two removed


def test_stack_and_stored_layouts_round_trip(tmp_path):
    import nibabel

    from nacode.io import images
    from nacode.io.images import read_images

    data = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), tmp_path / "s.nii")
    stack, layout = read_images(tmp_path / "s.nii")
    assert stack.shape == (3, 20, 24) and layout.slice_axis == 2
    assert np.array_equal(images.to_stored(stack, layout), data)
    assert np.array_equal(images.to_stack(data, layout), stack)
    assert tsc.companion(tmp_path / "a.nii.gz", "_tubes").name == "a_tubes.nii.gz"
    assert tsc.companion(tmp_path / "a.nii.gz", "", ".csv").name == "a.csv"


# --- the tube report of nacode denoise ----------------------------------------------------------

def test_tube_changes():
    before = np.arange(1.0, 17.0).reshape(4, 4)
    labels = np.zeros((4, 4), int)
    labels[0], labels[3, :2] = 1, 3
    rows = tsc.tube_changes(before, before * 1.05, labels)
    assert [r["label"] for r in rows] == [1, 3] and [r["n_voxels"] for r in rows] == [4, 2]
    assert all(r["change_pct"] == pytest.approx(5.0) for r in rows)
    assert rows[1]["before"] == pytest.approx(13.5)


@pytest.fixture()
def calf_file(tmp_path):
    image, _ = virtual_calf(0)
    image[0, 0] = 0.0  # the min–max normalisation then leaves a pure scaling a pure scaling
    np.save(tmp_path / "calf.npy", image)
    return tmp_path / "calf.npy"


def test_denoise_warns_for_every_moved_tube(calf_file, capsys, monkeypatch):
    from nacode.denoise import apply

    monkeypatch.setattr(apply, "classical", lambda method, strength=None: lambda x: 1.05 * x)
    status, out, err = run_cli(capsys, "denoise", calf_file, calf_file.with_name("d.npy"),
                               "--method", "gaussian")
    assert status == 0, err
    assert len([line for line in out.splitlines() if line.startswith("tube ")]) == 5
    warnings = err.strip().splitlines()
    assert [w.split()[2] for w in warnings] == ["1", "2", "3", "4", "5"]
    assert all(w.endswith("changed by +5.0 % (> 1 %)") for w in warnings)
    record = json.loads(calf_file.with_name("d.npy.json").read_text())
    assert record["tube_report"]["tubes"] == "auto"
    assert [r["change_pct"] for r in record["tube_report"]["rows"]] == pytest.approx([5.0] * 5,
                                                                                  abs=1e-3)


def test_denoise_identity_like_and_none(calf_file, capsys):
    status, out, err = run_cli(capsys, "denoise", calf_file, calf_file.with_name("a.npy"),
                               "--method", "gaussian", "--strength", "0.01")
    assert status == 0 and "warning" not in err and out.count("\ntube ") == 5
    changes = [float(line.split("(")[1].split()[0]) for line in out.splitlines()
               if line.startswith("tube ")]
    assert max(map(abs, changes)) < 1.0
    status, out, err = run_cli(capsys, "denoise", calf_file, calf_file.with_name("b.npy"),
                               "--method", "gaussian", "--tubes", "none")
    assert status == 0 and err == "" and out.count("\n") == 1 and out.startswith("denoised")
    assert "tube_report" not in json.loads(calf_file.with_name("b.npy.json").read_text())


def test_denoise_report_skipped_or_from_a_mask(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "noise.npy", rng.rayleigh(1.0, (48, 48)))
    status, out, err = run_cli(capsys, "denoise", tmp_path / "noise.npy", tmp_path / "d.npy",
                               "--method", "gaussian")
    assert status == 0 and (tmp_path / "d.npy").is_file()
    assert err.strip() == ("tube report skipped: tube detection found 0 tube(s) on the input; "
                           "give --tubes MASK")
    labels = np.zeros((48, 48), np.int16)
    labels[10:20, 10:20] = 2
    np.save(tmp_path / "m.npy", labels)
    status, out, err = run_cli(capsys, "denoise", tmp_path / "noise.npy", tmp_path / "e.npy",
                               "--method", "gaussian", "--tubes", tmp_path / "m.npy")
    assert status == 0 and out.splitlines()[1].startswith("tube 2: mean ")
    np.save(tmp_path / "bad.npy", labels[:40])
    status, _, err = run_cli(capsys, "denoise", tmp_path / "noise.npy", tmp_path / "f.npy",
                             "--method", "gaussian", "--tubes", tmp_path / "bad.npy")
    assert status == 1 and "has shape (40, 48)" in err and not (tmp_path / "f.npy").exists()
