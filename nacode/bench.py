"""``nacode bench``: honest speed figures of the three studies' methods, as JSON.

Every benchmark times a real code path with :func:`measure` (wall-clock median and quartiles
over repeats after warm-up, the device synchronised before each timer stops) and says what was
timed, its sizes, device and unit. :func:`run` runs them all, adds a header (time, machine,
threads, load average, versions, commit, the papers' reported times) and writes one JSON file
atomically once every benchmark has succeeded; :func:`table` makes the book's table from it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nacode.book import resolve_device
from nacode.physics.nufft import gridding, sample_image
from nacode.profiles import PROFILES
from nacode.provenance import git_commit, package_versions
from nacode.recon.cs import tv_recon
from nacode.results import build_dir, write_json
from nacode.studies import calf_data

#: What the papers report. Only the calf paper (Baker et al.) gives times.
PAPERS: dict[str, dict[str, Any]] = {
    "calf": {"source": "Baker et al., calf 23Na CNN (paper 002)", "nufft_recon_s": 0.2,
             "cnn_per_image_s": 0.1, "cs_recon_s": 32.8, "training_h_per_model": [9, 10]},
    "brain": {"source": "Koppers et al., brain 23Na DAE (paper 003)", "reported_times": None,
              "note": "the paper reports no computation times"},
    "breast": {"source": "DIP-Fusion abstract (paper 000)", "reported_times": None,
               "note": "the abstract reports no computation times"},
}
#: Problem sizes and timing effort; ``quick`` runs in well under a minute on two CPU cores.
#: ``budget_s`` stops a benchmark's timed calls after that many seconds (≥ 3 repeats).
_FULL = {"repeats": 20, "warmup": 2, "budget_s": 15.0, "cnn_batch_cpu": 64,
         "cnn_batch_cuda": 4096, "eager_chunk_cuda": 1024, "compile": False, "cs_iter": 100,
         "dae_matrix": 60, "dip_matrix": 128, "dip_copies": 24, "dip_base": 32,
         "dip_levels": 4, "dip_iterations": 20, "dip_warmup": 2}
SIZES: dict[str, dict[str, Any]] = {"full": _FULL, "quick": {
    **_FULL, "repeats": 5, "warmup": 1, "budget_s": 3.0, "cnn_batch_cpu": 16,
    "cnn_batch_cuda": 1024, "cs_iter": 60, "dip_matrix": 64, "dip_copies": 4, "dip_base": 16,
    "dip_iterations": 5, "dip_warmup": 1}}
CS_LAMBDA = 0.04  # λ the calf chapter's tune_cs picked; CS cost does not depend on it
CNN_TARGET_CUDA = 20_000  # slices/s on one H100 the fast engine aims at


def summarize(times, *, warmup: int = 0) -> dict[str, Any]:
    """Median, quartiles and minimum of timed durations (seconds)."""
    t = np.asarray(times, dtype=float)
    if t.size == 0:
        raise ValueError("no timed repeats")
    q1, median, q3 = np.percentile(t, [25, 50, 75])
    return {"median_s": float(median), "q1_s": float(q1), "q3_s": float(q3),
            "iqr_s": float(q3 - q1), "min_s": float(t.min()), "repeats": int(t.size),
            "warmup": int(warmup), "times_s": [float(x) for x in t]}


def measure(fn: Callable[[], Any], *, repeats: int, warmup: int = 1,
            sync: Callable[[], Any] | None = None, budget_s: float | None = None,
            min_repeats: int = 3, clock: Callable[[], float] = time.perf_counter
            ) -> dict[str, Any]:
    """Time ``fn()``: ``warmup`` untimed calls, then up to ``repeats`` timed ones.

    Parameters
    ----------
    fn : callable
        The work, called without arguments.
    repeats, warmup : int
        Timed and untimed calls.
    sync : callable, optional
        Called after ``fn`` before each timer stops (e.g. ``torch.cuda.synchronize``).
    budget_s, min_repeats : float, int
        Stop once the timed calls add up to ``budget_s`` seconds, after ``min_repeats``.
    clock : callable
        Seconds (``time.perf_counter``; tests inject a fake).

    Returns
    -------
    dict
        ``median_s, q1_s, q3_s, iqr_s, min_s, repeats, warmup, times_s`` (seconds).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats ≥ 1 and warmup ≥ 0, got {repeats}, {warmup}")
    times: list[float] = []
    for call in range(warmup + repeats):
        start = clock()
        fn()
        if sync is not None:
            sync()
        if call >= warmup:
            times.append(clock() - start)
            if budget_s is not None and len(times) >= min_repeats and sum(times) > budget_s:
                break
    return summarize(times, warmup=warmup)


def _result(name: str, what: str, unit: str, stats: dict, device: str, paper: dict, *,
            items: int | None = None, **extra) -> dict[str, Any]:
    out = {"name": name, "what": what, "unit": unit, "device": device, **stats}
    if items:
        out.update(items=items, per_item_s=stats["median_s"] / items,
                   items_per_s=items / stats["median_s"])
    return {**out, "paper": paper, **extra}


def _paper(study: str, key: str | None, compare: str = "median_s") -> dict:
    return {"study": study, "seconds": PAPERS[study][key] if key else None, "compare": compare}


def _calf_model():
    """The committed NSA-30 calf CNN, or random weights (with a note) when it is missing."""
    from nacode.denoise.dncnn import ResidualDnCNN
    from nacode.studies import calf

    try:
        return calf.load_models([30])[30], "committed weights calf_nsa30"
    except (FileNotFoundError, ValueError) as exc:
        return ResidualDnCNN().eval(), f"random weights ({str(exc).splitlines()[0]})"


def _calf_kspace(seed: int = 0):
    """Spiral k-space of a disc phantom with noise, the paper's trajectory and weights."""
    traj, weights = calf_data.paper_spiral()
    yy, xx = np.mgrid[:80, :80] - 40.0
    kspace = sample_image((np.hypot(yy, xx) < 28) + 3.0 * (np.hypot(yy - 16, xx) < 4), traj)
    noise = np.random.default_rng(seed).standard_normal((2, *kspace.shape))
    return traj, weights, kspace + 0.007 * np.abs(kspace).max() * (noise[0] + 1j * noise[1])


def nufft_recon(device: str, sizes: dict, timer) -> dict:
    """Gridding reconstruction of one calf image (always on the CPU: NumPy/sigpy)."""
    traj, weights, kspace = _calf_kspace()
    start = time.perf_counter()
    np.abs(gridding(kspace, traj, weights))  # builds and caches the interpolation plan
    first = time.perf_counter() - start
    stats = timer(lambda: np.abs(gridding(kspace, traj, weights)), sync=None)
    return _result("nufft_recon", f"gridding (planned adjoint NUFFT) of one 80×80 calf spiral "
                   f"image, {kspace.size} samples", "s per image", stats, "cpu",
                   _paper("calf", "nufft_recon_s"), first_call_s=first,
                   notes="NumPy/SciPy/sigpy on the CPU whatever the device; the first call "
                         "(first_call_s) also builds the interpolation plan")


def cnn_single(device: str, sizes: dict, timer) -> dict:
    """One 80×80 slice through the calf CNN as the book applies it, host→device→host."""
    from nacode.denoise.fast import latency

    model, source = _calf_model()
    image = np.random.default_rng(0).random((80, 80)).astype(np.float32)
    found = latency(model, image, functools.partial(timer, min_warmup=1), device=device)
    return _result("cnn_single", "one 80×80 slice through the calf ResidualDnCNN (eager "
                   "float32, batch 1) incl. normalisation and host↔device copies",
                   "s per image", found["eager"], device, _paper("calf", "cnn_per_image_s"),
                   items=1, model=source, engine_median_s=found["engine"]["median_s"],
                   engine=found["engine_info"])


def cnn_batched(device: str, sizes: dict, timer) -> dict:
    """Slices/s of the fast engine on a device-resident batch, beside eager baselines."""
    import torch

    from nacode.denoise.fast import gflop_per_slice, throughput

    cuda = device.startswith("cuda")
    model, source = _calf_model()
    batch = sizes["cnn_batch_cuda" if cuda else "cnn_batch_cpu"]
    x = torch.rand((batch, 80, 80), generator=torch.Generator().manual_seed(0)).to(device)
    found = throughput(model, x, functools.partial(timer, min_warmup=1), device=device,
                       compile=sizes["compile"],
                       eager_chunk=min(batch, sizes["eager_chunk_cuda"]) if cuda else None)
    info, gflop = found["engine"], gflop_per_slice(model)
    levers = ", CUDA graph" * bool(info["cuda_graph"]) + ", compiled" * info["compiled"]
    return _result("cnn_batched", f"calf CNN on a device-resident batch of {batch} 80×80 "
                   f"slices, fast engine ({info['dtype']}, BN folded, channels-last{levers})",
                   f"s per batch of {batch}", found["stats"], device,
                   _paper("calf", "cnn_per_image_s", "per_item_s"), items=batch, model=source,
                   engine=info, baselines=found["baselines"], speedup=found["speedup"],
                   gflop_per_slice=gflop,
                   tflop_per_s=batch / found["stats"]["median_s"] * gflop / 1e3,
                   target_items_per_s=CNN_TARGET_CUDA if cuda else None,
                   cudnn_benchmark_in_baselines=bool(torch.backends.cudnn.benchmark))


def cs_recon(device: str, sizes: dict, timer) -> dict:
    """TV compressed sensing of one calf image, the calf chapter's λ and iterations (CPU)."""
    traj, weights, kspace = _calf_kspace()
    n_iter = sizes["cs_iter"]
    stats = timer(lambda: tv_recon(kspace, traj, weights, CS_LAMBDA, max_iter=n_iter),
                  sync=None)
    return _result("cs_recon", f"TV compressed sensing of one 80×80 calf spiral image, "
                   f"λ = {CS_LAMBDA}, {n_iter} primal–dual iterations (sigpy)", "s per image",
                   stats, "cpu", _paper("calf", "cs_recon_s"), lamda=CS_LAMBDA,
                   iterations=n_iter)


def _brain_volume(n: int, seed: int = 0):
    """A brain-sized synthetic 4 mm volume and an ellipsoidal mask (≈ the cohort's brain)."""
    grid = np.meshgrid(*[np.arange(n)] * 3, indexing="ij")
    centre, axes = (0.48 * n, 0.5 * n, 0.43 * n), (0.28 * n, 0.37 * n, 0.30 * n)
    mask = sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes, strict=True)) <= 1
    volume = 0.4 * np.random.default_rng(seed).random((n, n, n)).astype(np.float32)
    return volume, mask


def dae_volume(device: str, sizes: dict, timer) -> dict:
    """Whole-volume brain autoencoder pass (fully convolutional) on a brain-sized volume."""
    from nacode.denoise.dae import PatchDAE, denoise_volume
    from nacode.studies import brain
    from nacode.studies import brain_data as bd

    try:
        model, source = brain.load_models([bd.folds()[0]])[1], "committed weights fold 1"
    except (FileNotFoundError, ValueError) as exc:
        model, source = PatchDAE().eval(), f"random weights ({str(exc).splitlines()[0]})"
    n = sizes["dae_matrix"]
    volume, mask = _brain_volume(n)
    stats = timer(lambda: denoise_volume(model, volume, mask, device=device))
    return _result("dae_volume", f"brain patch DAE as one fully convolutional pass over a "
                   f"synthetic {n}³ 4 mm volume, ellipsoidal mask of {int(mask.sum())} voxels "
                   "(incl. host↔device copies)", "s per volume", stats, device,
                   _paper("brain", None), model=source, mask_voxels=int(mask.sum()))


class _Enough(Exception):
    """Raised from the DIP callback to stop a fit once enough iterations are timed."""


def dip_fusion_slice(device: str, sizes: dict, timer) -> dict:
    """Seconds per slice of DIP-Fusion at the full profile's iterations, extrapolated."""
    import torch

    from nacode.denoise.dip import DIPConfig, fit
    from nacode.denoise.priors import fuse
    from nacode.physics.toeplitz import SenseNormal
    from nacode.studies import breast_data as bd
    from nacode.studies.breast import fusion_config

    matrix, copies = sizes["dip_matrix"], sizes["dip_copies"]
    skip, wanted = sizes["dip_warmup"], sizes["dip_iterations"]
    traj = bd.full_trajectory(matrix)
    gen, n = torch.Generator().manual_seed(0), traj.coord.shape[0] * traj.coord.shape[1]
    maps, kspace = (torch.randn(shape, generator=gen, dtype=torch.complex64).to(device)
                    for shape in ((copies, bd.N_COILS, matrix, matrix), (copies, bd.N_COILS, n)))
    weights, image = (torch.rand(shape, generator=gen).to(device)
                      for shape in ((copies, n), (copies, matrix, matrix)))
    example = {"lr": 0.003, "lam_dtv": 0.1, "lam_gc": 0.1}  # every term on; timing only
    config = fusion_config(DIPConfig(max_iter=1 + skip + wanted, base=sizes["dip_base"],
                                     levels=sizes["dip_levels"], window=16, patience=10**9),
                           example)
    stamps: list[float] = []

    def record(iteration, images):  # images were copied to the host: the device is synced
        stamps.append(time.perf_counter())
        timed = np.diff(stamps)[skip:]
        if timed.size >= wanted or (timed.size >= 3 and timed.sum() > sizes["budget_s"]):
            raise _Enough

    with contextlib.suppress(_Enough):
        fit(SenseNormal(traj.coord.reshape(-1, 2), maps, weights, kspace), config,
            fuse(image, image), callback=record, every=1)
    stats = summarize(np.diff(stamps)[skip:], warmup=skip)
    full_iter = PROFILES["full"]["breast"]["dip_budget"]
    return _result("dip_fusion_slice", f"DIP-Fusion (dTV, GC, bias field on) batched fit of "
                   f"{copies} {matrix}×{matrix} slices, 8 coils, U-Net base {sizes['dip_base']}"
                   f": median of {stats['repeats']} timed iterations, extrapolated to "
                   f"{full_iter} iterations / {copies} copies", "s per iteration", stats,
                   device, _paper("breast", None, "per_slice_s"),
                   per_slice_s=stats["median_s"] * full_iter / copies,
                   iterations_extrapolated_to=full_iter, copies=copies,
                   notes="random data of the study's shapes; the per-iteration callback "
                         "copies the outputs to the host (a device sync) every iteration")


#: The benchmarks :func:`run` runs, in order: ``f(device, sizes, timer) -> dict``.
BENCHMARKS: dict[str, Callable[..., dict]] = {
    "nufft_recon": nufft_recon, "cnn_single": cnn_single, "cnn_batched": cnn_batched,
    "cs_recon": cs_recon, "dae_volume": dae_volume, "dip_fusion_slice": dip_fusion_slice}


def _device_name(device: str) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo (else the platform's)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    info = Path("/proc/cpuinfo")
    lines = info.read_text(encoding="utf-8").splitlines() if info.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def _header(device: str, profile: str, repeats: int, warmup: int, sizes: dict) -> dict:
    import torch

    versions, cuda = package_versions(), device.startswith("cuda")
    return {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"), "device": device,
            "device_name": _device_name(device), "cpu": _device_name("cpu"),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "cuda": torch.version.cuda if cuda else None, "python": platform.python_version(),
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "versions": {k: versions.get(k) for k in ("nacode", "torch", "numpy", "sigpy")},
            **git_commit(Path(__file__).resolve().parents[1]), "profile": profile,
            "repeats": repeats, "warmup": warmup, "sizes": sizes, "papers": PAPERS}


def default_out(device: str) -> Path:
    """``<build dir>/results/benchmark/bench_<cpu|cuda>.json``."""
    return build_dir() / "results" / "benchmark" / f"bench_{device.split(':')[0]}.json"


def run(device: str = "cpu", *, repeats: int | None = None, warmup: int | None = None,
        quick: bool = False, out: str | Path | None = None, progress: bool = True,
        sizes: dict | None = None, only: list[str] | None = None) -> dict:
    """Run the benchmarks and write ``{"header", "benchmarks"}`` as JSON, atomically.

    Parameters
    ----------
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Device of the torch benchmarks (NUFFT and CS always run on the CPU).
    repeats, warmup : int, optional
        Timed and untimed calls per benchmark (default from :data:`SIZES`; timed calls stop
        after ``budget_s`` seconds, at least 3).
    quick : bool
        Smaller batches and fewer repeats (:data:`SIZES` ``"quick"``).
    out : path, optional
        Output file (default :func:`default_out`).
    progress : bool
        A tqdm bar over the benchmarks.
    sizes : dict, optional
        Overrides of :data:`SIZES` entries (tests use tiny problems).
    only : list of str, optional
        Names of :data:`BENCHMARKS` to run (default all).

    Returns
    -------
    dict
        The data written; ``header["out"]`` is the file. If a benchmark raises, the
        exception propagates and nothing is written.
    """
    import torch
    from tqdm.auto import tqdm

    device = resolve_device(device)
    profile = "quick" if quick else "full"
    size = {**SIZES[profile], **(sizes or {})}
    repeats = int(repeats or size["repeats"])
    warmup = int(size["warmup"] if warmup is None else warmup)
    names = list(only or BENCHMARKS)
    if unknown := sorted(set(names) - set(BENCHMARKS)):
        raise ValueError(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    sync = torch.cuda.synchronize if device.startswith("cuda") else None

    def timer(fn, *, sync=sync, min_warmup=0):
        return measure(fn, repeats=repeats, warmup=max(warmup, min_warmup), sync=sync,
                       budget_s=size["budget_s"])

    path = Path(out) if out else default_out(device)
    header = {**_header(device, profile, repeats, warmup, size), "out": str(path)}
    results, start = {}, time.perf_counter()
    for name in (bar := tqdm(names, desc="benchmarks", disable=not progress)):
        bar.set_postfix_str(name)
        begin = time.perf_counter()
        result = BENCHMARKS[name](device, size, timer)
        if not (math.isfinite(result["median_s"]) and result["median_s"] > 0):
            raise RuntimeError(f"benchmark {name}: median {result['median_s']!r} s is not a "
                               "positive finite time")
        results[name] = {**result, "wall_s": time.perf_counter() - begin}
    header["wall_s"] = time.perf_counter() - start
    data = {"header": header, "benchmarks": results}
    json.dumps(data, allow_nan=False, default=str)  # strict JSON: a NaN fails here, loudly
    write_json(path, data)
    return data


def table(results: dict):
    """One row per benchmark: what, device, median, IQR, throughput, paper and ratio.

    ``paper_over_ours`` is the paper's time divided by ours for the compared quantity
    (``compared``: the median, the per-item time, or the extrapolated per-slice time); > 1
    means we are faster. Empty where the paper reports no time.
    """
    import pandas as pd

    rows = []
    for name, r in results["benchmarks"].items():
        compared, theirs = r["paper"]["compare"], r["paper"]["seconds"]
        rows.append({"name": name, **{k: r.get(k) for k in ("what", "device", "median_s",
                                                             "iqr_s", "unit", "items_per_s")},
                     "compared": compared, "ours_s": r[compared], "paper_s": theirs,
                     "paper_over_ours": theirs / r[compared] if theirs else None})
    return pd.DataFrame(rows)


def recorded(folder: str | Path):
    """The :func:`table` of every ``bench_*.json`` kept in ``folder``, or None if there is none.

    Measurements from other machines (e.g. a GPU session) are committed there with their
    header; each row gets the file, device name, commit and time of its run.
    """
    import pandas as pd

    frames = []
    for path in sorted(Path(folder).glob("bench_*.json")) if Path(folder).is_dir() else []:
        data = json.loads(path.read_text(encoding="utf-8"))
        head = data["header"]
        frames.append(table(data).assign(file=path.name, device_name=head["device_name"],
                                         commit=str(head.get("commit", ""))[:10],
                                         timestamp=head["timestamp"]))
    return pd.concat(frames, ignore_index=True) if frames else None
