"""Raw data: the ISMRMRD reader and writer, and `nacode recon` (gridding, CS-TV, dTV)."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ROOT
from nacode.io.raw import NOISE_BIT, RawData, read_ismrmrd, write_ismrmrd
from nacode.physics.coils import coil_maps, walsh_maps
from nacode.physics.noise import coil_noise, correlated_covariance, whiten, whitening_matrix
from nacode.physics.nufft import density_compensation, gridding, sample_image
from nacode.physics.trajectory import radial
from nacode.recon import raw as recon

N = 32


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NACODE_CACHE_DIR", str(tmp_path / "cache"))


def phantom(n=N):
    """Piecewise-constant disc with two inserts (peak 1), shape (n, n)."""
    y, x = np.mgrid[:n, :n] - n // 2
    image = (x**2 + y**2 <= (0.4 * n) ** 2).astype(float) * 0.6
    image[(x - n // 8) ** 2 + y**2 <= (n // 8) ** 2] = 1.0
    image[(x + n // 6) ** 2 + (y - n // 8) ** 2 <= (n // 10) ** 2] = 0.3
    return image


def scan(n_coils=4, sigma=0.0, slices=1, seed=0, n=N, undersampling=1.0):
    """Multi-coil 2D radial k-space of :func:`phantom`, correlated noise, a noise scan."""
    rng = np.random.default_rng(seed)
    traj = radial(matrix=n, fov_mm=200.0, undersampling=undersampling)
    maps = coil_maps((n, n), n_coils)
    clean = np.stack([[sample_image(phantom(n) * (1 + 0.1 * s) * m, traj) for m in maps]
                      for s in range(slices)])
    covariance = (sigma or 1e-3) ** 2 * correlated_covariance(n_coils, 0.4)
    noise = coil_noise((2048,), covariance, rng)
    noisy = clean + (np.stack([coil_noise(traj.times_ms.shape, covariance, rng)
                               for _ in range(slices)]) if sigma else 0)
    return traj, noisy, noise, covariance


def test_round_trip_2d_multislice(tmp_path):
    traj, kspace, noise, _ = scan(slices=3, sigma=0.01)
    path = write_ismrmrd(tmp_path / "raw.h5", kspace, traj, noise=noise, noise_dwell_us=5.0)
    raw = read_ismrmrd(path)
    assert raw.kspace.shape == kspace.shape and raw.matrix == traj.matrix
    np.testing.assert_allclose(raw.kspace, kspace.astype(np.complex64), rtol=0, atol=0)
    np.testing.assert_allclose(raw.coord, traj.coord, atol=1e-4)  # float32 on disk
    np.testing.assert_allclose(raw.noise, noise[:, : raw.noise.shape[1]].astype(np.complex64))
    assert raw.noise.shape[1] == 2048 // traj.times_ms.shape[1] * traj.times_ms.shape[1]
    dwell = np.diff(traj.times_ms[0, :2])[0] * 1e3
    assert raw.dwell_us == pytest.approx(dwell, rel=1e-6)
    assert raw.te_ms == pytest.approx(traj.times_ms[0, 0])
    # bandwidth scaling: a noise scan at 5 µs has dwell/5 times the variance per sample
    np.testing.assert_allclose(raw.noise_covariance() * raw.dwell_us / 5.0,
                               raw.noise @ raw.noise.conj().T / (2 * raw.noise.shape[1]),
                               rtol=1e-6)


def test_file_is_ismrmrd_for_the_ismrmrd_package(tmp_path):
    """The ismrmrd package reads what we write: flags, trajectory units and axis order."""
    import ismrmrd

    traj, kspace, noise, _ = scan(n_coils=2)
    path = write_ismrmrd(tmp_path / "raw.h5", kspace[0], traj, noise=noise)
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as ds:
        header = ismrmrd.xsd.CreateFromDocument(ds.read_xml_header())
        first, last = ds.read_acquisition(0), ds.read_acquisition(ds.number_of_acquisitions() - 1)
    assert header.encoding[0].encodedSpace.matrixSize.x == N
    assert header.acquisitionSystemInformation.receiverChannels == 2
    assert first.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    assert not last.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    # ISMRMRD traj is (kx, ky) in k / N; nacode's 2D coord is (ky, kx) in grid units
    np.testing.assert_allclose(last.traj[:, 0] * N, traj.coord[-1, :, 1], atol=1e-4)
    np.testing.assert_allclose(last.traj[:, 1] * N, traj.coord[-1, :, 0], atol=1e-4)
    np.testing.assert_allclose(last.data, kspace[0][:, -1].astype(np.complex64))
    assert int(NOISE_BIT) == 1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1)


def test_recon_from_file_equals_direct_computation(tmp_path):
    """Whitening, density compensation, gridding and Walsh maps: the file path reproduces
    the computation on the in-memory simulation."""
    traj, kspace, noise, _ = scan(sigma=0.02)
    raw = read_ismrmrd(write_ismrmrd(tmp_path / "raw.h5", kspace[0], traj, noise=noise))
    image, info = recon.reconstruct(raw, "gridding")
    assert info["whitened"] and info["coils"] == 4
    stored = raw.kspace[0].astype(np.complex128)
    white = whiten(stored, whitening_matrix(raw.noise_covariance()))
    for used, tol in ((raw.trajectory(), 1e-5), (traj, 1e-3)):  # float32 coordinates on disk
        coils = gridding(white, used, density_compensation(used))
        direct = np.abs((walsh_maps(coils).conj() * coils).sum(0))
        np.testing.assert_allclose(image[0], direct, rtol=tol, atol=tol * direct.max())


def test_whitening_decorrelates_the_noise(tmp_path):
    traj, kspace, noise, covariance = scan(sigma=0.05)
    raw = read_ismrmrd(write_ismrmrd(tmp_path / "raw.h5", kspace[0], traj, noise=noise))
    white, used = recon.whitened(raw)
    np.testing.assert_allclose(used, covariance, atol=0.15 * np.abs(covariance).max())
    np.testing.assert_allclose(white[0], whiten(raw.kspace[0], whitening_matrix(used)))
    fresh = coil_noise((20000,), covariance, np.random.default_rng(9))
    mixed = whiten(fresh, whitening_matrix(used))
    estimate = mixed @ mixed.conj().T / (2 * mixed.shape[1])
    off = estimate - np.diag(np.diag(estimate))
    assert np.abs(off).max() < 0.1 * np.real(np.diag(estimate)).mean()
    assert np.abs(covariance - np.diag(np.diag(covariance))).max() > 0.2 * np.abs(
        np.diag(covariance)).mean()  # the simulated noise was correlated


def test_cs_and_dtv_lower_the_error_and_dtv_with_a_flat_prior_is_cs(tmp_path):
    traj, kspace, noise, _ = scan(sigma=0.08, undersampling=2.0)
    raw = read_ismrmrd(write_ismrmrd(tmp_path / "raw.h5", kspace[0], traj, noise=noise))
    truth = phantom()

    def error(image):  # after the best scalar fit: the coil combination sets the scale
        scale = (image * truth).sum() / (image**2).sum()
        return np.sqrt(((scale * image - truth) ** 2).mean())

    grid = recon.reconstruct(raw, "gridding")[0][0]
    cs = recon.reconstruct(raw, "cs", lamda=0.02, max_iter=60)[0][0]
    dtv = recon.reconstruct(raw, "dtv", lamda=0.02, max_iter=60, prior=truth[None])[0][0]
    flat = recon.reconstruct(raw, "dtv", lamda=0.02, max_iter=60,
                             prior=np.ones((1, N, N)))[0][0]
    assert error(cs) < 0.8 * error(grid)
    assert error(dtv) < error(cs)
    np.testing.assert_allclose(flat, cs, rtol=1e-10, atol=1e-12)


def test_dtv_term_prefers_the_truth():
    """‖P_ξ ∇x‖₁ with ξ from the anatomy scores the truth below a noisy copy of it, and
    below the same truth blurred across the prior's edges."""
    import sigpy as sp
    from scipy.ndimage import gaussian_filter

    truth = phantom()
    noisy = truth + 0.05 * np.random.default_rng(0).standard_normal(truth.shape)
    xi = recon.direction_field(truth)
    assert np.sqrt((xi**2).sum(0)).max() <= recon.GAMMA + 1e-12
    op = recon.directional_projection(xi) * sp.linop.FiniteDifference(truth.shape)

    def term(x):
        return np.abs(op(x)).sum()

    assert term(truth) < term(noisy)
    assert term(truth) < term(gaussian_filter(truth, 1.0))
    v = np.random.default_rng(1).standard_normal(xi.shape)
    u = np.random.default_rng(2).standard_normal(xi.shape)
    proj = recon.directional_projection(xi)
    assert np.vdot(proj(v), u) == pytest.approx(np.vdot(v, proj(u)))  # self-adjoint


def test_density_weights_are_cached(tmp_path):
    traj = radial(matrix=16, fov_mm=100.0)
    first = recon.cached_density(traj)
    files = list((tmp_path / "cache" / "dcf").glob("*.npy"))
    assert len(files) == 1
    np.save(files[0], np.full_like(first, 7.0))  # the cache is what is returned
    np.testing.assert_array_equal(recon.cached_density(traj), np.full_like(first, 7.0))
    files[0].write_bytes(b"garbage")  # an unreadable entry is recomputed
    np.testing.assert_allclose(recon.cached_density(traj), first)


def _write_records(path, dims):
    from ismrmrd.hdf5 import acquisition_dtype

    traj, kspace, _, _ = scan(n_coils=1)
    write_ismrmrd(path, kspace[0], traj)
    with h5py.File(path, "r+") as handle:
        records = handle["dataset/data"][:]
        if dims == 0:
            records["head"]["trajectory_dimensions"] = 0
            for i in range(len(records)):
                records[i]["traj"] = np.zeros(0, np.float32)
        else:
            records[3]["data"] = np.full_like(records[3]["data"], np.nan)
        del handle["dataset/data"]
        handle["dataset"].create_dataset("data", data=records.astype(acquisition_dtype))


@pytest.mark.parametrize("case, message", [
    ("text", "not an HDF5 file"), ("hdf5", "not an ISMRMRD file"),
    ("cartesian", "no trajectory"), ("nan", "NaN"), ("folder", "is a folder"),
    ("missing", "not found")])
def test_bad_raw_files_are_refused_in_one_line(tmp_path, case, message):
    path = tmp_path / "raw.h5"
    if case == "text":
        path.write_text("not hdf5")
    elif case == "hdf5":
        with h5py.File(path, "w") as handle:
            handle["x"] = 1
    elif case in ("cartesian", "nan"):
        _write_records(path, 0 if case == "cartesian" else 2)
    elif case == "folder":
        path.mkdir()
    error = FileNotFoundError if case == "missing" else ValueError
    with pytest.raises(error, match=message) as caught:
        read_ismrmrd(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def recon_cli(*args):
    return subprocess.run([sys.executable, "-m", "nacode", "recon", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def test_cli_recon_writes_nifti_with_provenance(tmp_path):
    import json

    import nibabel

    traj, kspace, noise, _ = scan(sigma=0.02)
    raw = write_ismrmrd(tmp_path / "raw.h5", kspace[0], traj, noise=noise)
    out = tmp_path / "grid.nii.gz"
    done = recon_cli(raw, out)
    assert done.returncode == 0, done.stderr
    assert "whitened by its noise scan" in done.stdout
    image = nibabel.load(out)
    assert image.shape == (N, N, 1)  # 2D slices lie along the NIfTI's third axis
    np.testing.assert_allclose(image.header.get_zooms()[:2], (200 / N, 200 / N), rtol=1e-6)
    expected = recon.reconstruct(read_ismrmrd(raw), "gridding")[0][0]
    np.testing.assert_allclose(np.asarray(image.dataobj)[..., 0], expected, rtol=1e-5,
                               atol=1e-6 * expected.max())
    record = json.loads(out.with_name(out.name + ".json").read_text())
    assert record["method"] == "gridding" and record["whitened"] and record["input"] == str(raw)
    again = recon_cli(raw, out)  # an existing output is refused
    assert again.returncode == 1 and "exists" in again.stderr
    for args, message in [((raw, tmp_path / "x.dcm"), "write a reconstruction as"),
                          ((raw, tmp_path / "d.nii", "--method", "dtv"), "needs --prior"),
                          ((tmp_path / "none.h5", tmp_path / "y.nii"), "not found")]:
        bad = recon_cli(*args)
        assert bad.returncode == 1 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
        assert not args[1].exists()


def test_prior_of_the_wrong_shape_is_refused(tmp_path):
    traj, kspace, _, _ = scan(n_coils=1)
    raw = RawData(kspace=kspace.astype(np.complex64), coord=traj.coord, matrix=traj.matrix,
                  fov_mm=(200.0, 200.0), dwell_us=10.0, te_ms=0.2)
    with pytest.raises(ValueError, match="resample it onto the reconstruction grid"):
        recon.reconstruct(raw, "dtv", prior=np.ones((1, N + 2, N)))


def test_round_trip_3d_radial(tmp_path):
    from nacode.physics.trajectory import radial3d

    traj = radial3d(matrix=16, fov_mm=160.0, undersampling=2.0)
    rng = np.random.default_rng(3)
    z, y, x = np.mgrid[:16, :16, :16] - 8
    ball = (x**2 + y**2 + z**2 <= 36).astype(float)
    maps = coil_maps((16, 16, 16), 2)
    kspace = np.stack([sample_image(ball * m, traj) for m in maps])
    kspace = kspace + 0.01 * (rng.standard_normal(kspace.shape)
                              + 1j * rng.standard_normal(kspace.shape))
    raw = read_ismrmrd(write_ismrmrd(tmp_path / "raw.h5", kspace, traj))
    assert raw.matrix == (16, 16, 16) and raw.kspace.shape == (1, *kspace.shape)
    assert raw.noise is None
    np.testing.assert_allclose(raw.coord, traj.coord, atol=1e-4)
    image, info = recon.reconstruct(raw, "gridding")
    assert image.shape == (16, 16, 16) and not info["whitened"]
    for used, tol in ((raw.trajectory(), 1e-5), (traj, 1e-3)):  # float32 coordinates on disk
        coils = gridding(raw.kspace[0].astype(np.complex128), used, density_compensation(used))
        direct = np.abs((walsh_maps(coils).conj() * coils).sum(0))
        np.testing.assert_allclose(image, direct, rtol=tol, atol=tol * direct.max())
    inside, outside = image[ball > 0].mean(), image[ball == 0].mean()
    assert inside > 5 * outside


def test_dip_fusion_from_raw_data(tmp_path):
    """The breast study's DIP-Fusion on a 2D scan: lower error than gridding with the
    anatomy as prior, deterministic, and refused where it does not apply."""
    from nacode.denoise.dip_recon import reconstruct_dip

    traj, kspace, noise, _ = scan(sigma=0.08, undersampling=2.0, n=64)
    raw = read_ismrmrd(write_ismrmrd(tmp_path / "raw.h5", kspace[0], traj, noise=noise))
    truth = phantom(64)

    def error(image):
        scale = (image * truth).sum() / (image**2).sum()
        return np.sqrt(((scale * image - truth) ** 2).mean())

    settings = {"learning_rate": 0.001, "iterations": 300, "lam_dtv": 0.1, "lam_gc": 0.1}
    fused, info = reconstruct_dip(raw, truth[None], **settings)
    assert info["method"] == "dip-fusion" and info["whitened"] and fused.shape == (1, 64, 64)
    grid = recon.reconstruct(raw, "gridding")[0][0]
    assert error(fused[0]) < error(grid)  # measured 0.070 against 0.073
    again, _ = reconstruct_dip(raw, truth[None], **settings)
    np.testing.assert_array_equal(again, fused)
    with pytest.raises(ValueError, match="needs --prior"):
        reconstruct_dip(raw, None, **settings)
    volume = RawData(kspace=raw.kspace, coord=np.zeros((4, 3, 3)), matrix=(8, 8, 8),
                     fov_mm=(80.0,) * 3, dwell_us=10.0, te_ms=0.2)
    with pytest.raises(ValueError, match="reconstruct 2D slices"):
        reconstruct_dip(volume, None, **settings)


def test_cli_dip_fusion_uses_the_frozen_breast_settings(tmp_path):
    import json

    traj, kspace, noise, _ = scan(sigma=0.05)
    raw = write_ismrmrd(tmp_path / "raw.h5", kspace[0], traj, noise=noise)
    np.save(tmp_path / "t1.npy", phantom()[None])
    out = tmp_path / "dipf.npy"
    done = recon_cli(raw, out, "--method", "dip-fusion", "--prior", tmp_path / "t1.npy",
                     "--iterations", 20, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    record = json.loads(out.with_name(out.name + ".json").read_text())
    frozen = json.loads((ROOT / "weights" / "breast_dip_tuning.json").read_text())
    assert record["learning_rate"] == frozen["DIP-Fusion"]["lr"]
    assert record["lam_dtv"] == frozen["DIP-Fusion"]["lam_dtv"] and record["iterations"] == 20
    assert np.load(out).shape == (N, N, 1) and np.all(np.isfinite(np.load(out)))
