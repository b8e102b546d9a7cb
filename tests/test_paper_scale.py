"""``scripts/paper_scale.sh --smoke``: every step of the GPU run, at tiny sizes on the CPU."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "paper_scale.sh"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
           "NACODE_BUILD_DIR": str(tmp_path / "build"), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=1200)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper_scale")
    return _run(tmp, "--smoke"), tmp / "out"


def test_smoke_runs_every_step_and_records_it(smoke):
    done, out = smoke
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with open(out / "steps.tsv", encoding="utf-8") as handle:
        steps = {row["step"]: row for row in csv.DictReader(handle, delimiter="\t")}
    assert list(steps) == ["data", "train", "bench", "breast"]
    assert all(row["exit"] == "0" for row in steps.values())
    assert all(float(steps[s]["seconds"]) > 0 for s in ("data", "train", "bench"))
    assert "skipped" in steps["breast"]["note"]
    record = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert record["smoke"] is True and [s["step"] for s in record["steps"]] == list(steps)
    assert record["weights"] == [f"calf_nsa{n}.safetensors" for n in (10, 20, 30, 40, 50)]


def test_smoke_trains_five_models_with_provenance_and_benchmarks(smoke):
    _, out = smoke
    for nsa in (10, 20, 30, 40, 50):
        prov = json.loads((out / "weights" / f"calf_nsa{nsa}.json").read_text(encoding="utf-8"))
        assert prov["nsa"] == nsa and prov["epochs_trained"] == 1 and prov["device"] == "cpu"
        assert prov["batch_size"] == 16 and prov["learning_rate"] == 1e-4
    bench = json.loads((out / "bench_cpu.json").read_text(encoding="utf-8"))
    assert set(bench["benchmarks"]) == {"nufft_recon", "cnn_single"}
    assert bench["benchmarks"]["cnn_single"]["model"].startswith("committed weights")


def test_without_a_gpu_the_real_run_refuses_and_bad_arguments_are_named(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 1 and "no CUDA device" in done.stderr
    assert not (tmp_path / "out").exists()  # nothing written before the check
    bad = _run(tmp_path, "--fast")
    assert bad.returncode == 2 and "unknown argument '--fast'" in bad.stderr
