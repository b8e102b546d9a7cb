"""Cross-study benchmark: every denoiser on every study's virtual subjects, same noise levels.

Used by ``book/benchmark.md``. The cases, noise levels, units and scores are those of
:mod:`nacode.studies.benchmark_data`. Every method maps a noisy case to an image in mM:
gridding, Gaussian smoothing, NLM, BM3D (optional), CS-TV, dTV (1H), the calf CNN, the brain DAE
(slice-wise), DIP and DIP-Fusion. Each method's one parameter is tuned per study and noise
level on a separate validation case (:func:`tune`); the DIPs stop themselves and DIP-Fusion
keeps the breast study's weights. :func:`run` does it all; :func:`summary`, :func:`ranking`,
:func:`gains` and :func:`findings` make the chapter's tables and sentences.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from nacode.evaluate.tuning import Tuning, choose, log_grid
from nacode.evaluate.tuning import tune as tune_protocol
from nacode.studies.benchmark_data import STUDIES, Noisy, acquire_noisy, cases, score

METHODS = ("gridding", "Gaussian", "NLM", "BM3D", "CS-TV", "dTV (1H)", "calf CNN", "brain DAE",
           "DIP", "DIP-Fusion")
#: First grids of the shared tuning protocol (:func:`tune`): two decades each, extended past a
#: winning edge and refined around the winner
GAUSSIAN_SIGMAS = log_grid(0.1, 10.0)  # pixels
NLM_H = log_grid(0.1, 10.0)  # in units of the estimated noise SD
CS_LAMBDAS = log_grid(0.001, 0.1)  # relative to an image whose gridding peaks at 1
DTV_LAMBDAS = log_grid(0.001, 0.1)
REFINE = 2  # refinement rounds of nacode.evaluate.tuning.tune

def _variational(noisy: Noisy, lamda, max_iter: int, prior: bool) -> np.ndarray:
    """CS-TV (``prior`` False) or dTV with the case's 1H image as prior, run to convergence
    (:func:`nacode.recon.variational.reconstruct`, at most ``max_iter`` iterations).

    ``lamda`` is one λ (returns an (N, N) image in mM) or a list of them, reconstructed as one
    batch (returns (len(lamda), N, N)).
    """
    import torch

    from nacode.denoise.priors import fuse
    from nacode.recon.variational import reconstruct

    r = noisy.recon
    lamdas = np.atleast_1d(np.asarray(lamda, dtype=np.float64))
    copies = lamdas.size
    xi = None
    if prior:
        proton = torch.as_tensor(noisy.case.proton[None])
        xi = fuse(proton, proton, alpha=1.0).xi
    kspace = torch.as_tensor(r.kspace.reshape(1, r.kspace.shape[0], -1))
    result = reconstruct(r.traj.coord.reshape(-1, 2),
                         torch.as_tensor(r.maps[None]).expand(copies, *r.maps.shape),
                         torch.as_tensor(r.weights.reshape(-1)),
                         kspace.expand(copies, *kspace.shape[1:]), lamdas.tolist(), xi,
                         max_iter=max_iter)
    images = np.abs(result.images) * noisy.case.factor
    return images if np.ndim(lamda) else images[0]


def _cnn(noisy: Noisy, model) -> np.ndarray:
    from nacode.denoise.apply import denoise_stack

    return denoise_stack(noisy.image_mm[None], model)[0]


def _dae(noisy: Noisy, model) -> np.ndarray:
    """The brain DAE slice-wise: the slice repeated through its 5-voxel patch depth."""
    from nacode.denoise.dae import denoise_volume
    from nacode.studies.brain_data import NORM_MM

    volume = np.repeat(noisy.image_mm[:, :, None] / NORM_MM, 5, axis=2)
    mask = np.zeros(volume.shape, bool)
    mask[:, :, 2] = noisy.case.mask
    return denoise_volume(model, volume, mask)[:, :, 2].astype(np.float64) * NORM_MM


def _bm3d(noisy: Noisy) -> np.ndarray | None:
    from nacode.studies.breast import bm3d_image

    return bm3d_image(noisy.image_mm)


def image_methods(models: dict, tuned: dict, cs_iter: int) -> dict:
    """Each non-DIP method as ``f(noisy) -> image in mM`` (or None when unavailable)."""
    from nacode.denoise import classic
    from nacode.studies.breast import nlm_image

    return {
        "gridding": lambda n: n.image_mm,
        "Gaussian": lambda n: classic.gaussian(n.image_mm[None], tuned["Gaussian"])[0],
        "NLM": lambda n: nlm_image(n.image_mm, tuned["NLM"]),
        "BM3D": _bm3d,
        "CS-TV": lambda n: _variational(n, tuned["CS-TV"], cs_iter, prior=False),
        "dTV (1H)": lambda n: _variational(n, tuned["dTV (1H)"], cs_iter, prior=True),
        "calf CNN": lambda n: _cnn(n, models["calf"][tuned["calf CNN"]]),
        "brain DAE": lambda n: _dae(n, models["brain"]),
    }


def tune(val: Noisy, models: dict, cs_iter: int) -> tuple[dict, list[Tuning]]:
    """Each method's parameter on the validation case at this level, by the shared protocol.

    Gaussian σ, NLM h and the CS-TV and dTV λ go through
    :func:`nacode.evaluate.tuning.tune` (two decades, extended past a winning edge, refined
    :data:`REFINE` times around the winner; CS-TV and dTV batch their candidates, each run
    to its convergence rule); the calf CNN's NSA model is a categorical choice
    (:func:`~nacode.evaluate.tuning.choose`). The score is the validation PSNR.

    Returns the choice per method and the :class:`~nacode.evaluate.tuning.Tuning` of each.
    """
    def psnrs(images) -> list[float]:
        return [score(val.case, image)["psnr"] for image in images]

    def filtered(method: str):
        def evaluate(values: list[float]) -> list[float]:
            return psnrs(image_methods(models, {method: v}, cs_iter)[method](val)
                         for v in values)
        return evaluate

    def variational(prior: bool):
        return lambda values: psnrs(_variational(val, values, cs_iter, prior=prior))

    tunings = [
        tune_protocol("Gaussian", "σ (pixels)", filtered("Gaussian"), GAUSSIAN_SIGMAS,
                      refine=REFINE),
        tune_protocol("NLM", "h (noise SD)", filtered("NLM"), NLM_H, refine=REFINE),
        tune_protocol("CS-TV", "λ", variational(False), CS_LAMBDAS, refine=REFINE),
        tune_protocol("dTV (1H)", "λ", variational(True), DTV_LAMBDAS, refine=REFINE),
        choose("calf CNN", "NSA model", {
            nsa: psnrs([image_methods(models, {"calf CNN": nsa}, cs_iter)["calf CNN"](val)])[0]
            for nsa in sorted(models["calf"])}),
    ]
    return {t.method: t.best for t in tunings}, tunings


def run_images(noisy: list[Noisy], models: dict, tuned: dict, cs_iter: int
               ) -> tuple[list[dict], list[dict]]:
    """Apply every non-DIP method to every noisy case.

    Returns one row per (case, level, method) and, per item of ``noisy``, the images in mM
    by method.
    """
    rows, images = [], []
    for item in noisy:
        images.append({})
        methods = image_methods(models, tuned[item.snr], cs_iter)
        for method, f in methods.items():
            start = time.perf_counter()
            image = f(item)
            seconds = time.perf_counter() - start
            if image is None:
                continue
            images[-1][method] = image
            rows.append({"study": item.case.study, "seed": item.case.seed, "snr": item.snr,
                         "method": method, **score(item.case, image), "seconds": seconds})
        rows.append({"study": item.case.study, "seed": item.case.seed, "snr": item.snr,
                     "method": "noiseless", **score(item.case, item.case.noiseless),
                     "seconds": np.nan})
    return rows, images


def run_dips(noisy: list[Noisy], config, *, device: str = "cpu") -> tuple[list[dict], dict]:
    """DIP and DIP-Fusion (the breast study's tuned weights) on all of one study's cases at once.

    All items must share one trajectory. Returns the rows and the outputs ``{method: (G, N, N)
    in mM}``.
    """
    import torch

    from nacode.denoise.dip import fit
    from nacode.denoise.priors import fuse
    from nacode.physics.toeplitz import SenseNormal
    from nacode.studies.breast import ALPHA, fusion_config
    from nacode.studies.breast_tuning import frozen

    traj = noisy[0].case.traj
    as_t = {"device": device}
    kspace = torch.as_tensor(np.stack([n.recon.kspace.reshape(n.recon.kspace.shape[0], -1)
                                       / n.scale for n in noisy]).astype(np.complex64), **as_t)
    maps = torch.as_tensor(np.stack([n.recon.maps for n in noisy]).astype(np.complex64), **as_t)
    weights = torch.as_tensor(traj_weights(noisy), **as_t)
    term = SenseNormal(traj.coord.reshape(-1, 2), maps, weights, kspace)
    proton = torch.as_tensor(np.stack([n.case.proton for n in noisy]), **as_t)
    sodium = torch.as_tensor(np.stack([n.recon.image / n.scale for n in noisy]), **as_t)
    tuned = frozen()
    configs = {"DIP": (replace(config, learning_rate=tuned["DIP"]["lr"]), None),
               "DIP-Fusion": (fusion_config(config, tuned["DIP-Fusion"]),
                              fuse(proton, sodium, alpha=ALPHA))}
    rows, outputs = [], {}
    for method, (cfg, prior) in configs.items():
        result = fit(term, cfg, prior)
        scales = np.array([n.scale * n.case.factor for n in noisy])
        outputs[method] = result.images.astype(np.float64) * scales[:, None, None]
        for n, image, stop in zip(noisy, outputs[method], result.stop_iteration, strict=True):
            rows.append({"study": n.case.study, "seed": n.case.seed, "snr": n.snr,
                         "method": method, **score(n.case, image),
                         "seconds": result.seconds / len(noisy), "stop_iteration": int(stop)})
    return rows, outputs


def traj_weights(noisy: list[Noisy]) -> np.ndarray:
    """The shared density compensation, flattened, float32 (checks that it is shared)."""
    weights = noisy[0].recon.weights
    if any(n.recon.weights.shape != weights.shape for n in noisy):
        raise ValueError("DIP batches need one trajectory per study")
    return weights.reshape(-1).astype(np.float32)


def summary(per_image):
    """Median PSNR, SSIM, TSC error and seconds per study, level and method, with the PSNR
    rank of each method within its study and level (1 = best; the noiseless row excluded)."""
    table = (per_image.groupby(["study", "snr", "method"], sort=False)
             [["psnr", "ssim", "tsc_error", "tsc_voxel_error", "seconds"]].median().reset_index())
    methods = table["method"] != "noiseless"
    table.loc[methods, "rank"] = (table[methods].groupby(["study", "snr"])["psnr"]
                                  .rank(ascending=False, method="min"))
    return table


def ranking(table):
    """Mean PSNR rank of each method per study over the noise levels (rows: methods)."""
    ranks = table[table["method"] != "noiseless"].pivot_table(
        index="method", columns="study", values="rank", aggfunc="mean")
    ranks = ranks.reindex(columns=[s for s in STUDIES if s in ranks.columns])
    return ranks.loc[ranks.mean(axis=1).sort_values().index]


def gains(table):
    """PSNR gain (dB) of each method over gridding, per study and level (noiseless row left
    out)."""
    base = table[table["method"] == "gridding"].set_index(["study", "snr"])["psnr"]
    out = table[~table["method"].isin(["gridding", "noiseless"])].copy()
    out["psnr_gain"] = [row.psnr - base[(row.study, row.snr)] for row in out.itertuples()]
    return out[["study", "snr", "method", "psnr_gain", "tsc_error", "tsc_voxel_error"]]


def load_models(*, retrained: bool = False) -> dict:
    """The calf CNNs (per NSA) and the brain DAE of fold 1.

    Every fold's DAE was trained on other subjects than the benchmark's (seeds from
    :data:`~nacode.studies.benchmark_data.SEEDS`), so any fold is a fair choice; fold 1 is
    used throughout. By default the committed weights, checked against the manifest; with
    ``retrained`` the ones the calf and brain chapters wrote to
    ``<build>/cache/<study>/weights`` in this build's full profile (where they exist).
    """
    from nacode.results import build_dir
    from nacode.studies import brain, brain_data, calf

    fold = brain_data.folds()[0]
    folders = {"calf": calf.WEIGHTS_DIR, "brain": brain.WEIGHTS_DIR}
    fresh = {study: build_dir() / "cache" / study / "weights" for study in folders}
    if retrained:
        folders = {s: fresh[s] if any(fresh[s].glob("*.safetensors")) else folders[s]
                   for s in folders}
    return {"calf": calf.load_models(weights_dir=folders["calf"],
                                     verify=folders["calf"] == calf.WEIGHTS_DIR),
            "brain": brain.load_models([fold], folders["brain"],
                                       verify=folders["brain"] == brain.WEIGHTS_DIR)[fold.index]}


def run(models: dict, *, levels=(5.0, 10.0), n_test: int = 2, cs_iter: int = 40,
        dip_config=None, breast_matrix: int = 64, seed: int = 0, device: str = "cpu",
        progress: bool = True):
    """The whole benchmark: cases, tuning, every method, every level.

    Parameters
    ----------
    models : dict
        From :func:`load_models`.
    levels : sequence of float
        Input SNRs (mean tissue signal / noise SD of the gridded image).
    n_test : int
        Test cases per study (plus one validation case).
    cs_iter : int
        Most primal–dual iterations of CS-TV and dTV (each stops at its convergence rule).
    dip_config : DIPConfig, optional
        Settings of both DIPs (default :class:`~nacode.denoise.dip.DIPConfig`).
    breast_matrix : int
        Matrix of the breast cases.
    seed : int
        Seed of the noise draws.

    Returns
    -------
    per_image : pandas.DataFrame
        ``study, seed, snr, method, psnr, ssim, tsc_error, tsc_voxel_error, seconds``.
    tuning : pandas.DataFrame
        Every candidate of every tuning (:meth:`~nacode.evaluate.tuning.Tuning.rows`:
        ``method, parameter, value, score`` (validation PSNR), ``chosen``) with ``study``,
        ``snr`` and ``on_edge`` (the winner still at an end of its extended grid).
    examples : dict
        Per study, images in mM of its first test case at the lowest SNR: ``truth``,
        ``noiseless`` and one per method.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from nacode.denoise.dip import DIPConfig

    dip_config = dip_config or DIPConfig()
    rows, tuning_rows, examples = [], [], {}
    for study in tqdm(STUDIES, desc="benchmark", disable=not progress):
        val_case, test_cases = cases(study, n_test, breast_matrix=breast_matrix)
        tuned = {}
        for snr in levels:
            tuned[snr], tunings = tune(acquire_noisy(val_case, snr, seed), models, cs_iter)
            tuning_rows += [{"study": study, "snr": snr, **row, "on_edge": t.on_edge}
                            for t in tunings for row in t.rows()]
        noisy = [acquire_noisy(case, snr, seed) for case in test_cases for snr in levels]
        image_rows, images = run_images(noisy, models, tuned, cs_iter)
        dip_rows, dip_images = run_dips(noisy, dip_config, device=device)
        rows += image_rows + dip_rows
        examples[study] = {"truth": noisy[0].case.truth_mm, "noiseless": noisy[0].case.noiseless,
                           **images[0], **{m: out[0] for m, out in dip_images.items()},
                           "snr": noisy[0].snr}
    return pd.DataFrame(rows), pd.DataFrame(tuning_rows), examples


#: The calf paper's training time per model (Baker et al.: "9–10 hours each").
PAPER_TRAINING_HOURS = (9.0, 10.0)


def training_speed(folders=None):
    """Training time per committed model from its provenance, beside the calf paper's.

    For a run cut short (fewer epochs than requested) the time of 100 epochs is extrapolated
    from the seconds per epoch and marked as such.

    Parameters
    ----------
    folders : list of path, optional
        Where the provenance JSON files are (default: the committed ``weights/``).

    Returns
    -------
    pandas.DataFrame
        ``model, device, epochs, wall_s, s_per_epoch, s_for_100_epochs, extrapolated,
        speed_up_vs_paper`` (the paper's 9 h divided by ours; calf models only).
    """
    import json
    from pathlib import Path

    import pandas as pd

    from nacode.studies import calf

    paths = sorted(p for folder in (folders or [calf.WEIGHTS_DIR])
                   for p in Path(folder).glob("*.json"))
    rows = []
    for path in paths:
        record = json.loads(path.read_text(encoding="utf-8"))
        if "wall_s" not in record or "epochs_trained" not in record:
            continue
        per_epoch = record["wall_s"] / max(record["epochs_trained"], 1)
        is_calf = record["name"].startswith("calf")
        full = 100 * per_epoch if is_calf else record["wall_s"]
        rows.append({"model": record["name"],
                     "device": record.get("device_name", record.get("device")),
                     "epochs": record["epochs_trained"], "wall_s": record["wall_s"],
                     "s_per_epoch": per_epoch, "s_for_100_epochs": full if is_calf else np.nan,
                     "extrapolated": is_calf and record["epochs_trained"] < 100,
                     "speed_up_vs_paper": PAPER_TRAINING_HOURS[0] * 3600 / full if is_calf
                     else np.nan})
    return pd.DataFrame(rows)


def findings(ranks, table=None, *, top: int = 3) -> dict[str, str]:
    """Sentences for the chapter, derived from the results (never typed by hand).

    Parameters
    ----------
    ranks : pandas.DataFrame
        :func:`ranking` (rows: methods, columns: studies).
    table : pandas.DataFrame, optional
        :func:`summary`; adds ``tsc`` (how often a method that lowers the voxel-wise TSC
        error relative to gridding raises the ROI error).
    top : int
        ``consistent`` lists the methods whose mean rank is within ``top`` in every study.

    Returns
    -------
    dict of str to str
        ``best``, ``consistent``, and the mean rank per study of the calf CNN (``cnn``), the
        brain DAE (``dae``), CS-TV (``cs``) and dTV with the 1H prior (``dtv``).
    """
    def per_study(method: str) -> str:
        if method not in ranks.index:
            return "not available"
        return ", ".join(f"{ranks.loc[method, s]:.1f} on the {s}" for s in ranks.columns)

    best = ", ".join(f"{ranks[s].idxmin()} on the {s}" for s in ranks.columns)
    within = [m for m in ranks.index if (ranks.loc[m] <= top).all()]
    out = {"best": best, "consistent": ", ".join(within) if within else "no method",
           "cnn": per_study("calf CNN"), "dae": per_study("brain DAE"),
           "cs": per_study("CS-TV"), "dtv": per_study("dTV (1H)")}
    if table is not None:
        base = table[table["method"] == "gridding"].set_index(["study", "snr"])
        others = table[~table["method"].isin(["gridding", "noiseless"])]
        lower = [row for row in others.itertuples()
                 if row.tsc_voxel_error < base.loc[(row.study, row.snr), "tsc_voxel_error"]]
        raised = sum(row.tsc_error > base.loc[(row.study, row.snr), "tsc_error"]
                     for row in lower)
        out["tsc"] = (f"in {raised} of the {len(lower)} (study, noise level, method) results "
                      "that lower the voxel-wise error below gridding's, the ROI error rises")
    return out
