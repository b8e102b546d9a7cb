"""The breast study: DIP-Fusion against DIP, variational TV/dTV and classical denoisers.

Used by ``book/breast.md``. Every (subject, R, coil combination) is one *copy* of a batched
reconstruction: all copies share the fully sampled trajectory, and a copy's dropped spokes get
zero density weight, so each method is one batched solve on any device
(:class:`~nacode.physics.toeplitz.SenseNormal` for the data term of every model-based method).

Methods: gridding; NLM and (optional) BM3D on the gridded image; CS-TV, dTV with the ¹H image
as prior and dTV with the fused ¹H–²³Na prior (:mod:`nacode.recon.variational`, run to their
convergence rule); DIP and DIP-Fusion (:mod:`nacode.denoise.dip`). The fused prior of dTV and
DIP-Fusion takes its sodium half from the CS-TV reconstruction of the same data, so noise is
not mistaken for edges, and η is scaled to the images' noise (:func:`~nacode.denoise.priors.
fuse`). Parameters are chosen by the shared protocol (:func:`nacode.evaluate.tuning.tune`) on
the healthy validation subjects only: the variational λ and the NLM strength here per R
(:func:`tune_classical`), the DIP methods in :mod:`nacode.studies.breast_tuning`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from nacode.evaluate.tuning import Tuning, log_grid, tune
from nacode.studies import breast_data as bd
from nacode.studies import breast_tables as tables

#: The fused prior's ¹H weight and the bias-field penalty of DIP-Fusion.
ALPHA = 0.5
LAM_BIAS = 0.01
VARIATIONAL = ("CS-TV", "dTV (1H)", "dTV (fused)")
#: Initial grids of the shared protocol (two decades each; extended past a winning edge).
LAMBDA_GRID = log_grid(10**-2.5, 10**-0.5, 2)
NLM_GRID = log_grid(0.1, 10.0, 2)


@dataclass(frozen=True)
class Job:
    """One copy of the batched fits: a subject at one acceleration and coil combination."""

    subject: int
    rate: int
    combine: str


def recons(scans, jobs) -> dict[Job, bd.Recon]:
    """Gridding and coil maps of every job."""
    return {job: bd.reconstruct(scans[job.subject], job.rate, job.combine) for job in jobs}


def batch_tensors(scans, jobs, recon: dict, device: str = "cpu"):
    """The batched inputs of the model-based fits on the full trajectory.

    Returns
    -------
    coord : ndarray (n_samples, 2)
    maps : Tensor (G, C, N, N) complex64
    weights : Tensor (G, n_samples) float32, zero on the spokes a copy did not acquire
    kspace : Tensor (G, C, n_samples) complex64, zero there too
    """
    import torch

    full = scans[jobs[0].subject].traj
    shape = full.times_ms.shape
    weights = np.zeros((len(jobs), *shape), np.float32)
    kspace = np.zeros((len(jobs), bd.N_COILS, *shape), np.complex64)
    for g, job in enumerate(jobs):
        weights[g, ::job.rate] = recon[job].weights
        kspace[g, :, ::job.rate] = recon[job].kspace
    maps = np.stack([recon[job].maps for job in jobs]).astype(np.complex64)
    as_t = {"device": device}
    return (full.coord.reshape(-1, 2), torch.as_tensor(maps, **as_t),
            torch.as_tensor(weights.reshape(len(jobs), -1), **as_t),
            torch.as_tensor(kspace.reshape(len(jobs), bd.N_COILS, -1), **as_t))


def data_term(scans, jobs, recon: dict, device: str = "cpu"):
    """The jobs' :class:`~nacode.physics.toeplitz.SenseNormal` (one batched data term)."""
    from nacode.physics.toeplitz import SenseNormal

    return SenseNormal(*batch_tensors(scans, jobs, recon, device))


def prior(scans, jobs, sodium: dict | None, alpha: float, device: str = "cpu"):
    """The fused prior of every job: its ¹H image and (α < 1) its denoised sodium image.

    ``sodium`` maps each job to the sodium image that enters the structure tensor (the CS-TV
    reconstruction in this study); with ``alpha = 1`` it is not used and may be None.
    """
    import torch

    from nacode.denoise.priors import fuse

    proton = torch.as_tensor(np.stack([scans[j.subject].proton for j in jobs]), device=device)
    if alpha >= 1.0:
        return fuse(proton, proton, alpha=1.0)
    na = np.stack([np.abs(sodium[j]) for j in jobs]).astype(np.float32)
    return fuse(proton, torch.as_tensor(na, device=device), alpha=alpha)


def variational(scans, jobs, recon: dict, lams, xi=None, *, max_iter: int = 2000,
                tol: float = 1e-4, device: str = "cpu"):
    """TV (``xi`` None) or dTV of every job with its own λ: magnitudes (G, N, N) and result."""
    from nacode.recon.variational import reconstruct

    result = reconstruct(*batch_tensors(scans, jobs, recon, device), lams, xi,
                         max_iter=max_iter, tol=tol)
    return np.abs(result.images).astype(np.float32), result


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


def _grid_scores(scans, jobs, recon, values, xi=None, keep=None, **solver) -> list[float]:
    """Mean validation PSNR of each λ in ``values``: one batched solve of every job × λ."""
    batch = [j for _ in values for j in jobs]
    fields = None if xi is None else xi.repeat(len(values), 1, 1, 1)
    images, _ = variational(scans, batch, recon, [v for v in values for _ in jobs], fields,
                            **solver)
    out = []
    for k, value in enumerate(values):
        part = images[k * len(jobs):(k + 1) * len(jobs)]
        if keep is not None:
            keep[value] = part
        out.append(float(np.mean([tables.psnr(scans[j.subject], im)
                                  for j, im in zip(jobs, part, strict=True)])))
    return out


def _nlm_scores(scans, jobs, recon, values) -> list[float]:
    return [float(np.mean([tables.psnr(scans[j.subject], nlm_image(recon[j].image, h))
                           for j in jobs])) for h in values]


def tune_classical(scans, val: list[int], *, rates=bd.RATES, max_iter: int = 2000,
                   tol: float = 1e-4, device: str = "cpu") -> dict[tuple[str, int], Tuning]:
    """The shared protocol for CS-TV, dTV (1H), dTV (fused) and NLM, per R.

    Candidates are scored by the mean PSNR of the validation subjects (adaptive combination);
    each variational candidate is run to its convergence rule, all of one grid in one batch.
    dTV (fused) takes the sodium half of its prior from CS-TV at the λ just chosen.
    """
    from functools import partial

    solver = {"max_iter": max_iter, "tol": tol, "device": device}
    chosen: dict[tuple[str, int], Tuning] = {}
    for rate in rates:
        jobs = [Job(s, rate, "adaptive") for s in val]
        recon = recons(scans, jobs)
        grid = partial(_grid_scores, scans, jobs, recon, **solver)
        cs_images: dict[float, np.ndarray] = {}
        cs = tune("CS-TV", "λ", partial(grid, keep=cs_images), LAMBDA_GRID)
        best_cs = dict(zip(jobs, cs_images[cs.best], strict=True))
        chosen[("CS-TV", rate)] = cs
        for method, xi in (("dTV (1H)", prior(scans, jobs, None, 1.0, device).xi),
                           ("dTV (fused)", prior(scans, jobs, best_cs, ALPHA, device).xi)):
            chosen[(method, rate)] = tune(method, "λ", partial(grid, xi=xi), LAMBDA_GRID)
        chosen[("NLM", rate)] = tune("NLM", "h", partial(_nlm_scores, scans, jobs, recon),
                                     NLM_GRID)
    return chosen


def fusion_config(base, dip: dict, **changes):
    """``base`` with DIP-Fusion's tuned settings (``dip`` from the tuning) and any changes."""
    settings = {"learning_rate": dip["lr"], "lam_dtv": dip["lam_dtv"], "lam_gc": dip["lam_gc"],
                "lam_bias": LAM_BIAS, "fit_bias": True}
    return replace(base, **{**settings, **changes})


def run_dip(scans, jobs, recon, config, prior_fields, *, every: int = 10,
            device: str = "cpu"):
    """One batched DIP fit traced against the truth (for the oracle peak only).

    Returns the :class:`~nacode.denoise.dip.DIPResult`, the snapshots ``{iteration: (G, N,
    N)}`` every ``every`` iterations, and the PSNR trace ``(n_snapshots, G)``.
    """
    from nacode.denoise.dip import fit

    snapshots, trace = {}, []

    def record(iteration, images):
        snapshots[iteration] = images
        trace.append([tables.psnr(scans[j.subject], im) for j, im in zip(jobs, images,
                                                                            strict=True)])

    result = fit(data_term(scans, jobs, recon, device), config, prior_fields, callback=record,
                 every=every, run_to_end=True)
    return result, snapshots, np.array(trace)


def rule_output(rule: dict, result, snapshots) -> tuple[np.ndarray, np.ndarray]:
    """Each copy's output and iteration under a frozen stopping rule.

    ``rule`` is ``{"rule": "fixed", "iteration": T}`` (the snapshot at T) or
    ``{"rule": "ES-WMV"}`` (the fit's kept output).
    """
    if rule["rule"] == "fixed":
        images = snapshots[rule["iteration"]]
        return images, np.full(images.shape[0], rule["iteration"])
    return result.images, result.stop_iteration


def evaluate(scans, test: list[int], base, classical: dict, dip: dict, *, rates=bd.RATES,
             combines=bd.COMBINES, model_combines=bd.COMBINES, dip_combines=("adaptive",),
             patient_rates=(4,),
             ablation_subjects: list[int] | None = None, max_iter: int = 2000,
             tol: float = 1e-4, every: int = 10, device: str = "cpu", progress: bool = True):
    """Every method on the test jobs with the frozen parameters, and the ablation at R = 4.

    ``classical`` is :func:`tune_classical`'s result, ``dip`` the frozen DIP settings of
    :func:`nacode.studies.breast_tuning.tune_dip` (``dip["DIP"]``, ``dip["DIP-Fusion"]``:
    learning rate, λs, stopping rule). Healthy test subjects are reconstructed at every R,
    patients at ``patient_rates``; the model-based methods after ``model_combines`` only (the
    variational ones) and ``dip_combines`` (the DIPs, a subset of it); the ablation
    (R = 4, adaptive) on ``ablation_subjects`` (default: all test subjects).

    Returns
    -------
    outputs : dict
        ``(Job, method) → image`` (magnitude, arbitrary scale).
    extra : dict
        ``(Job, method) → {"stop_iteration", "oracle_psnr", "oracle_iteration"}`` of the DIP
        fits; ``"seconds"`` → seconds per slice per method; ``"variational"`` → iterations and
        convergence of the variational solves; ``"priors"`` → the fused and ¹H priors.
    """
    import torch
    from tqdm.auto import tqdm

    def rates_of(subject):
        return rates if scans[subject].cohort == "healthy" else patient_rates

    jobs = [Job(s, r, c) for s in test for r in rates_of(s) for c in combines]
    recon = recons(scans, jobs)
    outputs, extra, seconds = {}, {}, {}

    def timed(name, count, start):
        seconds[name] = (time.perf_counter() - start) / count

    start = time.perf_counter()
    for job in jobs:
        outputs[(job, "gridding")] = recon[job].image
    for method, apply in (("NLM", lambda j: nlm_image(recon[j].image,
                                                      classical[("NLM", j.rate)].best)),
                          ("BM3D", lambda j: bm3d_image(recon[j].image))):
        start = time.perf_counter()
        images = {j: apply(j) for j in jobs}
        if all(im is not None for im in images.values()):
            outputs.update({(j, method): im for j, im in images.items()})
            timed(method, len(jobs), start)
    model = [j for j in jobs if j.combine in model_combines]
    lams = {m: [classical[(m, j.rate)].best for j in model] for m in VARIATIONAL}
    start = time.perf_counter()
    cs, cs_result = variational(scans, model, recon, lams["CS-TV"], max_iter=max_iter,
                                tol=tol, device=device)
    timed("CS-TV", len(model), start)
    cs_of = dict(zip(model, cs, strict=True))
    priors = {"dTV (1H)": prior(scans, model, None, 1.0, device),
              "dTV (fused)": prior(scans, model, cs_of, ALPHA, device)}
    solves = {"CS-TV": cs_result}
    for method, fields in priors.items():
        start = time.perf_counter()
        images, solves[method] = variational(scans, model, recon, lams[method], fields.xi,
                                             max_iter=max_iter, tol=tol, device=device)
        timed(method, len(model), start)
        outputs.update({(j, method): im for j, im in zip(model, images, strict=True)})
    outputs.update({(j, "CS-TV"): im for j, im in cs_of.items()})

    dip_jobs = [j for j in model if j.combine in dip_combines]
    ablation_jobs = [Job(s, 4, "adaptive") for s in (ablation_subjects or test)]
    fused = dip["DIP-Fusion"]
    # DIP-Fusion and its ablation variants are one batched fit: λs, the bias switch and the
    # prior (α) differ per copy; the learning rate is the tuned one for all of them
    members = [("DIP-Fusion", j, {}, ALPHA) for j in dip_jobs]
    for name, changes in tables.ablations(fused).items():
        alpha = changes.pop("alpha", ALPHA)
        members += [(name, j, changes, alpha) for j in ablation_jobs]
    per_copy = [fusion_config(base, fused, **changes) for _, _, changes, _ in members]
    merged = replace(per_copy[0], **{k: tuple(getattr(c, k) for c in per_copy)
                                     for k in ("lam_dtv", "lam_gc", "lam_bias", "fit_bias")})
    fusion_jobs = [j for _, j, _, _ in members]
    by_alpha = {a: prior(scans, fusion_jobs, cs_of, a, device)
                for a in {a for *_, a in members}}
    fields = by_alpha[ALPHA]
    fields = type(fields)(xi=torch.stack([by_alpha[a].xi[g] for g, (*_, a) in
                                          enumerate(members)]),
                          strength=torch.stack([by_alpha[a].strength[g] for g, (*_, a) in
                                                enumerate(members)]))
    fits = {"DIP": ([("DIP", j) for j in dip_jobs], replace(base, learning_rate=dip["DIP"]["lr"]),
                    None, dip["DIP"]),
            "DIP-Fusion": ([(name, j) for name, j, _, _ in members], merged, fields, fused)}
    for labelled, config, fields, frozen in tqdm(fits.values(), desc="DIP fits",
                                                 disable=not progress):
        subset = [j for _, j in labelled]
        start = time.perf_counter()
        result, snapshots, trace = run_dip(scans, subset, recon, config, fields, every=every,
                                           device=device)
        images, stops = rule_output(frozen, result, snapshots)
        iterations = sorted(snapshots)
        for g, (method, job) in enumerate(labelled):
            outputs[(job, method)] = images[g]
            # the oracle: the best iterate whose PSNR is known, the traced snapshots (every
            # `every` iterations) and the stopping rule's own output (any iteration)
            best, kept = int(np.argmax(trace[:, g])), tables.psnr(scans[job.subject], images[g])
            oracle = ((kept, int(stops[g])) if kept > trace[best, g]
                      else (float(trace[best, g]), iterations[best]))
            extra[(job, method)] = {"stop_iteration": int(stops[g]),
                                    "oracle_psnr": float(oracle[0]),
                                    "oracle_iteration": oracle[1]}
        for method in {m for m, _ in labelled}:
            timed(method, len(subset), start)
    extra["seconds"] = seconds
    extra["variational"] = {m: {"iterations": r.iterations, "converged": r.converged}
                            for m, r in solves.items()}
    extra["priors"] = {**priors, "jobs": model}
    return outputs, extra


def flat_mask(scan) -> np.ndarray:
    """Acquisition pixels inside one tissue (≥ 99 % one label, neighbours too): no true edge."""
    from scipy import ndimage

    from nacode.physics.acquire import downsample

    labels = scan.subject.labels
    purity = np.max([downsample((labels == v).astype(float), scan.truth.shape)
                     for v in np.unique(labels)], axis=0)
    return ndimage.binary_erosion((purity >= 0.99) & scan.body)


def prior_checks(scans, subjects: list[int], *, rate: int = 4, device: str = "cpu"):
    """Do the priors see noise as edges, and does gradient consistency prefer the truth?

    For each subject at R = ``rate`` (adaptive): the median ``|ξ|`` in flat regions
    (:func:`flat_mask`) of the ¹H-only prior, of the fused prior as built here (CS-TV sodium,
    η scaled to the noise) and of the fused prior as the study first built it (gridded sodium,
    η = 0.05); and the gradient-consistency term of the truth and of the gridded image under
    the fused prior (lower is preferred).
    """
    import pandas as pd
    import torch

    from nacode.denoise.priors import fuse, gradient_consistency

    jobs = [Job(s, rate, "adaptive") for s in subjects]
    recon = recons(scans, jobs)
    cs, _ = variational(scans, jobs, recon, 0.01, device=device)
    built = {"1H only": prior(scans, jobs, None, 1.0, device),
             "fused (CS-TV sodium, η from the noise)": prior(
                 scans, jobs, dict(zip(jobs, cs, strict=True)), ALPHA, device)}
    proton = torch.as_tensor(np.stack([scans[j.subject].proton for j in jobs]))
    grid = torch.as_tensor(np.stack([recon[j].image for j in jobs]))
    built["fused (gridded sodium, η = 0.05)"] = fuse(proton, grid, alpha=ALPHA, eta=0.05)
    rows = []
    for g, job in enumerate(jobs):
        scan, flat = scans[job.subject], flat_mask(scans[job.subject])
        row = {"subject": job.subject, "R": rate}
        for name, fields in built.items():
            size = torch.linalg.vector_norm(fields.xi[g], dim=0).cpu().numpy()
            row[f"|xi| flat, {name}"] = float(np.median(size[flat]))
        xi = built["fused (CS-TV sodium, η from the noise)"].xi[g].cpu()
        for name, image in (("truth", scan.truth), ("gridding", recon[job].image)):
            x = torch.as_tensor(tables.ls_scale(scan.truth, image, scan.body))
            row[f"GC {name}"] = float(gradient_consistency(x, xi))
        rows.append(row)
    return pd.DataFrame(rows), built, jobs
