"""The breast study: DIP-Fusion against DIP, CS-TV and classical denoisers on virtual breasts.

Used by ``book/breast.md``. Every (subject, R, coil combination) of the test subjects is one
copy of a batched deep image prior (:func:`nacode.denoise.dip.fit`): all copies share the fully
sampled trajectory's NUFFT, and a copy's dropped spokes get zero weight, so the whole study is
one fit per method on any device. The regularisation weights of DIP-Fusion, the CS-TV λ and the
NLM strength are chosen on healthy validation subjects at R = 4 and then frozen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from nacode.studies import breast_data as bd

#: DIP-Fusion variants of the ablation: which term each one removes.
ABLATIONS = {"no dTV": {"lam_dtv": 0.0}, "no gradient consistency": {"lam_gc": 0.0},
             "no bias field": {"fit_bias": False}, "1H-only prior": {"alpha": 1.0}}
CS_LAMBDAS = (0.003, 0.01, 0.03)
NLM_H = (0.6, 0.9, 1.2, 1.6)
#: The DIP-Fusion λ grid searched on the validation subjects: (λ1 dTV, λ2 GC).
FUSION_GRID = ((0.03, 0.01), (0.1, 0.01), (0.3, 0.01))
LAM_BIAS = 0.01
ALPHA = 0.5


@dataclass(frozen=True)
class Job:
    """One copy of the batched fits: a subject at one acceleration and coil combination."""

    subject: int
    rate: int
    combine: str


def ls_scale(truth: np.ndarray, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` times the scalar that best fits it to ``truth`` inside ``mask`` (least squares).

    Every method's output has its own arbitrary scale (coil normalisation, network output);
    the fit removes only that one number before the metrics compare shapes and contrasts.
    """
    image = np.asarray(image, dtype=np.float64)
    denominator = float((image[mask] ** 2).sum())
    return image * (float((truth[mask] * image[mask]).sum()) / denominator if denominator
                    else 0.0)


def scores(scan: bd.BreastScan, image: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM, MSE and FSIM against the truth, Laplacian focus, and LPIPS if available."""
    from nacode.evaluate import metrics

    truth = scan.truth.astype(np.float64)
    fitted = ls_scale(truth, image, scan.body)
    peak = float(truth.max())
    lpips = metrics.lpips_distance(truth / peak, np.clip(fitted / peak, 0, 1))
    return {"psnr": metrics.psnr(truth, fitted, peak), "ssim": metrics.ssim(truth, fitted, peak),
            "mse": metrics.mse(truth, fitted), "fsim": metrics.fsim(truth, fitted, peak),
            "focus": metrics.laplacian_focus(fitted / peak),
            "lpips": np.nan if lpips is None else lpips}


def lesion_rows(scan: bd.BreastScan, image: np.ndarray) -> list[dict]:
    """Tumour-to-fibroglandular signal ratio of every lesion, measured and true (TSC ratio)."""
    fgt = float(np.mean(image[scan.rois["fibroglandular"]]))
    rows = []
    for lesion in scan.lesions:
        measured = float(np.mean(image[scan.rois[lesion["name"]]])) / fgt
        rows.append({"lesion": lesion["name"], "kind": lesion["kind"],
                     "true_ratio": lesion["tsc_ratio"], "measured_ratio": measured,
                     "relative_error": (measured - lesion["tsc_ratio"]) / lesion["tsc_ratio"]})
    return rows


def recons(scans, jobs) -> dict[Job, bd.Recon]:
    """Gridding and coil maps of every job."""
    return {job: bd.reconstruct(scans[job.subject], job.rate, job.combine) for job in jobs}


def batch_tensors(scans, jobs, recon: dict, device: str = "cpu"):
    """The batched inputs of :func:`nacode.denoise.dip.fit` on the full trajectory.

    Returns
    -------
    nufft : TorchNufft
    maps : Tensor (G, C, N, N) complex64
    weights : Tensor (G, n_samples) float32, zero on the spokes a copy did not acquire
    kspace : Tensor (G, C, n_samples) complex64, zero there too
    """
    import torch

    from nacode.physics.torch_nufft import TorchNufft

    full = scans[jobs[0].subject].traj
    nufft = TorchNufft.from_coord(full.matrix, full.coord.reshape(-1, 2), device=device)
    shape = full.times_ms.shape
    weights = np.zeros((len(jobs), *shape), np.float32)
    kspace = np.zeros((len(jobs), bd.N_COILS, *shape), np.complex64)
    for g, job in enumerate(jobs):
        weights[g, ::job.rate] = recon[job].weights
        kspace[g, :, ::job.rate] = recon[job].kspace
    maps = np.stack([recon[job].maps for job in jobs]).astype(np.complex64)
    as_t = {"device": device}
    return (nufft, torch.as_tensor(maps, **as_t),
            torch.as_tensor(weights.reshape(len(jobs), -1), **as_t),
            torch.as_tensor(kspace.reshape(len(jobs), bd.N_COILS, -1), **as_t))


def fused_prior(scans, jobs, recon: dict, alpha: float, device: str = "cpu"):
    """Structure-tensor fusion of each job's 1H image and its gridded 23Na image."""
    import torch

    from nacode.denoise.priors import fuse

    proton = torch.as_tensor(np.stack([scans[j.subject].proton for j in jobs]), device=device)
    sodium = torch.as_tensor(np.stack([recon[j].image for j in jobs]), device=device)
    return fuse(proton, sodium, alpha=alpha)


def run_dip(scans, jobs, recon: dict, config, *, alpha: float | None = None,
            device: str = "cpu"):
    """Fit DIP (``alpha`` None) or DIP-Fusion (prior fused with ``alpha``) for every job."""
    from nacode.denoise.dip import fit

    nufft, maps, weights, kspace = batch_tensors(scans, jobs, recon, device)
    prior = None if alpha is None else fused_prior(scans, jobs, recon, alpha, device)
    return fit(nufft, maps, weights, kspace, config, prior)


def fusion_config(base, lam_dtv: float, lam_gc: float, **changes):
    """``base`` (a :class:`~nacode.denoise.dip.DIPConfig`) with DIP-Fusion's terms switched on."""
    return replace(base, lam_dtv=lam_dtv, lam_gc=lam_gc, lam_bias=LAM_BIAS, fit_bias=True,
                   **changes)


def tune(scans, val: list[int], base, *, cs_iter: int, device: str = "cpu") -> dict:
    """Choose CS-TV λ, NLM h and DIP-Fusion (λ1, λ2) on the validation subjects at R = 4.

    Returns a dict with the chosen values and the mean validation PSNR of every candidate.
    """
    from nacode.recon.cs import tv_recon_multicoil

    jobs = [Job(s, 4, "adaptive") for s in val]
    recon = recons(scans, jobs)

    def mean_psnr(images):
        return float(np.mean([scores(scans[j.subject], im)["psnr"]
                              for j, im in zip(jobs, images, strict=True)]))

    cs = {lam: mean_psnr([np.abs(tv_recon_multicoil(recon[j].kspace, recon[j].traj,
                                                    recon[j].weights, recon[j].maps, lam,
                                                    max_iter=cs_iter)) for j in jobs])
          for lam in CS_LAMBDAS}
    nl = {h: mean_psnr([nlm_image(recon[j].image, h) for j in jobs]) for h in NLM_H}
    fusion = {lams: mean_psnr(run_dip(scans, jobs, recon, fusion_config(base, *lams),
                                      alpha=ALPHA, device=device).images)
              for lams in FUSION_GRID}
    return {"cs_lambda": max(cs, key=cs.get), "nlm_h": max(nl, key=nl.get),
            "fusion": max(fusion, key=fusion.get), "cs_scores": cs, "nlm_scores": nl,
            "fusion_scores": fusion}


def nlm_image(image: np.ndarray, h: float) -> np.ndarray:
    """2D NLM of a magnitude image with ``h`` in units of its estimated noise SD."""
    from skimage.restoration import estimate_sigma

    from nacode.denoise import classic

    sigma = float(estimate_sigma(image))
    return classic.nlm(image[None], h * sigma)[0]


def bm3d_image(image: np.ndarray) -> np.ndarray | None:
    """BM3D with its own noise estimate, or None when the optional ``bm3d`` is not installed."""
    try:
        from bm3d import bm3d
    except ImportError:
        return None
    from skimage.restoration import estimate_sigma

    return np.asarray(bm3d(image, float(estimate_sigma(image))), dtype=np.float32)


def classical(scans, jobs, recon: dict, tuned: dict, *, cs_iter: int):
    """Gridding, CS-TV, NLM and (optional) BM3D outputs and seconds per slice per job."""
    from nacode.recon.cs import tv_recon_multicoil

    outputs, seconds = {}, {}
    for job in jobs:
        r = recon[job]
        methods = {"gridding": lambda r=r: r.image,
                   "CS-TV": lambda r=r: np.abs(tv_recon_multicoil(
                       r.kspace, r.traj, r.weights, r.maps, tuned["cs_lambda"],
                       max_iter=cs_iter)),
                   "NLM": lambda r=r: nlm_image(r.image, tuned["nlm_h"]),
                   "BM3D": lambda r=r: bm3d_image(r.image)}
        for method, apply in methods.items():
            start = time.perf_counter()
            out = apply()
            if out is not None:
                outputs[(job, method)] = out
                seconds.setdefault(method, []).append(time.perf_counter() - start)
    return outputs, {m: float(np.median(s)) for m, s in seconds.items()}


def evaluate(scans, test: list[int], base, tuned: dict, *, rates=bd.RATES,
             combines=bd.COMBINES, dip_combines=bd.COMBINES,
             ablation_subjects: list[int] | None = None, cs_iter: int = 60,
             device: str = "cpu", progress: bool = True):
    """Every method on every test job, the ablation at R = 4, and the lesion contrasts.

    ``dip_combines`` limits the two DIP methods to some coil combinations and
    ``ablation_subjects`` the ablation to some test subjects (all by default) — the quick
    profile's economies on CPU.

    Returns
    -------
    metrics : pandas.DataFrame
        ``subject, cohort, R, combine, method`` and one column per metric.
    ablation : pandas.DataFrame
        The same for DIP-Fusion and its variants (R = 4, adaptive combination).
    lesions : pandas.DataFrame
        ``subject, lesion, kind, R, combine, method, true_ratio, measured_ratio,
        relative_error`` for every patient's lesions (``method`` also ``noiseless truth``).
    timing : dict
        Seconds per slice of each method (DIP methods: batched fit time / copies).
    outputs : dict
        ``(Job, method) → image`` for figures.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    jobs = [Job(s, r, c) for s in test for r in rates for c in combines]
    recon = recons(scans, jobs)
    outputs, timing = classical(scans, jobs, recon, tuned, cs_iter=cs_iter)
    lam_dtv, lam_gc = tuned["fusion"]
    fits = {"DIP": (base, None), "DIP-Fusion": (fusion_config(base, lam_dtv, lam_gc), ALPHA)}
    ablation_jobs = [Job(s, 4, "adaptive") for s in (ablation_subjects or test)]
    dip_jobs = [job for job in jobs if job.combine in dip_combines]
    for name, changes in ABLATIONS.items():
        alpha = changes.get("alpha", ALPHA)
        config = replace(fusion_config(base, lam_dtv, lam_gc),
                         **{k: v for k, v in changes.items() if k != "alpha"})
        fits[name] = (config, alpha)
    stops = {}
    for name, (config, alpha) in tqdm(fits.items(), desc="DIP fits", disable=not progress):
        subset = dip_jobs if name in ("DIP", "DIP-Fusion") else ablation_jobs
        result = run_dip(scans, subset, recon, config, alpha=alpha, device=device)
        timing[name] = result.seconds / len(subset)
        for g, job in enumerate(subset):
            outputs[(job, name)] = result.images[g]
            stops[(job, name)] = int(result.stop_iteration[g])

    rows, lesion_rows_ = [], []
    for (job, method), image in outputs.items():
        scan = scans[job.subject]
        key = {"subject": job.subject, "cohort": scan.cohort, "R": job.rate,
               "combine": job.combine, "method": method}
        rows.append({**key, **scores(scan, image), "stop_iteration": stops.get((job, method))})
        lesion_rows_ += [{**key, **row} for row in lesion_rows(scan, image)]
    for s in test:  # the floor: the noiseless truth image itself at this matrix
        key = {"subject": s, "R": 0, "combine": "none", "method": "noiseless truth"}
        lesion_rows_ += [{**key, **row} for row in lesion_rows(scans[s], scans[s].truth)]
    table = pd.DataFrame(rows)
    is_ablation = table.method.isin(["DIP-Fusion", *ABLATIONS])
    ablation = table[is_ablation & (table["R"] == 4) & (table["combine"] == "adaptive")]
    metrics = table[~table.method.isin(list(ABLATIONS))]
    return (metrics.reset_index(drop=True), ablation.reset_index(drop=True),
            pd.DataFrame(lesion_rows_), timing, outputs)


def wilcoxon_table(metrics, *, reference: str = "DIP-Fusion", metric: str = "psnr",
                   cohort: str = "healthy"):
    """Paired Wilcoxon signed-rank tests of ``reference`` against every other method.

    One test per (R, combination, method) over the subjects of ``cohort``, Bonferroni-corrected
    over all tests in the table (pingouin).
    """
    import pandas as pd
    import pingouin as pg

    data = metrics[metrics.cohort == cohort]
    rows = []
    for (rate, combine), group in data.groupby(["R", "combine"]):
        wide = group.pivot(index="subject", columns="method", values=metric)
        if reference not in wide.columns:
            continue
        for method in wide.columns.drop(reference):
            test = pg.wilcoxon(wide[reference], wide[method])
            rows.append({"R": rate, "combine": combine, "versus": method,
                         "median_difference": float((wide[reference] - wide[method]).median()),
                         "p": float(test["p_val"].iloc[0])})
    table = pd.DataFrame(rows)
    if len(table):
        table["p_bonferroni"] = pg.multicomp(table["p"].to_numpy(), method="bonf")[1]
    return table


def target_table(metrics, *, cohort: str = "healthy"):
    """Per (R, combination): median PSNR and SSIM of DIP-Fusion, DIP and CS-TV, and whether
    DIP-Fusion is above both on both (the issue's target)."""
    import pandas as pd

    data = metrics[(metrics.cohort == cohort)
                   & metrics.method.isin(["DIP-Fusion", "DIP", "CS-TV"])]
    medians = data.groupby(["R", "combine", "method"])[["psnr", "ssim"]].median()
    rows = []
    for (rate, combine), group in medians.groupby(level=["R", "combine"]):
        m = group.droplevel(["R", "combine"])
        if not {"DIP-Fusion", "DIP", "CS-TV"} <= set(m.index):
            continue  # the DIP methods were not run after this combination
        beats = all(m.loc["DIP-Fusion", k] > m.loc[o, k] for k in ("psnr", "ssim")
                    for o in ("DIP", "CS-TV"))
        rows.append({"R": rate, "combine": combine,
                     **{f"{k}_{o}": m.loc[o, k] for o in ("DIP-Fusion", "DIP", "CS-TV")
                        for k in ("psnr", "ssim")}, "beats_both": beats})
    return pd.DataFrame(rows)


def convergence(scans, subjects: list[int], base, tuned: dict, *, rate: int = 4,
                iterations: int = 600, every: int = 25, cs_iter: int = 60,
                device: str = "cpu"):
    """PSNR against the truth along the DIP and DIP-Fusion iterations (no early stop).

    Runs both fits for ``iterations`` on ``subjects`` at R = ``rate`` (adaptive combination)
    and records the PSNR of every copy every ``every`` iterations, with CS-TV's PSNR on the
    same data as a reference line. The truth is only read by the recording, never by the fit.

    Returns
    -------
    pandas.DataFrame
        ``subject, method, iteration, psnr`` (``iteration`` 0 for CS-TV).
    """
    import pandas as pd

    from nacode.denoise.dip import fit
    from nacode.recon.cs import tv_recon_multicoil

    jobs = [Job(s, rate, "adaptive") for s in subjects]
    recon = recons(scans, jobs)
    rows = []
    for job in jobs:
        r = recon[job]
        cs = np.abs(tv_recon_multicoil(r.kspace, r.traj, r.weights, r.maps, tuned["cs_lambda"],
                                       max_iter=cs_iter))
        rows.append({"subject": job.subject, "method": "CS-TV", "iteration": 0,
                     "psnr": scores(scans[job.subject], cs)["psnr"]})
    lam_dtv, lam_gc = tuned["fusion"]
    long = replace(base, max_iter=iterations, patience=10**9)
    nufft, maps, weights, kspace = batch_tensors(scans, jobs, recon, device)
    for name, config, alpha in (("DIP", long, None),
                                ("DIP-Fusion", fusion_config(long, lam_dtv, lam_gc), ALPHA)):
        prior = None if alpha is None else fused_prior(scans, jobs, recon, alpha, device)

        def record(iteration, images, name=name):
            for job, image in zip(jobs, images, strict=True):
                rows.append({"subject": job.subject, "method": name, "iteration": iteration,
                             "psnr": metrics_psnr(scans[job.subject], image)})

        fit(nufft, maps, weights, kspace, config, prior, callback=record, every=every)
    return pd.DataFrame(rows)


def metrics_psnr(scan: bd.BreastScan, image: np.ndarray) -> float:
    """PSNR against the truth after the least-squares scale (the first of :func:`scores`)."""
    from nacode.evaluate.metrics import psnr

    truth = scan.truth.astype(np.float64)
    return psnr(truth, ls_scale(truth, image, scan.body), float(truth.max()))
