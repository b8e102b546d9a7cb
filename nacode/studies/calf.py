"""The calf study's protocol: corpus, splits, paired data, and one CNN per NSA.

Reproduces Baker et al. on nacode's simulator (see :mod:`nacode.studies.calf_data` for the
data and its provenance). Paired datasets are cached in ``<build>/cache/calf/`` keyed by the
corpus parameters, so the book, the trainer and the tests build them once.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from nacode.evaluate.tuning import log_grid
from nacode.studies import calf_data

#: Default corpus: 45 deformed brains × 40 slices + 100 procedural calves = 1,900 images.
CORPUS = {"brain_volumes": 45, "slices_per_volume": 40, "calf_volumes": 100, "seed": 0}
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
SPLIT_SEEDS = {"train": 101, "val": 202, "test": 303}


def corpus(params: dict | None = None) -> list[calf_data.ProtonSlice]:
    """The 1H corpus: fastMRI when ``NACODE_FASTMRI_DIR`` is set, else brains + calves.

    Built once per process and parameter set (it takes ≈ 30 s on two cores).
    """
    import os

    p = {**CORPUS, **(params or {})}
    return list(_corpus(tuple(sorted(p.items())), os.environ.get("NACODE_FASTMRI_DIR", "")))


@lru_cache(maxsize=2)
def _corpus(items: tuple, fastmri: str) -> tuple[calf_data.ProtonSlice, ...]:
    p = dict(items)
    if fastmri:
        return tuple(calf_data.fastmri_corpus(fastmri))
    return tuple(calf_data.brain_corpus(p["brain_volumes"], p["slices_per_volume"],
                                        seed=p["seed"])
                 + calf_data.calf_corpus(p["calf_volumes"], seed=p["seed"]))


def _key(params: dict, split: str) -> str:
    import os

    blob = json.dumps({**CORPUS, **params, "split": split,
                       "fastmri": os.environ.get("NACODE_FASTMRI_DIR", ""),
                       "noise": calf_data.NOISE_LEVEL}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def datasets(params: dict | None = None, splits=("train", "val", "test"), *,
             cache_dir: Path | None = None, limit: dict[str, int] | None = None,
             progress: bool = True) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Paired data per split and NSA: ``{split: {nsa: (noisy, clean)}}``, cached on disk.

    Parameters
    ----------
    params : dict, optional
        Overrides of :data:`CORPUS`.
    splits : tuple of str
        Which of train/val/test to build.
    cache_dir : Path, optional
        Cache folder (default ``<build dir>/cache/calf``).
    limit : dict of str to int, optional
        Keep at most this many slices of a split (first ones after a seeded shuffle).
    """
    from nacode.results import atomic_write, build_dir

    params = {**CORPUS, **(params or {})}
    cache_dir = Path(cache_dir) if cache_dir else build_dir() / "cache" / "calf"
    cache_dir.mkdir(parents=True, exist_ok=True)
    parts = None
    out = {}
    for split in splits:
        n_max = (limit or {}).get(split)
        path = cache_dir / f"{split}-{_key({**params, 'limit': n_max}, split)}.npz"
        if path.is_file():
            with np.load(path) as data:
                out[split] = {n: (data[f"noisy{n}"], data[f"clean{n}"])
                              for n in calf_data.NSAS}
            continue
        if parts is None:
            parts = calf_data.split_by_volume(corpus(params), seed=params["seed"])
        chosen = parts[split]
        if n_max is not None and n_max < len(chosen):
            order = np.random.default_rng(params["seed"]).permutation(len(chosen))[:n_max]
            chosen = [chosen[i] for i in sorted(order)]
        pairs = calf_data.build_dataset(chosen, seed=SPLIT_SEEDS[split] + params["seed"],
                                        progress=progress)
        with atomic_write(path, "wb") as handle:
            np.savez(handle, **{f"noisy{n}": a for n, (a, _) in pairs.items()},
                     **{f"clean{n}": b for n, (_, b) in pairs.items()})
        out[split] = pairs
    return out


def model_name(nsa: int) -> str:
    """File stem of the model trained for ``nsa`` averages."""
    return f"calf_nsa{nsa}"


def train_models(nsas=calf_data.NSAS, *, epochs: int = 100, time_budget_s: float | None = None,
                 out_dir: Path = WEIGHTS_DIR, profile: str = "full", device: str = "cpu",
                 params: dict | None = None, limit: dict[str, int] | None = None,
                 progress: bool = True, dist=None) -> list[dict]:
    """Train one ResidualDnCNN per NSA with the paper's loss and optimiser settings.

    Adam 1e-4, batch 16, SSIM + 0.3 · JSD, best checkpoint by validation loss; each model
    stops at ``epochs`` or once ``time_budget_s`` is exceeded (recorded in its provenance).

    Parameters
    ----------
    dist : nacode.denoise.distributed.Context, optional
        Under ``torchrun``: rank 0 builds the paired-data cache while the others wait, then
        read it; every process trains every model with DistributedDataParallel on
        ``dist.device`` (16 is then the global batch; see :mod:`nacode.denoise.trainer`).
        Only rank 0 writes files and shows progress. Default: a single process on ``device``.

    Returns
    -------
    list of dict
        The provenance records (the same on every process).
    """
    import torch

    from nacode.denoise.distributed import Context
    from nacode.denoise.dncnn import ResidualDnCNN
    from nacode.denoise.losses import calf_loss
    from nacode.denoise.trainer import TrainConfig, train

    dist = dist or Context(device=device)
    if dist.distributed:
        device = dist.device
    if dist.is_main:  # one process builds the cache ...
        data = datasets(params, ("train", "val"), limit=limit, progress=progress)
    dist.barrier()
    if not dist.is_main:  # ... the others read it
        data = datasets(params, ("train", "val"), limit=limit, progress=False)
    records = []
    for nsa in nsas:
        torch.manual_seed(nsa)
        config = TrainConfig(epochs=epochs, batch_size=16, learning_rate=1e-4, seed=nsa,
                             device=device, profile=profile,
                             extra={"nsa": nsa, "corpus": {**CORPUS, **(params or {})},
                                    "loss": "SSIM + 0.3 JSD", "threads":
                                    torch.get_num_threads(),
                                    **({"limit": limit} if limit else {})})
        records.append(train(ResidualDnCNN(), calf_loss, data["train"][nsa], data["val"][nsa],
                             out_dir, model_name(nsa), config, time_budget_s=time_budget_s,
                             progress=progress, dist=dist))
    return records


GAUSSIAN_SIGMAS = log_grid(0.1, 10.0, per_decade=4)  # px
NLM_H = log_grid(0.01, 1.0, per_decade=4)  # of the input's range


def load_models(nsas=calf_data.NSAS, weights_dir: Path = WEIGHTS_DIR, *, verify: bool = True):
    """The trained networks, checked against their manifest sha256 when ``verify``."""
    from nacode.denoise.dncnn import ResidualDnCNN
    from nacode.denoise.trainer import load_weights

    digests = manifest_digests() if verify else {}
    models = {}
    for nsa in nsas:
        path = Path(weights_dir) / f"{model_name(nsa)}.safetensors"
        models[nsa] = load_weights(ResidualDnCNN(), path, digests.get(path.resolve()))
    return models


def manifest_digests() -> dict[Path, str]:
    """sha256 of every artifact file in ``data_manifest.yaml``, by resolved path."""
    from nacode import manifest

    path = WEIGHTS_DIR.parent / "data_manifest.yaml"
    try:
        entries = manifest.load_manifest(path)
    except (FileNotFoundError, manifest.ManifestError):
        return {}
    return {manifest.resolve_file(e["location"], path.parent): e["sha256"] for e in entries
            if e["location"].startswith("repo:") and "sha256" in e}


def table1(models: dict, test: dict, val: dict, *, val_limit: int = 60):
    """Table 1 on the synthetic test split, with tuned Gaussian and NLM baselines.

    Parameters
    ----------
    models : dict of int to ResidualDnCNN
        One network per NSA.
    test, val : dict of int to (noisy, clean)
        Paired data per NSA; the baselines are tuned on (the first ``val_limit`` of) ``val``.

    Returns
    -------
    per_image : pandas.DataFrame
        ``nsa, image, index, mse, ssim, psnr`` for every test image and method.
    summary : pandas.DataFrame
        Per NSA and image (input | denoised | gaussian | nlm): median and IQR of MSE, SSIM,
        PSNR, the paired Wilcoxon p-value against the input for each metric, median and IQR
        of the change of the simulated tube's mean against the input (%, :func:`tube_roi`),
        and the tuned parameter.
    tunings : pandas.DataFrame
        The baselines' tuning curves (:meth:`~nacode.evaluate.tuning.Tuning.rows` with
        ``nsa``).
    """
    import pandas as pd
    import pingouin as pg

    from nacode.denoise import classic
    from nacode.denoise.trainer import denoise
    from nacode.evaluate import metrics
    from nacode.evaluate.tuning import tune_filter

    rows, params, tunings = [], {}, []
    for nsa, (noisy, clean) in test.items():
        v_noisy, v_clean = (a[:val_limit] for a in val[nsa])
        tuned = (tune_filter("Gaussian", "σ (px)", classic.gaussian, GAUSSIAN_SIGMAS, v_noisy,
                             v_clean),
                 tune_filter("NLM", "h", classic.nlm, NLM_H, v_noisy, v_clean))
        tunings += [{**row, "nsa": nsa} for tuning in tuned for row in tuning.rows()]
        sigma, h = (tuning.best for tuning in tuned)
        params[nsa] = {"input": "", "denoised": "", "gaussian": f"sigma={sigma:g} px",
                       "nlm": f"h={h:g}"}
        outputs = {"input": noisy, "denoised": denoise(models[nsa], noisy),
                   "gaussian": classic.gaussian(noisy, sigma), "nlm": classic.nlm(noisy, h)}
        discs = [tube_roi(c) for c in clean]
        for image, out in outputs.items():
            for i, (c, o, x, roi) in enumerate(zip(clean, out, noisy, discs, strict=True)):
                rows.append({"nsa": nsa, "image": image, "index": i, "mse": metrics.mse(c, o),
                             "ssim": metrics.ssim(c, o), "psnr": metrics.psnr(c, o),
                             "tube_change_pct": 100.0 * (o[roi].mean() / x[roi].mean() - 1)})
    per_image = pd.DataFrame(rows)
    summary = []
    for (nsa, image), group in per_image.groupby(["nsa", "image"], sort=False):
        row = {"nsa": nsa, "image": image, "n": len(group)}
        base = per_image[(per_image.nsa == nsa) & (per_image.image == "input")]
        for metric in ("mse", "ssim", "psnr"):
            q1, med, q3 = np.percentile(group[metric], [25, 50, 75])
            row[f"{metric}_median"], row[f"{metric}_iqr"] = med, q3 - q1
            row[f"p_{metric}"] = (np.nan if image == "input" else float(
                pg.wilcoxon(group[metric].to_numpy(), base[metric].to_numpy())["p_val"].iloc[0]))
        q1, med, q3 = np.percentile(group["tube_change_pct"], [25, 50, 75])
        row["tube_change_median"], row["tube_change_iqr"] = med, q3 - q1
        row["parameter"] = params[nsa][image]
        summary.append(row)
    return per_image, pd.DataFrame(summary), pd.DataFrame(tunings)


def tube_roi(clean: np.ndarray, *, diameter: float = 12.0, margin: float = 2.0,
             distance: tuple[int, int] = (9, 15)) -> np.ndarray:
    """The interior of the simulated 100 mM tube of a training/test image, found from its truth.

    :func:`~nacode.physics.proton.add_tube` puts a disc of ``diameter`` pixels with its centre
    ``distance`` pixels from the two edges of one corner; this finds the candidate centre whose
    disc (shrunk by ``margin`` pixels) has the brightest mean in ``clean``.

    Parameters
    ----------
    clean : ndarray, shape (N, N)
        The ground-truth image.

    Returns
    -------
    ndarray of bool, shape (N, N)
    """
    best, roi = -np.inf, None
    for disc in _tube_candidates(clean.shape[0], diameter - 2 * margin, distance):
        value = float(clean[disc].mean())
        if value > best:
            best, roi = value, disc
    return roi.copy()  # the candidates are cached and shared


@lru_cache(maxsize=8)
def _tube_candidates(n: int, diameter: float, distance: tuple[int, int]
                     ) -> tuple[np.ndarray, ...]:
    """Every disc :func:`tube_roi` considers on an ``n × n`` image (computed once per size)."""
    from nacode.physics.proton import tube_disc

    offsets = range(distance[0], distance[1] + 1)
    places = (*offsets, *(n - 1 - o for o in offsets))
    return tuple(tube_disc(n, (row, col), diameter, 0.0) > 0.5 for row in places
                 for col in places)


def tube_diagnosis(models: dict, pairs: dict, *, restore_px: float = 2.0):
    """Where the CNN's change of the simulated 100 mM tube comes from, on validation pairs.

    For each NSA: the median change (%) of the tube ROI's mean (:func:`tube_roi`) of the CNN
    output against its input and against the truth, the input's own change against the truth
    (the magnitude's Rician bias, small in a bright tube), the change of the mean over the whole
    object (signal > 5 % of the truth's peak), and — a training-free repair — the CNN output
    with the input's local mean restored, ``cnn + G_s * (input − cnn)`` (Gaussian of ``s =
    restore_px`` pixels): its tube change against the truth and its PSNR beside the CNN's.

    Parameters
    ----------
    models : dict of int to module
    pairs : dict of int to (noisy, clean)
        Validation stacks per NSA, each ``(n, H, W)``.

    Returns
    -------
    pandas.DataFrame
        ``nsa, cnn_vs_input_pct, cnn_vs_truth_pct, input_vs_truth_pct, object_vs_input_pct,
        restored_vs_truth_pct, psnr_cnn, psnr_restored``.
    """
    import pandas as pd
    from scipy.ndimage import gaussian_filter

    from nacode.denoise.trainer import denoise
    from nacode.evaluate.metrics import psnr

    def change(a, b, rois):
        return float(np.median([100.0 * (x[r].mean() / y[r].mean() - 1)
                                for x, y, r in zip(a, b, rois, strict=True)]))

    rows = []
    for nsa, (noisy, clean) in pairs.items():
        out = denoise(models[nsa], noisy)
        restored = np.stack([o + gaussian_filter(x - o, restore_px)
                             for o, x in zip(out, noisy, strict=True)])
        tubes = [tube_roi(c) for c in clean]
        objects = [c > 0.05 * c.max() for c in clean]
        rows.append({"nsa": nsa, "cnn_vs_input_pct": change(out, noisy, tubes),
                     "cnn_vs_truth_pct": change(out, clean, tubes),
                     "input_vs_truth_pct": change(noisy, clean, tubes),
                     "object_vs_input_pct": change(out, noisy, objects),
                     "restored_vs_truth_pct": change(restored, clean, tubes),
                     "psnr_cnn": float(np.median([psnr(c, o) for c, o in zip(
                         clean, out, strict=True)])),
                     "psnr_restored": float(np.median([psnr(c, o) for c, o in zip(
                         clean, restored, strict=True)]))})
    return pd.DataFrame(rows)


SCALES = (1.0, 1.25, 1.5, 2.0)


def tube_scale_response(models: dict, stacks: dict, scales=SCALES):
    """Does the CNN's tube change depend on where the normalisation puts the tube?

    Min–max normalisation divides by the noisy image's range, whose top is a noise peak, so
    the bright tube lands at a level that varies from image to image. A denoiser that is
    equivariant to intensity scale (``f(a x) = a f(x)``, as a bias-free ReLU network is)
    changes a tube by the same percentage wherever it lands; one that is not has learnt
    level-dependent intensities. Each image is min–max normalised (the paper's), divided by
    ``s``, denoised, multiplied by ``s`` and mapped back; each tube ROI's mean is compared
    with the input's.

    Parameters
    ----------
    models : dict of int to module
        The CNN per NSA.
    stacks : dict of int to (list of ndarray, list of list of ndarray)
        Per NSA: the images ``(H, W)`` (signal units) and, per image, its tube ROIs (bool
        ``(H, W)``) of the tubes to measure.
    scales : sequence of float
        The divisors ``s`` (1 = the paper's normalisation).

    Returns
    -------
    pandas.DataFrame
        ``nsa, scale, tube_level`` (median normalised level of the brightest tube in the
        network's input), ``median_pct, q1_pct, q3_pct`` and ``max_abs_pct`` (the change of
        the tube means against the input, %, over every image and tube).
    """
    import pandas as pd

    from nacode.denoise.trainer import denoise
    from nacode.evaluate.tubes import change_pct

    rows = []
    for nsa, (images, rois) in stacks.items():
        lows = np.array([float(x.min()) for x in images])[:, None, None]
        spans = np.array([float(x.max() - x.min()) for x in images])[:, None, None]
        normalised = (np.stack(images) - lows) / spans
        for scale in scales:
            out = (denoise(models[nsa], (normalised / scale).astype(np.float32)) * scale
                   * spans + lows)
            change = [change_pct(float(x[r].mean()), float(o[r].mean()))
                      for x, o, image_rois in zip(images, out, rois, strict=True)
                      for r in image_rois]
            levels = [max(float(x[r].mean()) for r in image_rois) / scale
                      for x, image_rois in zip(normalised, rois, strict=True)]
            q1, median, q3 = np.percentile(change, [25, 50, 75])
            rows.append({"nsa": nsa, "scale": float(scale),
                         "tube_level": float(np.median(levels)), "median_pct": float(median),
                         "q1_pct": float(q1), "q3_pct": float(q3),
                         "max_abs_pct": float(np.max(np.abs(change)))})
    return pd.DataFrame(rows)


def gains(summary):
    """PSNR gains (dB) of each method over the input, and of the CNN over the best baseline,
    beside the paper's CNN gain."""
    import pandas as pd

    rows = []
    for nsa, group in summary.groupby("nsa", sort=False):
        psnr = group.set_index("image")["psnr_median"]
        paper = calf_data.PAPER_TABLE1[nsa]
        rows.append({"nsa": nsa, "input_psnr": psnr["input"],
                     "paper_input_psnr": paper["input"][2][0],
                     "cnn_gain": psnr["denoised"] - psnr["input"],
                     "paper_cnn_gain": paper["denoised"][2][0] - paper["input"][2][0],
                     "gaussian_gain": psnr["gaussian"] - psnr["input"],
                     "nlm_gain": psnr["nlm"] - psnr["input"],
                     "cnn_minus_best_baseline": psnr["denoised"] - max(psnr["gaussian"],
                                                                       psnr["nlm"])})
    return pd.DataFrame(rows)
