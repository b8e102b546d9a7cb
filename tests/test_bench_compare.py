"""``nacode bench --compare``: exact references, interleaving, and a tiny run of every workload."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nacode import bench_compare as bc
from nacode.physics import nufft as nf
from nacode.physics import trajectory

TINY = {"repeats": 2, "repeats3d": 2, "budget_s": 0.0, "matrix3d": 10, "sigpy3d": True,
        "cs_iter": 3, "cnn_batches": (1, 2), "cnn_slices": 2, "exact_points": 40}


def _dft_matrix(shape, coord):
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    phase = sum(np.outer(coord[:, d], grids[d].ravel() / n) for d, n in enumerate(shape))
    return np.exp(-2j * np.pi * phase) / np.sqrt(np.prod(shape))


@pytest.mark.parametrize("shape", [(6, 5), (4, 5, 3)])
def test_exact_references_are_the_dft_matrix_and_its_adjoint(shape):
    rng = np.random.default_rng(0)
    coord = rng.uniform(-2, 2, (7, len(shape)))
    image = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    samples = rng.standard_normal(7) + 1j * rng.standard_normal(7)
    matrix = _dft_matrix(shape, coord)
    np.testing.assert_allclose(bc.exact_forward(image, coord), matrix @ image.ravel(),
                               rtol=1e-12, atol=1e-12)
    pixels = np.stack([rng.integers(0, n, 4) for n in shape], -1)
    flat_index = np.ravel_multi_index(tuple(pixels.T), shape)
    np.testing.assert_allclose(bc.exact_adjoint(samples, coord, shape, pixels),
                               (matrix.conj().T @ samples)[flat_index], rtol=1e-12, atol=1e-12)


def test_contenders_are_interleaved_in_rotating_order_after_one_warm_up_call_each():
    calls = []
    times = bc.interleaved({k: (lambda k=k: calls.append(k)) for k in "abc"}, 3)
    assert "".join(calls) == "abc" + "abc" + "bca" + "cab"
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "compare.json"
    return bc.run(sizes=TINY, out=out, progress=False), out


def test_every_workload_reports_ratios_and_accuracies(tiny_run):
    data, out = tiny_run
    assert json.loads(out.read_text(encoding="utf-8"))["rows"] == json.loads(
        json.dumps(data["rows"]))
    table = bc.table(data)
    assert (table.median_ms > 0).all()
    for _, rows in table.groupby("workload"):
        nacode = rows[rows.implementation.str.contains("nacode")]
        assert len(nacode) == 1 and nacode.nacode_over_this.iloc[0] == pytest.approx(1.0)
    nufft = table[table.workload.str.contains("forward|adjoint") & ~table.workload.str.contains(
        "torch")]
    assert set(nufft.implementation) == {"nacode", "finufft direct, 1 thread",
                                         "finufft direct, all cores", "sigpy"}
    assert len(nufft.workload.unique()) == 4  # 2D and 3D, forward and adjoint
    for _, rows in nufft.groupby("workload"):
        errors = rows.set_index("implementation").rel_error
        assert errors["nacode"] < 10 * nf.EPS < errors["sigpy"]  # sigpy's kernel: ≈ 5e-3
    torch_rows = table[table.workload.str.startswith("torch")].set_index("implementation")
    assert torch_rows.rel_error.max() < 1e-3  # both backends, float32
    cs = table[table.workload.str.startswith("CS-TV")].set_index("implementation")
    assert cs.loc["nacode", "rel_error"] == 0.0  # the same data give the same image
    cnn = table[table.workload.str.startswith("calf CNN")]
    assert {"batch 1", "eager float32, batch 32"} <= set(cnn.implementation)
    assert (cnn.per_slice_ms > 0).all()


def test_unknown_workloads_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown workload"):
        bc.run(sizes=TINY, out=tmp_path / "x.json", only=["nfft"], progress=False)
    assert not (tmp_path / "x.json").exists()


def test_the_sigpy_row_is_sigpys_nufft():
    """A check on the harness itself: its 'sigpy' contender is sigpy's NUFFT at its defaults,
    whose error against the exact DFT is far above nacode's."""
    import sigpy as sp

    coord = trajectory.spiral(matrix=16, n_interleaves=4).coord.reshape(-1, 2)
    image = np.random.default_rng(1).standard_normal((16, 16)) + 0j
    exact = bc.exact_forward(image, coord)
    assert bc._rel(sp.nufft(image, coord), exact) > 100 * bc._rel(nf.nufft(image, coord), exact)


def test_a_time_budget_adds_rounds_up_to_the_cap():
    times = bc.interleaved({"a": lambda: None}, 2, budget_s=10.0, max_rounds=7)
    assert len(times["a"]) == 7
    assert len(bc.interleaved({"a": lambda: None}, 3)["a"]) == 3
