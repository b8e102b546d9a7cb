"""``nacode bench --compare``: nacode beside the field's libraries on the same inputs.

Every workload runs each contender on identical inputs, interleaved (one call of each per
round, so that a change of machine load touches all of them alike), and reports the median
wall time, its quartiles, the ratio to nacode and each contender's accuracy: for a NUFFT the
relative error against an exact non-uniform DFT evaluated at a random subset of samples
(forward) or pixels (adjoint); for CS-TV the relative difference from nacode's image; for the
CNN batch sizes none (they compute the same function). The contenders:

- **finufft direct**: a ``finufft.Plan`` made once with nacode's ``eps``, on one thread and
  on all cores (its default), so that the ratio to the faster of the two is the cost of
  nacode's wrapper and its thread choice;
- **sigpy**: :func:`sigpy.nufft` / :func:`sigpy.nufft_adjoint` at sigpy's defaults, and
  :class:`sigpy.mri.app.TotalVariationRecon` for CS-TV;
- the torch operator's two backends (sparse Kaiser–Bessel and finufft) on the breast study's
  multi-coil problem, and the calf CNN's CPU engine at several batch sizes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: Problem sizes and effort. ``quick`` leaves sigpy out of the 3D workload (≈ 10 s a call).
SIZES: dict[str, dict[str, Any]] = {
    "full": {"repeats": 15, "matrix3d": 60, "repeats3d": 5, "sigpy3d": True, "cs_iter": 100,
             "cnn_batches": (1, 2, 4, 8, 16, 32, 64), "cnn_slices": 64, "exact_points": 400,
             "budget_s": 5.0},
    "quick": {"repeats": 5, "matrix3d": 60, "repeats3d": 5, "sigpy3d": False, "cs_iter": 30,
              "cnn_batches": (1, 4, 16), "cnn_slices": 16, "exact_points": 200,
              "budget_s": 2.0},
}


def _crandn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def exact_forward(image: np.ndarray, coord: np.ndarray) -> np.ndarray:
    """The orthonormal non-uniform DFT of ``image`` (shape ``N``) at ``coord`` ``(M, ndim)``."""
    shape = image.shape
    grids = [np.arange(n) - n // 2 for n in shape]
    out = np.empty(coord.shape[0], dtype=np.complex128)
    for j, k in enumerate(coord):
        factors = [np.exp(-2j * np.pi * k[d] * grids[d] / n) for d, n in enumerate(shape)]
        out[j] = np.vdot(_outer(factors).conj(), image)
    return out / np.sqrt(np.prod(shape))


def exact_adjoint(samples: np.ndarray, coord: np.ndarray, shape: tuple[int, ...],
                  pixels: np.ndarray) -> np.ndarray:
    """The adjoint non-uniform DFT of ``samples`` at the pixel indices ``pixels`` ``(P, ndim)``."""
    offsets = (pixels - np.array([n // 2 for n in shape])) / np.array(shape)
    return np.array([samples @ np.exp(2j * np.pi * coord @ r) for r in offsets]
                    ) / np.sqrt(np.prod(shape))


def _outer(factors: list[np.ndarray]) -> np.ndarray:
    out = factors[0]
    for f in factors[1:]:
        out = np.multiply.outer(out, f)
    return out


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def interleaved(contenders: dict[str, Callable[[], Any]], repeats: int, *,
                budget_s: float = 0.0, max_rounds: int = 500) -> dict[str, list]:
    """Wall times of each contender: one untimed call each, then rounds of one call each.

    At least ``repeats`` rounds; more, up to ``max_rounds``, while the rounds so far took
    less than ``budget_s`` seconds (millisecond workloads need hundreds of calls for a
    stable median). Each round starts one contender later than the one before, so that
    every contender runs after every other equally often (the one after a large transform
    finds the caches cold; with a fixed order nacode, always first, paid for it).
    """
    for fn in contenders.values():
        fn()
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    begin = time.perf_counter()
    rounds = 0
    while rounds < repeats or (time.perf_counter() - begin < budget_s and rounds < max_rounds):
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
        rounds += 1
    return times


def _finufft_direct(kind: int, shape, coord, threads: int):
    import finufft

    from nacode.physics.nufft import EPS

    plan = finufft.Plan(kind, shape, eps=EPS, isign=-1 if kind == 2 else 1, nthreads=threads)
    plan.setpts(*[2 * np.pi * coord[:, d] / n for d, n in enumerate(shape)])
    norm = 1 / np.sqrt(np.prod(shape))
    return lambda data: plan.execute(data) * norm


def nufft_workload(label: str, shape: tuple[int, ...], coord: np.ndarray, sizes: dict, *,
                   with_sigpy: bool = True, seed: int = 0) -> list[dict]:
    """Forward and adjoint rows of one trajectory: nacode, finufft direct, sigpy."""
    import sigpy as sp

    from nacode.physics.nufft import nufft, nufft_adjoint

    flat = np.ascontiguousarray(coord.reshape(-1, len(shape)))
    rng = np.random.default_rng(seed)
    image, samples = _crandn(rng, *shape), _crandn(rng, flat.shape[0])
    rows_f = rng.choice(flat.shape[0], size=min(sizes["exact_points"], flat.shape[0]),
                        replace=False)
    pixels = np.stack([rng.integers(0, n, sizes["exact_points"] // 4) for n in shape], -1)
    exact_f = exact_forward(image, flat[rows_f])
    exact_a = exact_adjoint(samples, flat, shape, pixels)
    rows = []
    for direction, data in (("forward", image), ("adjoint", samples)):
        kind = 2 if direction == "forward" else 1
        contenders = {
            "nacode": (lambda: nufft(image, coord)) if kind == 2 else
                      (lambda: nufft_adjoint(samples, coord, shape)),
            "finufft direct, 1 thread": _bind(_finufft_direct(kind, shape, flat, 1), data),
            "finufft direct, all cores": _bind(_finufft_direct(kind, shape, flat, 0), data)}
        if with_sigpy:
            contenders["sigpy"] = (lambda: sp.nufft(image, flat)) if kind == 2 else (
                lambda: sp.nufft_adjoint(samples, flat, oshape=shape))

        def error(out, kind=kind):
            if kind == 2:
                return _rel(out[rows_f], exact_f)
            return _rel(out[tuple(pixels.T)], exact_a)

        rows += _rows(f"{label}, {direction}", contenders, sizes["repeats"], error,
                      budget_s=sizes["budget_s"])
    return rows


def _bind(fn: Callable, data) -> Callable[[], Any]:
    return lambda: fn(data)


def _rows(workload: str, contenders: dict, repeats: int, error=None, budget_s: float = 0.0
          ) -> list[dict]:
    """Time the contenders and make one row each (``nacode_over_this``: > 1, nacode slower)."""
    times = interleaved(contenders, repeats, budget_s=budget_s)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    rows = []
    for name, t in times.items():
        q1, q3 = np.percentile(t, [25, 75])
        rows.append({"workload": workload, "implementation": name,
                     "median_ms": 1e3 * medians[name], "q1_ms": 1e3 * q1, "q3_ms": 1e3 * q3,
                     "repeats": len(t), "nacode_over_this": medians["nacode"] / medians[name],
                     "rel_error": error(contenders[name]()) if error else None})
    return rows


def torch_workload(sizes: dict, *, matrix: int = 128, coils: int = 8, seed: int = 0
                   ) -> list[dict]:
    """The torch operator's backends on the breast study's problem: ``Aᴴ A x``, float32."""
    import torch

    from nacode.physics.torch_nufft import TorchNufft
    from nacode.studies import breast_data as bd

    coord = bd.full_trajectory(matrix).coord.reshape(-1, 2)
    ops = {f"TorchNufft, {b}": TorchNufft.from_coord((matrix, matrix), coord, backend=b)
           for b in ("sparse", "finufft")}
    x = torch.from_numpy(_crandn(np.random.default_rng(seed), coils, matrix, matrix)
                         .astype(np.complex64))
    rows_f = np.random.default_rng(seed + 1).choice(coord.shape[0], sizes["exact_points"],
                                                    replace=False)
    exact = np.stack([exact_forward(x[c].numpy().astype(np.complex128), coord[rows_f])
                      for c in range(coils)])
    contenders = {"nacode": _normal(ops["TorchNufft, sparse"], x),
                  "TorchNufft, finufft": _normal(ops["TorchNufft, finufft"], x)}
    rows = _rows(f"torch NUFFT {matrix}², {coils} coils, forward + adjoint", contenders,
                 sizes["repeats"], budget_s=sizes["budget_s"])
    for row, op in zip(rows, ops.values(), strict=True):
        with torch.no_grad():  # accuracy of the forward transform alone
            row["rel_error"] = _rel(op(x).numpy()[:, rows_f], exact)
        if row["implementation"] == "nacode":
            row["implementation"] = "TorchNufft, sparse (nacode's 2D CPU choice)"
    return rows


def _normal(op, x) -> Callable[[], Any]:
    import torch

    def run():
        with torch.no_grad():
            return op.adjoint(op(x))
    return run


def cs_workload(sizes: dict) -> list[dict]:
    """CS-TV of the calf spiral: nacode's :func:`~nacode.recon.cs.tv_recon` and sigpy's app."""
    import sigpy.mri

    from nacode.bench import CS_LAMBDA, _calf_kspace
    from nacode.physics.nufft import gridding
    from nacode.recon.cs import tv_recon

    traj, weights, kspace = _calf_kspace()
    n_iter = sizes["cs_iter"]
    scale = float(np.abs(gridding(kspace, traj, weights)).max())
    flat = traj.coord.reshape(-1, 2)

    def theirs():
        app = sigpy.mri.app.TotalVariationRecon(
            kspace.reshape(1, -1) / scale, np.ones((1, *traj.matrix), complex), CS_LAMBDA,
            weights=weights.reshape(1, -1), coord=flat, max_iter=n_iter, show_pbar=False)
        return np.asarray(app.run()) * scale

    ours = tv_recon(kspace, traj, weights, CS_LAMBDA, max_iter=n_iter)
    return _rows(f"CS-TV calf spiral 80², {n_iter} iterations",
                 {"nacode": lambda: tv_recon(kspace, traj, weights, CS_LAMBDA,
                                             max_iter=n_iter),
                  "sigpy TotalVariationRecon": theirs}, max(3, sizes["repeats"] // 2),
                 lambda out: _rel(out, ours))


def cnn_batch_workload(sizes: dict) -> list[dict]:
    """Per-slice time of the calf CNN's CPU engine at each batch size (the default's choice)."""
    import torch

    from nacode.bench import _calf_model
    from nacode.denoise.fast import CPU_BATCH, eager_denoiser, fast_denoiser

    model, _ = _calf_model()
    n = sizes["cnn_slices"]
    x = torch.rand((n, 80, 80), generator=torch.Generator().manual_seed(0))
    engines = {f"batch {b}": fast_denoiser(model, "cpu", batch_size=b)
               for b in sizes["cnn_batches"]}
    engines = {("nacode" if name == f"batch {CPU_BATCH}" else name): e
               for name, e in engines.items()}
    if "nacode" not in engines:
        engines["nacode"] = fast_denoiser(model, "cpu")
    contenders = {k: _bind(e, x) for k, e in engines.items()}
    contenders["eager float32, batch 32"] = _bind(eager_denoiser(model, "cpu", batch_size=32), x)
    rows = _rows(f"calf CNN on the CPU, {n} slices of 80², per batch size", contenders,
                 max(3, sizes["repeats"] // 2))
    for row in rows:
        if row["implementation"] == "nacode":
            row["implementation"] = f"batch {CPU_BATCH} (nacode's default)"
        row["per_slice_ms"] = row["median_ms"] / n
    return rows


def run(*, quick: bool = False, out: str | Path | None = None, progress: bool = True,
        sizes: dict | None = None, only: list[str] | None = None) -> dict:
    """Run every comparison and write ``{"header", "rows"}`` as JSON (atomically).

    ``only`` picks workloads among ``"nufft2d", "nufft3d", "torch", "cs", "cnn"``. Returns
    the data written; ``header["out"]`` is the file
    (default ``<build dir>/results/benchmark/compare_cpu.json``).
    """
    from tqdm.auto import tqdm

    from nacode.bench import _header
    from nacode.physics import trajectory
    from nacode.results import build_dir, write_json
    from nacode.studies import calf_data

    profile = "quick" if quick else "full"
    size = {**SIZES[profile], **(sizes or {})}
    spiral, _ = calf_data.paper_spiral()
    m = size["matrix3d"]
    workloads: dict[str, Callable[[], list[dict]]] = {
        "nufft2d": lambda: nufft_workload("calf spiral 80²", (80, 80), spiral.coord, size),
        "nufft3d": lambda: nufft_workload(f"3D radial {m}³", (m, m, m),
                                          trajectory.radial3d(matrix=m).coord,
                                          {**size, "repeats": size["repeats3d"]},
                                          with_sigpy=size["sigpy3d"]),
        "torch": lambda: torch_workload(size), "cs": lambda: cs_workload(size),
        "cnn": lambda: cnn_batch_workload(size)}
    names = list(only or workloads)
    if unknown := sorted(set(names) - set(workloads)):
        raise ValueError(f"unknown workload(s) {unknown}; known: {list(workloads)}")
    rows: list[dict] = []
    for name in (bar := tqdm(names, desc="comparisons", disable=not progress)):
        bar.set_postfix_str(name)
        rows += workloads[name]()
    path = Path(out) if out else build_dir() / "results" / "benchmark" / "compare_cpu.json"
    data = {"header": {**_header("cpu", profile, size["repeats"], 1, size), "out": str(path)},
            "rows": rows}
    write_json(path, data)
    return data


def table(data: dict):
    """The rows as a DataFrame (one per workload and implementation)."""
    import pandas as pd

    return pd.DataFrame(data["rows"])
