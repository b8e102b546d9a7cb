"""The calf study's protocol: corpus, splits, paired data, and one CNN per NSA.

Reproduces Baker et al. on nacode's simulator (see :mod:`nacode.studies.calf_data` for the
data and its provenance). Paired datasets are cached in ``<build>/cache/calf/`` keyed by the
corpus parameters, so the book, the trainer and the tests build them once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from nacode.studies import calf_data

#: Default corpus: 45 deformed brains × 40 slices + 100 procedural calves = 1,900 images.
CORPUS = {"brain_volumes": 45, "slices_per_volume": 40, "calf_volumes": 100, "seed": 0}
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
SPLIT_SEEDS = {"train": 101, "val": 202, "test": 303}


def corpus(params: dict | None = None) -> list[calf_data.ProtonSlice]:
    """The 1H corpus: fastMRI when ``NACODE_FASTMRI_DIR`` is set, else brains + calves."""
    import os

    p = {**CORPUS, **(params or {})}
    folder = os.environ.get("NACODE_FASTMRI_DIR")
    if folder:
        return calf_data.fastmri_corpus(folder)
    return (calf_data.brain_corpus(p["brain_volumes"], p["slices_per_volume"], seed=p["seed"])
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
                 progress: bool = True) -> list[dict]:
    """Train one ResidualDnCNN per NSA with the paper's loss and optimiser settings.

    Adam 1e-4, batch 16, SSIM + 0.3 · JSD, best checkpoint by validation loss; each model
    stops at ``epochs`` or once ``time_budget_s`` is exceeded (recorded in its provenance).

    Returns
    -------
    list of dict
        The provenance records.
    """
    import torch

    from nacode.denoise.dncnn import ResidualDnCNN
    from nacode.denoise.losses import calf_loss
    from nacode.denoise.trainer import TrainConfig, train

    data = datasets(params, ("train", "val"), limit=limit, progress=progress)
    records = []
    for nsa in nsas:
        torch.manual_seed(nsa)
        config = TrainConfig(epochs=epochs, batch_size=16, learning_rate=1e-4, seed=nsa,
                             device=device, profile=profile,
                             extra={"nsa": nsa, "corpus": {**CORPUS, **(params or {})},
                                    "loss": "SSIM + 0.3 JSD", "threads":
                                    torch.get_num_threads()})
        records.append(train(ResidualDnCNN(), calf_loss, data["train"][nsa], data["val"][nsa],
                             out_dir, model_name(nsa), config, time_budget_s=time_budget_s,
                             progress=progress))
    return records
