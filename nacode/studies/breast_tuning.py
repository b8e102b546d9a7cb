"""DIP and DIP-Fusion tuned by the shared protocol on the validation subjects, then frozen.

The protocol of :mod:`nacode.evaluate.tuning`, applied at R = 4 (adaptive combination) on the
healthy validation subjects only, against their truth:

1. **DIP**: the learning rate over :data:`LR_GRID`;
2. **DIP-Fusion**: λ1 (dTV) over :data:`LAM1_GRID` at DIP's learning rate with λ2 = 0, then
   the learning rate at that λ1, then λ2 (gradient consistency) over :data:`LAM2_GRID`, kept
   only if its best value beats λ2 = 0 (else the term is dropped and the ablation shows it),
   and, when kept, the learning rate once more with the term on;
3. for each method, the **stopping rule**: a fixed iteration count (the one that maximises the
   mean validation PSNR) or ES-WMV — whichever scores higher on validation.

Every candidate runs for ``budget`` iterations (the profile's cap: the quick profile cannot
run a DIP to its peak on two CPU cores, and says by how much that costs) with its PSNR traced
every ``every`` iterations; a candidate's score is the better of its two rules. The fits of one
λ grid are one batched fit (λ per copy). The result is a JSON artifact (:func:`save`) that the
quick profile loads (:func:`load`) because the tuning fits cost more CPU than a book build
has; the full profile reruns it. It records the settings it was tuned for, and :func:`load`
refuses an artifact whose settings differ from the chapter's.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from nacode.evaluate.tuning import Tuning, choose, log_grid, tune

LR_GRID = log_grid(1e-3, 1e-1, 2)
LAM1_GRID = log_grid(1e-2, 1.0, 2)
LAM2_GRID = log_grid(1e-2, 1.0, 2)
#: The evidence run past the budget, in budgets (the full profile's budget is already long).
LONG_FACTOR = {"quick": 5, "full": 1}
ARTIFACT = Path(__file__).resolve().parents[2] / "weights" / "breast_dip_tuning.json"


def settings(params: dict, base) -> dict:
    """What a tuning depends on: the cohort, the network and the iteration budget."""
    from nacode.studies import breast_data as bd

    keys = ("matrix", "n_val", "seed", "dip_budget", "dip_every")
    return {**{k: params[k] for k in keys}, "snr": bd.SNR, "base": base.base,
            "levels": base.levels, "window": base.window, "patience": base.patience,
            "lr_grid": list(LR_GRID), "lam1_grid": list(LAM1_GRID),
            "lam2_grid": list(LAM2_GRID)}


class _Runner:
    """Runs candidate fits on the validation jobs and keeps every trace for the figures."""

    def __init__(self, scans, val, base, budget: int, every: int, device: str) -> None:
        from nacode.studies import breast

        self.breast, self.scans, self.base = breast, scans, base
        self.jobs = [breast.Job(s, 4, "adaptive") for s in val]
        self.recon = breast.recons(scans, self.jobs)
        cs = breast.tune_classical(scans, val, rates=(4,), device=device)[("CS-TV", 4)]
        images, _ = breast.variational(scans, self.jobs, self.recon, cs.best, device=device)
        self.sodium = dict(zip(self.jobs, images, strict=True))
        self.budget, self.every, self.device = budget, every, device
        self.traces: list[dict] = []
        self.details: dict[tuple, dict] = {}

    def run(self, method: str, parameter: str, config, values: list, per_copy: str | None):
        """Fit one batch: ``per_copy`` names the λ that varies by copy (else one value)."""
        n = len(self.jobs)
        jobs = [j for _ in values for j in self.jobs]
        if per_copy:
            config = replace(config, **{per_copy: tuple(v for v in values for _ in range(n))})
        fused = method == "DIP-Fusion"
        fields = self.breast.prior(self.scans, jobs, self.sodium, self.breast.ALPHA,
                                   self.device) if fused else None
        config = replace(config, max_iter=self.budget)
        result, snapshots, trace = self.breast.run_dip(self.scans, jobs, self.recon, config,
                                                       fields, every=self.every,
                                                       device=self.device)
        wmv = np.array([self.breast.tables.psnr(self.scans[j.subject], im)
                        for j, im in zip(jobs, result.images, strict=True)])
        iterations = sorted(snapshots)
        scores = []
        for k, value in enumerate(values):
            curve = trace[:, k * n:(k + 1) * n].mean(axis=1)
            best = int(np.argmax(curve))
            detail = {"fixed": float(curve[best]), "iteration": iterations[best],
                      "ES-WMV": float(wmv[k * n:(k + 1) * n].mean()),
                      "wmv_stop": float(np.median(result.stop_iteration[k * n:(k + 1) * n]))}
            self.details[(method, parameter, value)] = detail
            self.traces += [{"method": method, "parameter": parameter, "value": value,
                             "iteration": it, "psnr": float(p)}
                            for it, p in zip(iterations, curve, strict=True)]
            scores.append(max(detail["fixed"], detail["ES-WMV"]))
        return scores

    def rule(self, method: str, parameter: str, value) -> tuple[dict, Tuning]:
        """The stopping rule chosen for a frozen candidate, and its categorical record."""
        d = self.details[(method, parameter, value)]
        choice = choose(method, "stopping rule",
                        {f"fixed {d['iteration']}": d["fixed"], "ES-WMV": d["ES-WMV"]})
        if choice.best == "ES-WMV":
            return {"rule": "ES-WMV", "median_stop": d["wmv_stop"]}, choice
        return {"rule": "fixed", "iteration": int(d["iteration"])}, choice


def tune_dip(scans, val: list[int], base, *, budget: int, every: int = 10,
             long_factor: int = 1, device: str = "cpu", progress: bool = True) -> dict:
    """Run the protocol of the module docstring; return the frozen settings and records.

    With ``long_factor > 1`` each method's frozen settings are also run for ``long_factor ×
    budget`` iterations on the same subjects (traces with parameter ``"beyond the budget"``):
    not part of any choice, only the record of what the budget cuts off.

    Returns
    -------
    dict
        ``"DIP"`` and ``"DIP-Fusion"`` (``lr``, ``lam_dtv``, ``lam_gc``, ``lam_gc_best``, the
        stopping rule), ``"tunings"`` (one row per candidate of every tuning, incl. the
        stopping-rule choices) and ``"traces"`` (mean validation PSNR along the iterations of
        every candidate), and ``"seconds"``.
    """
    from nacode.studies.breast import LAM_BIAS

    start = time.perf_counter()
    runner = _Runner(scans, val, base, budget, every, device)
    records: list[Tuning] = []
    fusion = replace(base, lam_bias=LAM_BIAS, fit_bias=True)

    def each_lr(method, config, parameter="learning rate"):
        def evaluate(values):
            return [runner.run(method, parameter, replace(config, learning_rate=v),
                               [v], None)[0] for v in values]
        return evaluate

    dip_lr = tune("DIP", "learning rate", each_lr("DIP", base), LR_GRID)
    dip_rule, dip_choice = runner.rule("DIP", "learning rate", dip_lr.best)
    lam1 = tune("DIP-Fusion", "λ1 (dTV)", lambda v: runner.run(
        "DIP-Fusion", "λ1 (dTV)", replace(fusion, learning_rate=dip_lr.best), v, "lam_dtv"),
        LAM1_GRID)
    fusion = replace(fusion, lam_dtv=lam1.best)
    fusion_lr = tune("DIP-Fusion", "learning rate", each_lr("DIP-Fusion", fusion), LR_GRID)
    fusion = replace(fusion, learning_rate=fusion_lr.best)
    lam2 = tune("DIP-Fusion", "λ2 (GC)", lambda v: runner.run(
        "DIP-Fusion", "λ2 (GC)", fusion, v, "lam_gc"), LAM2_GRID)
    without = runner.details[("DIP-Fusion", "learning rate", fusion_lr.best)]
    keep_gc = lam2.best_score > max(without["fixed"], without["ES-WMV"])
    records += [dip_lr, dip_choice, lam1, fusion_lr, lam2]
    where = ("learning rate", fusion_lr.best)
    if keep_gc:  # a second pass over the learning rate, now with the term switched on
        fusion = replace(fusion, lam_gc=lam2.best)
        second = tune("DIP-Fusion", "learning rate, with GC",
                      each_lr("DIP-Fusion", fusion, "learning rate, with GC"), LR_GRID)
        fusion = replace(fusion, learning_rate=second.best)
        records.append(second)
        where = ("learning rate, with GC", second.best)
    fusion_rule, fusion_choice = runner.rule("DIP-Fusion", *where)
    records.append(fusion_choice)
    if long_factor > 1:  # evidence only: where the frozen settings go past the budget
        runner.budget = long_factor * budget
        runner.run("DIP", "beyond the budget", replace(base, learning_rate=dip_lr.best),
                   [dip_lr.best], None)
        runner.run("DIP-Fusion", "beyond the budget", fusion, [lam1.best], None)
    rows = [{**row, "chosen": row["chosen"] and (keep_gc or row["parameter"] != "λ2 (GC)")}
            for record in records for row in record.rows()]
    rows.append({"method": "DIP-Fusion", "parameter": "λ2 (GC)", "value": 0.0,
                 "score": max(without["fixed"], without["ES-WMV"]), "chosen": not keep_gc})
    return {"DIP": {"lr": dip_lr.best, **dip_rule},
            "DIP-Fusion": {"lr": fusion.learning_rate, "lam_dtv": lam1.best,
                           "lam_gc": lam2.best if keep_gc else 0.0, "lam_gc_best": lam2.best,
                           **fusion_rule},
            "messages": [r.message() for r in records], "on_edge": [r.method + " " + r.parameter
                                                                   for r in records
                                                                   if r.on_edge],
            "tunings": rows, "traces": runner.traces,
            "seconds": time.perf_counter() - start}


def save(result: dict, settings_: dict, path: Path = ARTIFACT, *, device: str = "cpu") -> Path:
    """Write the tuning with its settings and provenance as JSON, atomically."""
    import torch

    from nacode.provenance import git_commit
    from nacode.results import write_json

    provenance = {**git_commit(path.resolve().parents[1]), "device": device,
                  "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  "wall_s": round(result["seconds"], 1)}
    return write_json(path, {"settings": settings_, "provenance": provenance, **result})


_FIX = "re-run `nacode tune breast` (or the full profile, which tunes live)"


def _read(path: Path) -> dict:
    """The artifact's JSON after its manifest sha256 check (one-line errors with the fix)."""
    import json

    from nacode.manifest import sha256_file
    from nacode.studies.calf import manifest_digests

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no committed DIP tuning; {_FIX}")
    expected = manifest_digests().get(path.resolve())
    if expected is not None and sha256_file(path) != expected:
        raise ValueError(f"{path}: sha256 differs from data_manifest.yaml (edited or corrupt); "
                         f"restore it from git or {_FIX}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable tuning JSON ({error}); {_FIX}") from None


def load(settings_: dict, path: Path = ARTIFACT) -> dict:
    """Read a committed tuning, checking its manifest sha256 and that it fits ``settings_``.

    Raises
    ------
    FileNotFoundError, ValueError
        With the file and the fix (``nacode tune breast``) in one line.
    """
    import json

    data = _read(path)
    given = json.loads(json.dumps(settings_))
    if data.get("settings") != given:
        changed = sorted(k for k in set(given) | set(data.get("settings", {}))
                         if given.get(k) != data.get("settings", {}).get(k))
        raise ValueError(f"{path}: tuned for other settings ({', '.join(changed)} differ); "
                         f"{_FIX}")
    return data


def base_config(params: dict):
    """The DIP settings of a breast profile (``dip_*``, ``window``, ``patience``, ``seed``)."""
    from nacode.denoise.dip import DIPConfig

    return DIPConfig(max_iter=params["dip_budget"], base=params["dip_base"],
                     levels=params["dip_levels"], window=params["window"],
                     patience=params["patience"], seed=params["seed"])


def validation_cohort(params: dict, *, progress: bool = False):
    """The profile's cohort (healthy subjects only) and its validation subjects."""
    from nacode.studies import breast_data as bd

    scans = bd.cohort(params["n_val"], 0, params["matrix"], seed=params["seed"],
                      progress=progress)
    return scans, list(range(params["n_val"]))


def run(profile: str = "quick", *, device: str = "cpu", out: Path | None = None,
        progress: bool = True) -> Path:
    """``nacode tune breast``: tune the DIP methods for a profile and write the artifact.

    Healthy subject ``i`` of the cohort has seed ``seed + i`` whatever the cohort's size, so
    the first ``n_val`` subjects built here are exactly the chapter's validation subjects.
    """
    from nacode.profiles import parameters

    params = parameters("breast", profile, device)
    scans, val = validation_cohort(params, progress=progress)
    base = base_config(params)
    result = tune_dip(scans, val, base, budget=params["dip_budget"], every=params["dip_every"],
                      long_factor=LONG_FACTOR[profile], device=device, progress=progress)
    return save(result, settings(params, base), out or ARTIFACT, device=device)


def frozen(path: Path = ARTIFACT) -> dict:
    """The committed DIP / DIP-Fusion choice (``{"DIP": …, "DIP-Fusion": …, "settings": …}``,
    the last the network and budget it was tuned with), sha256-checked, for what reuses the
    breast study's frozen settings (the benchmark, ``nacode recon --method dip-fusion``)."""
    data = _read(path)
    return {"DIP": data["DIP"], "DIP-Fusion": data["DIP-Fusion"], "settings": data["settings"]}
