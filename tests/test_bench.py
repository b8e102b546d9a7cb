"""``nacode.bench``: the timing harness, the JSON it writes (atomically), and its table."""

from __future__ import annotations

import json
import math

import pytest

from nacode import bench

#: Problems small enough that the whole run takes seconds (still every real code path).
TINY = {"cnn_batch_cpu": 2, "cs_iter": 3, "dae_matrix": 16, "dip_matrix": 16, "dip_copies": 1,
        "dip_base": 4, "dip_levels": 2, "dip_iterations": 2, "dip_warmup": 1, "budget_s": 0.5}


class FakeClock:
    """A clock that only moves when the timed work says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, durations):
        durations = iter(durations)

        def fn():
            self.now += next(durations)

        return fn


def test_measure_takes_median_and_quartiles_after_warmup():
    clock = FakeClock()
    fn = clock.work([100.0, 5.0, 1.0, 3.0, 2.0, 4.0])  # the first call is the warm-up
    stats = bench.measure(fn, repeats=5, warmup=1, clock=clock)
    assert stats["times_s"] == [5.0, 1.0, 3.0, 2.0, 4.0]
    assert stats["median_s"] == 3.0 and stats["min_s"] == 1.0
    assert (stats["q1_s"], stats["q3_s"], stats["iqr_s"]) == (2.0, 4.0, 2.0)
    assert stats["repeats"] == 5 and stats["warmup"] == 1


def test_measure_counts_the_sync_before_stopping_the_timer():
    clock = FakeClock()
    calls = []

    def sync():  # e.g. waiting for the GPU: takes 0.5 s of the timed interval
        calls.append(clock.now)
        clock.now += 0.5

    stats = bench.measure(clock.work([1.0] * 4), repeats=3, warmup=1, sync=sync, clock=clock)
    assert len(calls) == 4  # after every call, warm-up included
    assert stats["times_s"] == [1.5, 1.5, 1.5]


def test_measure_stops_at_the_budget_but_not_before_min_repeats():
    clock = FakeClock()
    stats = bench.measure(clock.work([1.0] * 10), repeats=10, warmup=0, budget_s=2.5,
                          clock=clock)
    assert stats["repeats"] == 3
    clock = FakeClock()
    stats = bench.measure(clock.work([10.0] * 10), repeats=10, warmup=0, budget_s=1.0,
                          min_repeats=2, clock=clock)
    assert stats["repeats"] == 2


def test_measure_with_real_sleeps_is_at_least_the_sleep():
    import time

    stats = bench.measure(lambda: time.sleep(0.01), repeats=3, warmup=0)
    assert stats["min_s"] >= 0.0099 and stats["repeats"] == 3


def test_measure_rejects_no_repeats():
    with pytest.raises(ValueError, match="repeats"):
        bench.measure(lambda: None, repeats=0)


def _strict_json(path):
    def no_nan(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=no_nan)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench_cpu.json"
    data = bench.run("cpu", quick=True, repeats=2, warmup=0, out=out, progress=False,
                     sizes=TINY)
    return out, data


def test_quick_run_writes_every_benchmark_with_positive_finite_medians(quick_run):
    out, data = quick_run
    written = _strict_json(out)
    assert set(written["benchmarks"]) == set(bench.BENCHMARKS)
    for name, result in written["benchmarks"].items():
        assert result["name"] == name
        assert math.isfinite(result["median_s"]) and result["median_s"] > 0
        assert result["iqr_s"] >= 0 and result["repeats"] >= 1
        assert result["what"] and result["unit"] and result["device"] in ("cpu",)
    header = written["header"]
    for key in ("timestamp", "device", "device_name", "torch_threads", "versions", "commit",
                "papers", "profile", "sizes", "wall_s"):
        assert key in header, key
    assert header["papers"]["calf"]["cs_recon_s"] == 32.8
    assert header["papers"]["brain"]["reported_times"] is None
    assert header["versions"]["torch"] and header["profile"] == "quick"
    assert header["out"] == str(out)
    assert written == json.loads(json.dumps(data))  # what is returned is what was written


def test_quick_run_records_the_engine_and_the_baselines(quick_run):
    _, data = quick_run
    batched = data["benchmarks"]["cnn_batched"]
    assert batched["items"] == TINY["cnn_batch_cpu"]
    assert batched["items_per_s"] == pytest.approx(batched["items"] / batched["median_s"])
    assert batched["engine"]["bn_folded"] and "eager_float32" in batched["baselines"]
    assert batched["gflop_per_slice"] == pytest.approx(8.0, rel=0.05)
    dip = data["benchmarks"]["dip_fusion_slice"]
    assert dip["repeats"] == TINY["dip_iterations"]
    assert dip["per_slice_s"] == pytest.approx(dip["median_s"] * 3000 / TINY["dip_copies"])
    assert "extrapolated" in dip["what"]
    assert data["benchmarks"]["nufft_recon"]["device"] == "cpu"


def test_table_has_one_row_per_benchmark(quick_run):
    import pandas as pd

    _, data = quick_run
    frame = bench.table(data)
    assert list(frame["name"]) == list(bench.BENCHMARKS)
    assert {"what", "device", "median_s", "iqr_s", "items_per_s", "paper_s",
            "paper_over_ours"} <= set(frame.columns)
    row = frame.set_index("name").loc["cs_recon"]
    assert row["paper_s"] == 32.8
    assert row["paper_over_ours"] == pytest.approx(32.8 / data["benchmarks"]["cs_recon"]
                                                   ["median_s"])
    assert pd.isna(frame.set_index("name").loc["dae_volume", "paper_over_ours"])


def _fake(name, median=0.5):
    def benchmark(device, sizes, timer):
        stats = bench.summarize([median])
        return bench._result(name, "fake", "s", stats, device, bench._paper("brain", None))

    return benchmark


def _broken(device, sizes, timer):
    raise RuntimeError("benchmark exploded")


@pytest.mark.parametrize("second", [_broken, _fake("nan", float("nan"))],
                         ids=["raises", "nan-median"])
def test_a_failing_benchmark_writes_nothing(monkeypatch, tmp_path, second):
    monkeypatch.setattr(bench, "BENCHMARKS", {"first": _fake("first"), "second": second})
    out = tmp_path / "bench.json"
    with pytest.raises(RuntimeError):
        bench.run("cpu", out=out, progress=False)
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind
    out.write_text("previous", encoding="utf-8")
    with pytest.raises(RuntimeError):
        bench.run("cpu", out=out, progress=False)
    assert out.read_text(encoding="utf-8") == "previous"
    assert list(tmp_path.iterdir()) == [out]


def test_only_and_unknown_names(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "BENCHMARKS", {"a": _fake("a"), "b": _fake("b")})
    data = bench.run("cpu", out=tmp_path / "x.json", progress=False, only=["b"])
    assert list(data["benchmarks"]) == ["b"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        bench.run("cpu", out=tmp_path / "y.json", progress=False, only=["zzz"])
