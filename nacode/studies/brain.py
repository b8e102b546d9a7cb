"""The brain study: patch autoencoder against non-local means, five folds by subject.

Used by ``book/brain.md`` and ``nacode train brain``. The cohort is
:func:`nacode.studies.brain_data.cohort` (cached under ``_build/cache/brain``); each fold
trains one :class:`~nacode.denoise.dae.PatchDAE` on its training subjects, early-stopped on
its validation subject, and tests it on the rest of its held-out group. Non-local means gets
its strength from the same validation subject. Every method is scored on every acquisition of
every test subject against the mean of the three acquisitions (the paper's reference) and,
beyond the paper, against the noiseless acquisition and the true TSC.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nacode.evaluate.tuning import Tuning, log_grid, tune
from nacode.studies import brain_data as bd
from nacode.studies import brain_eval as be
from nacode.studies.calf import WEIGHTS_DIR, manifest_digests

ADDED_NOISE = 0.5  # training noise SD / the acquisition's own noise SD (the paper: unstated)
#: NLM strengths tried first (× the estimated noise SD): two decades, refined around the winner
NLM_H = log_grid(0.1, 10.0)
NLM_REFINE = 2  # refinement rounds of :func:`~nacode.evaluate.tuning.tune` (2 values each)
PURITY = 0.75  # a voxel counts as GM / WM / CSF when this fraction of it is that tissue
#: The paper's Tables 2 and 3: relative improvement in % (mean, median, σ).
PAPER_TABLE2 = {"NLM": (1.95, 1.96, 0.33), "DAE": (2.37, 2.42, 0.50)}
PAPER_TABLE3 = {"NLM": (18.85, 18.88, 3.39), "DAE": (28.75, 28.93, 3.85)}
COHORT_VERSION = 4  # bump when BrainScan or the subjects change: 2 tube ROIs, 3 texture,
#                    4 finufft NUFFT


def model_name(fold: int) -> str:
    """File stem of fold ``fold``'s weights, e.g. ``brain_dae_fold1``."""
    return f"brain_dae_fold{fold}"


def cached_cohort(n_subjects: int = bd.N_SUBJECTS, snr: float = bd.SNR, *,
                  progress: bool = True) -> list[bd.BrainScan]:
    """The cohort, generated once and kept in ``_build/cache/brain`` (keyed by its inputs)."""
    from nacode.results import build_dir

    name = f"cohort_v{COHORT_VERSION}_n{n_subjects}_snr{snr:g}_s{bd.SEED_BASE}.npz"
    path = build_dir() / "cache" / "brain" / name
    if path.is_file():
        return bd.load_cohort(path)
    scans = bd.cohort(n_subjects, snr=snr, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    bd.save_cohort(scans, path)
    return scans


def train_fold(scans: list[bd.BrainScan], fold: bd.Fold, *, out_dir: Path = WEIGHTS_DIR,
               device: str = "cpu", profile: str = "full", max_epochs: int = 200,
               max_patches: int | None = None, time_budget_s: float | None = None,
               name: str | None = None, progress: bool = True) -> dict:
    """Train fold ``fold``'s autoencoder (Adam 1e-4, batch 128, MSE, patience 8).

    Returns the provenance record (:func:`nacode.denoise.dae_train.train_dae`).
    """
    import torch

    from nacode.denoise.dae_train import DAEConfig, train_dae

    train = bd.patch_set(scans, fold.train, added_noise=ADDED_NOISE)
    val = bd.patch_set(scans, fold.val, added_noise=0.0)
    config = DAEConfig(max_epochs=max_epochs, seed=fold.index, device=device, profile=profile,
                       max_patches=max_patches,
                       extra={"fold": fold.index, "train_subjects": list(fold.train),
                              "val_subjects": list(fold.val), "test_subjects": list(fold.test),
                              "added_noise": ADDED_NOISE, "snr": bd.SNR,
                              "threads": torch.get_num_threads()})
    return train_dae(train, val, out_dir, name or model_name(fold.index), config,
                     time_budget_s=time_budget_s, progress=progress)


def train_folds_concurrently(folds: list[bd.Fold], *, out_dir: Path, device: str = "cuda",
                             profile: str = "full", max_epochs: int = 200) -> list[dict]:
    """Train every fold at once, one ``nacode train brain --fold K`` process each.

    One fold's small network leaves a GPU mostly idle, so five processes sharing it finish in
    little more than the slowest fold's time (on one H100: 332 s for all five, against about
    20 minutes one after another). The processes read the default cohort from the cache
    (:func:`cached_cohort`), which must exist. Returns the provenance records.

    Raises
    ------
    RuntimeError
        Naming the fold and the end of its error output, if a process fails.
    """
    import json
    import subprocess
    import sys

    out_dir = Path(out_dir)
    jobs = {}
    for fold in folds:
        command = [sys.executable, "-m", "nacode", "train", "brain", "--fold", str(fold.index),
                   "--out", str(out_dir), "--device", device, "--profile", profile,
                   "--epochs", str(max_epochs)]
        jobs[fold.index] = subprocess.Popen(command, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True)
    for index, job in jobs.items():
        _, err = job.communicate()
        if job.returncode:
            raise RuntimeError(f"training fold {index} failed (exit {job.returncode}): "
                               f"{err.strip().splitlines()[-1] if err.strip() else ''}")
    return [json.loads((out_dir / f"{model_name(k)}.json").read_text(encoding="utf-8"))
            for k in jobs]


def load_models(folds: list[bd.Fold], weights_dir: Path = WEIGHTS_DIR, *, verify: bool = True):
    """Each fold's trained autoencoder, checked against its manifest sha256 when ``verify``."""
    from nacode.denoise.dae import PatchDAE
    from nacode.denoise.trainer import load_weights

    digests = manifest_digests() if verify else {}
    models = {}
    for fold in folds:
        path = Path(weights_dir) / f"{model_name(fold.index)}.safetensors"
        models[fold.index] = load_weights(PatchDAE(), path, digests.get(path.resolve()))
    return models


def _scores(reference, noiseless, image, mask) -> dict[str, float]:
    from nacode.evaluate.metrics import masked_psnr, masked_ssim

    return {"psnr": masked_psnr(reference, image, mask),
            "ssim": masked_ssim(reference, image, mask),
            "psnr_noiseless": masked_psnr(noiseless, image, mask),
            "ssim_noiseless": masked_ssim(noiseless, image, mask)}


def tune_nlm(scans: list[bd.BrainScan], subjects, grid=NLM_H, *,
             refine: int = NLM_REFINE, acquisitions: int = bd.N_ACQUISITIONS) -> Tuning:
    """NLM strength by the book's one protocol (:func:`~nacode.evaluate.tuning.tune`).

    The score is the mean masked pSNR (the paper's equation 1) against the reference (the
    mean of all three) over the first ``acquisitions`` acquisitions of each validation
    subject in ``subjects``; NLM has no convergence rule, one application is its result.
    """
    from nacode.denoise.classic import nlm_volume
    from nacode.evaluate.metrics import masked_psnr

    def evaluate(values: list[float]) -> list[float]:
        return [float(np.mean([
            masked_psnr(scans[s].reference, nlm_volume(acq, h, scans[s].brain_mask),
                        scans[s].brain_mask)
            for s in subjects for acq in scans[s].acquisitions[:acquisitions]]))
            for h in values]

    return tune("NLM", "h", evaluate, grid, refine=refine)


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` returns.

    Attributes
    ----------
    per_volume : pandas.DataFrame
        One row per (fold, subject, acquisition, method): ``psnr``, ``ssim`` (against the
        mean of three, in the brain mask), ``psnr_noiseless``, ``ssim_noiseless``, ``seconds``
        (denoising time) and, for NLM, the tuned ``h``. Methods: input, NLM, DAE, and BM4D
        when the optional package is installed; all denoise the brain mask only.
    errors : dict of (str, str) to ndarray
        Voxel-wise TSC error (mM) per (method, tissue) over all test volumes; the methods
        also include ``reference`` (mean of three), ``noiseless`` and the whole-FOV
        applications, as they are and recalibrated on their own tubes.
    examples : dict of str to ndarray
        The first test volume of the first fold per method (whole-FOV applications included),
        for figures (``truth`` in mM).
    scores : pandas.DataFrame
        Every SSIM and pSNR convention of every method
        (:func:`~nacode.studies.brain_eval.convention_rows`), including ``NLM (whole FOV)`` and
        ``DAE (whole FOV)``: the same denoisers applied to every voxel of the field of view.
    tubes : pandas.DataFrame
        Each calibration tube's mean before and after, per volume and method
        (:func:`~nacode.studies.brain_eval.tube_rows`; also ``reference`` and ``noiseless``).
    tunings : dict of int to Tuning
        The NLM strength's tuning on each fold's validation subject (:func:`tune_nlm`).
    """

    per_volume: object
    errors: dict
    examples: dict
    scores: object
    tubes: object
    tunings: dict


def tuning_rows(tunings: dict):
    """Every fold's NLM tuning candidates as one table (``fold`` column added)."""
    import pandas as pd

    return pd.DataFrame([{"fold": fold, **row} for fold, tuning in tunings.items()
                         for row in tuning.rows()])


def evaluate(scans: list[bd.BrainScan], folds: list[bd.Fold], models: dict, *,
             whole_fov_acquisitions: int = 1, tuning_acquisitions: int = bd.N_ACQUISITIONS,
             progress: bool = True) -> Evaluation:
    """Denoise every test acquisition with each method and score it.

    ``whole_fov_acquisitions`` of each test subject's acquisitions (the first ones) are also
    denoised over the whole field of view, tubes and background included, for the whole-FOV
    metrics and the tube changes. NLM is tuned per fold on ``tuning_acquisitions`` of its
    validation subject's acquisitions (:func:`tune_nlm`). Returns an :class:`Evaluation`.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from nacode.denoise.classic import bm4d_volume, nlm_volume
    from nacode.denoise.dae import denoise_volume

    def dae(x, model, where):
        return denoise_volume(model, x, where)

    rows, errors, examples, scores, tubes = [], {}, {}, [], []
    jobs = [(fold, s, a) for fold in folds for s in fold.test for a in range(bd.N_ACQUISITIONS)]
    tunings = {fold.index: tune_nlm(scans, fold.val, acquisitions=tuning_acquisitions)
               for fold in
               tqdm(folds, desc="tuning NLM", disable=not progress)}
    tuned = {index: tuning.best for index, tuning in tunings.items()}
    for fold, s, a in tqdm(jobs, desc="test volumes", disable=not progress):
        scan = scans[s]
        mask, acquisition = scan.brain_mask, scan.acquisitions[a]
        keys = {"fold": fold.index, "subject": s, "acquisition": a + 1}
        outputs, seconds = {"input": acquisition}, {"input": 0.0}
        methods = (("NLM", nlm_volume, (tuned[fold.index], mask)),
                   ("DAE", dae, (models[fold.index], mask)),
                   ("BM4D", bm4d_volume, (mask,)))
        for method, apply, arguments in methods:
            start = time.perf_counter()
            out = apply(acquisition, *arguments)
            if out is not None:
                outputs[method], seconds[method] = out, time.perf_counter() - start
        for method, image in outputs.items():
            rows.append({**keys, "method": method,
                         **_scores(scan.reference, scan.noiseless, image, mask),
                         "seconds": seconds[method],
                         "h": tuned[fold.index] if method == "NLM" else np.nan})
        whole, rois = {}, scan.tube_rois()
        concentrations = scan.calibrations[a].concentrations
        if a < whole_fov_acquisitions:
            everywhere = np.ones_like(mask)
            whole = {"NLM (whole FOV)": nlm_volume(acquisition, tuned[fold.index]),
                     "DAE (whole FOV)": dae(acquisition, models[fold.index], everywhere)}
        extra = {"reference": scan.reference, "noiseless": scan.noiseless}
        for method, image in {**outputs, **whole}.items():
            scores += be.convention_rows(keys, method, scan.reference, image, mask)
        for method, image in {**outputs, **whole, **extra}.items():
            tubes += be.tube_rows(keys, method, acquisition, image, concentrations, rois)
        again = {f"{m}, recalibrated": be.recalibrated(x, rois, concentrations)
                 for m, x in whole.items()}
        for method, image in {**outputs, **whole, **again, **({} if a else extra)}.items():
            for tissue in bd.TISSUES:
                roi = scan.fractions[tissue] >= PURITY
                error = image[roi] * bd.NORM_MM - scan.truth_mm[roi]
                errors.setdefault((method, tissue), []).append(error)
        if not examples:
            examples = {**outputs, **whole, **extra, "truth": scan.truth_mm / bd.NORM_MM,
                        "mask": mask, "subject": s}
    errors = {key: np.concatenate(parts) for key, parts in errors.items()}
    return Evaluation(pd.DataFrame(rows), errors, examples, pd.DataFrame(scores),
                      pd.DataFrame(tubes), tunings)


def improvement_table(per_volume, metric: str = "psnr"):
    """Relative improvement over the input (%) per method: mean, median and SD (ddof 1).

    ``metric`` is a column of ``per_volume`` (``psnr`` gives Table 2, ``ssim`` Table 3).
    """
    import pandas as pd

    from nacode.evaluate.metrics import relative_improvement

    keys = ["fold", "subject", "acquisition"]
    base = per_volume[per_volume.method == "input"].set_index(keys)[metric]
    rows = []
    for method, group in per_volume[per_volume.method != "input"].groupby("method", sort=False):
        gains = np.array([relative_improvement(base.loc[key], value) for key, value in
                          zip(group[keys].itertuples(index=False, name=None), group[metric],
                              strict=True)])
        rows.append({"method": method, "mean": gains.mean(), "median": np.median(gains),
                     "sd": gains.std(ddof=1), "n": gains.size})
    return pd.DataFrame(rows)


def tsc_error_table(errors: dict):
    """TSC error against the truth per method and tissue: bias, SD, 95 % limits, MAE (mM)."""
    import pandas as pd

    rows = []
    for (method, tissue), error in errors.items():
        bias, sd = float(error.mean()), float(error.std(ddof=1))
        rows.append({"method": method, "tissue": tissue, "n_voxels": int(error.size),
                     "bias_mM": bias, "sd_mM": sd, "loa_low_mM": bias - 1.96 * sd,
                     "loa_high_mM": bias + 1.96 * sd, "mae_mM": float(np.abs(error).mean())})
    return pd.DataFrame(rows)


def with_paper(table, paper: dict):
    """``table`` with the paper's mean, median and σ beside ours (for display)."""
    out = table.copy()
    for i, column in enumerate(("paper_mean", "paper_median", "paper_sd")):
        out[column] = [paper.get(m, (np.nan,) * 3)[i] for m in out.method]
    return out


def inference_seconds(model, scan: bd.BrainScan, *, repeats: int = 5) -> float:
    """Median wall time (s) of one whole-volume autoencoder pass, after one warm-up."""
    from nacode.denoise.dae import denoise_volume

    denoise_volume(model, scan.acquisitions[0], scan.brain_mask)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        denoise_volume(model, scan.acquisitions[0], scan.brain_mask)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def provenance_table(folds: list[bd.Fold], weights_dir: Path = WEIGHTS_DIR):
    """One row per fold from its provenance JSON: device, epochs, best epoch, wall time."""
    import json

    import pandas as pd

    keys = ("name", "device_name", "step_mode", "epochs_trained", "best_epoch",
            "early_stopped", "stopped_by_time_budget", "wall_s", "best_val_mse",
            "patches_per_epoch", "n_val_patches")
    rows = []
    for fold in folds:
        record = json.loads((Path(weights_dir) / f"{model_name(fold.index)}.json")
                            .read_text(encoding="utf-8"))
        rows.append({"fold": fold.index, **{k: record.get(k) for k in keys}})
    return pd.DataFrame(rows)


def axial(volume: np.ndarray, z: int) -> np.ndarray:
    """Axial slice ``z`` of an (x, y, z) RAS volume for display: anterior up, left on the left.

    (Radiological displays put the subject's right on the viewer's left; this is the
    neurological view, matching the MNI152 chapter.)
    """
    return np.flipud(np.asarray(volume)[:, :, z].T)


def central_slice(mask: np.ndarray) -> int:
    """The axial slice holding the most mask voxels."""
    return int(np.argmax(mask.sum(axis=(0, 1))))


def quantification_factors(scans: list[bd.BrainScan], subjects):
    """Why even a noiseless acquisition misreads TSC: T1 saturation against the tubes'.

    For GM, WM and CSF (literature T1) the steady-state saturation at the study's TR relative to
    the tubes' predicts ``aTSC / TSC`` if nothing else mattered; beside it the measured ratio of
    the noiseless acquisition's mean aTSC to the mean true TSC over the voxels that are at least
    :data:`PURITY` of the tissue in ``subjects``.

    Returns
    -------
    pandas.DataFrame
        ``tissue, t1_ms, tube_t1_ms, saturation_ratio, measured_ratio``.
    """
    import pandas as pd

    from nacode.anatomy.tissues import LITERATURE
    from nacode.physics.dapr import BRAIN_SEQUENCE
    from nacode.physics.signal import saturation

    def sat(t1: float) -> float:
        return float(saturation(t1, BRAIN_SEQUENCE.tr_ms, BRAIN_SEQUENCE.flip_deg))

    tube_t1 = LITERATURE["tube"].t1
    rows = []
    for tissue in bd.TISSUES:
        measured, true = [], []
        for s in subjects:
            roi = scans[s].fractions[tissue] >= PURITY
            measured.append(scans[s].noiseless[roi] * bd.NORM_MM)
            true.append(scans[s].truth_mm[roi])
        rows.append({"tissue": tissue, "t1_ms": LITERATURE[tissue].t1, "tube_t1_ms": tube_t1,
                     "saturation_ratio": sat(LITERATURE[tissue].t1) / sat(tube_t1),
                     "measured_ratio": float(np.concatenate(measured).mean()
                                             / np.concatenate(true).mean())})
    return pd.DataFrame(rows)
