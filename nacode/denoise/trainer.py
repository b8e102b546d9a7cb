"""Training loop with safetensors checkpoints, provenance and resumption.

A run writes, in its output folder:

``<name>.safetensors``
    the best model (lowest validation loss) — the only file needed for inference;
``<name>.json``
    its provenance: commit, profile, device, epochs, wall time, best validation loss,
    data sizes, seed, and whether training was cut short;
``<name>.last.safetensors`` / ``<name>.last.json``
    the latest epoch's model and Adam state and the loss history, from which
    :func:`train` resumes after an interruption (deleted when the run completes).

Weights are never pickled: :func:`load_weights` reads safetensors only, after checking the
file's SHA-256 when an expected digest is given.

Several processes (``torchrun``, :mod:`nacode.denoise.distributed`)
--------------------------------------------------------------------
``config.batch_size`` is the *global* batch. Every process draws the same seeded order, and
each global batch is cut into ``world_size`` contiguous shards
(:func:`~nacode.denoise.distributed.shard_bounds`, sizes differing by at most one, rank 0's
never empty). Rank ``r`` backpropagates ``loss_r × n_r × W / n`` so that
DistributedDataParallel's average over processes is ``Σ_r (n_r / n) ∇loss_r``: the gradient of
the global batch's mean loss whenever the loss is a mean over samples. A shard can be empty
(a last batch smaller than the number of processes); that process still runs the forward and
backward passes, on zero samples with a zero loss, so the collectives match and the step is
exactly the single-process one. What is not exact: a loss term computed over the whole batch
(the Jensen–Shannon distance of :func:`~nacode.denoise.losses.calf_loss` pools all pixels of
the batch) is computed per shard, and batch normalisation sees only its shard unless it is
synchronised: on CUDA the model's BatchNorm layers become SyncBatchNorm (exact), while on CPU
(gloo) torch's SyncBatchNorm is unavailable, so each process normalises with its own shard's
statistics and rank 0's running statistics are kept (broadcast to all after each epoch).
Validation batches are dealt round-robin to the processes and evaluated whole, so the
validation loss equals the single-process value. Reported losses are global (all-reduced
sums over global counts). Only rank 0 writes files and shows progress; its clock decides the
time budget; every process returns the same record, which notes ``world_size`` and
``backend``.

Training and validation tensors live on the device for the whole run; batches are gathered
there by index and the running loss is accumulated there, so the host synchronises once per
epoch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nacode.denoise.distributed import Context, shard_bounds
from nacode.results import atomic_write, write_json


@dataclass
class TrainConfig:
    """Hyper-parameters and bookkeeping of one training run."""

    epochs: int = 100
    batch_size: int = 16
    learning_rate: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    profile: str = "quick"
    extra: dict[str, Any] = field(default_factory=dict)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None
                  ) -> None:
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                metadata={k: str(v) for k, v in (metadata or {}).items()})
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def load_weights(model: torch.nn.Module, path: str | Path, sha256: str | None = None
                 ) -> torch.nn.Module:
    """Load a safetensors state dict into ``model`` (strict), verifying ``sha256`` if given.

    Raises
    ------
    ValueError
        If the checksum differs or the file is not a valid safetensors file for this model.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from nacode.manifest import sha256_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weight file not found")
    if sha256 is not None and sha256_file(path) != sha256:
        raise ValueError(f"{path}: sha256 does not match its manifest entry; the file was "
                         "changed or corrupted — restore it (git checkout) or retrain")
    try:
        state = load_file(str(path))
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise ValueError(f"{path}: not a valid weight file for {type(model).__name__} "
                         f"({str(exc).splitlines()[0]})") from None
    if mismatch := state_mismatch(model, state):
        raise ValueError(f"{path}: not a valid weight file for {type(model).__name__} "
                         f"({mismatch}); give the weights of the model this command applies")
    model.load_state_dict(state, strict=True)
    return model


def state_mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str:
    """What differs between ``model``'s state dict and ``state`` ("" when they match): the
    number of missing, unexpected and differently shaped tensors with the first of each."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [f"{k} {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} here"
              for k in own if k in state and state[k].shape != own[k].shape]
    parts = [f"{len(keys)} {label} (first: {keys[0]})" for keys, label in
             ((missing, "missing"), (unexpected, "unexpected"), (shaped, "of another shape"))
             if keys]
    return ", ".join(parts)


def _batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each global batch over an epoch's order of ``n`` samples."""
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def _device_pairs(data: tuple[np.ndarray, np.ndarray], device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy, clean) as (n, 1, H, W) float32 tensors resident on ``device``."""
    noisy, clean = (torch.as_tensor(np.asarray(a, np.float32), device=device)[:, None]
                    for a in data)
    return noisy, clean


def train(
    model: torch.nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    train_data: tuple[np.ndarray, np.ndarray],
    val_data: tuple[np.ndarray, np.ndarray],
    out_dir: str | Path,
    name: str,
    config: TrainConfig,
    *,
    time_budget_s: float | None = None,
    progress: bool = True,
    dist: Context | None = None,
) -> dict[str, Any]:
    """Train a residual denoiser on (noisy, clean) pairs; keep the best by validation loss.

    Parameters
    ----------
    model : torch.nn.Module
        Returns ``(denoised, residual)`` for a (batch, 1, H, W) input. On CUDA with several
        processes its BatchNorm layers are replaced by SyncBatchNorm in place.
    loss_fn : callable
        ``loss_fn(clean, noisy, denoised, residual) -> scalar``, the mean over the batch.
    train_data, val_data : tuple of ndarray
        ``(noisy, clean)``, each (n, H, W) float32; moved to the device once.
    out_dir, name : path, str
        Where the checkpoints and provenance go (see module docstring).
    config : TrainConfig
        Epochs, (global) batch size, learning rate, seed, device, profile. With several
        processes ``config.device`` must be ``dist.device``.
    time_budget_s : float, optional
        Stop after the epoch during which this wall time is exceeded (recorded; rank 0's
        clock decides for every process).
    progress : bool
        Show a tqdm bar per epoch (rank 0 only) with the previous epoch's losses.
    dist : Context, optional
        The data-parallel context (:func:`nacode.denoise.distributed.init_from_env`);
        default a single process. See the module docstring for the semantics.

    Returns
    -------
    dict
        The provenance record (also written to ``<name>.json``), the same on every process.
    """
    from tqdm.auto import tqdm

    from nacode.provenance import git_commit, package_versions

    dist = dist or Context(device=config.device)
    world = dist.world_size
    device = torch.device(config.device)
    if dist.distributed and device != torch.device(dist.device):
        raise ValueError(f"config.device is {config.device} but this process computes on "
                         f"{dist.device}; pass TrainConfig(device=dist.device)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path = out_dir / f"{name}.safetensors", out_dir / f"{name}.last.safetensors"
    last_json = out_dir / f"{name}.last.json"
    torch.manual_seed(config.seed)
    model.to(device)
    sync_bn = dist.distributed and device.type == "cuda" and any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if sync_bn:  # SyncBatchNorm runs on GPUs only (torch 2.13 refuses CPU tensors)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_val": float("inf"),
                             "wall_s": 0.0}
    if last_path.is_file() and last_json.is_file():  # resume (every process reads the same)
        from safetensors.torch import load_file

        saved = load_file(str(last_path))
        model.load_state_dict({k[6:]: v for k, v in saved.items() if k.startswith("model.")})
        opt_state = json.loads(last_json.read_text(encoding="utf-8"))
        optimiser.load_state_dict(_unflatten_optimiser(saved, opt_state["optimiser"]))
        state = opt_state["state"]
    net = model
    if dist.distributed:  # averages gradients over processes during backward
        from torch.nn.parallel import DistributedDataParallel

        # without SyncBatchNorm, rank 0's running statistics are broadcast before each step
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=not sync_bn)

    noisy_t, clean_t = _device_pairs(train_data, device)
    val_noisy, val_clean = _device_pairs(val_data, device)
    n_train = len(noisy_t)
    start = time.perf_counter() - state["wall_s"]
    stopped_early = False
    while state["epoch"] < config.epochs:
        net.train()
        # the batch order depends on (seed, epoch) only: the same on every process, and a
        # resumed run repeats it exactly
        rng = np.random.default_rng([config.seed, state["epoch"]])
        order = torch.as_tensor(rng.permutation(n_train), device=device)
        running = torch.zeros((), dtype=torch.float64, device=device)  # no per-step sync
        last = state["history"][-1] if state["history"] else None
        bar = tqdm(_batch_bounds(n_train, config.batch_size),
                   desc=f"{name} epoch {state['epoch'] + 1}/{config.epochs}",
                   disable=not (progress and dist.is_main), leave=False,
                   postfix=None if last is None else
                   f"last train {last['train_loss']:.4f} val {last['val_loss']:.4f}")
        for batch_start, batch_stop in bar:
            lo, hi = shard_bounds(batch_stop - batch_start, world, dist.rank)
            index = order[batch_start + lo:batch_start + hi]
            noisy, clean = noisy_t[index], clean_t[index]
            optimiser.zero_grad(set_to_none=True)
            denoised, residual = net(noisy)
            if hi > lo:
                loss = loss_fn(clean, noisy, denoised, residual)
                running += loss.detach().double() * (hi - lo)
                if dist.distributed:  # DDP averages: make it the global batch's mean
                    loss = loss * ((hi - lo) * world / (batch_stop - batch_start))
            else:  # empty shard: a zero loss that still reaches every parameter
                loss = (denoised.sum() + residual.sum()) * 0.0
            loss.backward()
            optimiser.step()
        train_loss = float(dist.all_reduce_sum(running)) / n_train
        if dist.distributed:  # per-process BatchNorm statistics: keep rank 0's everywhere
            for buffer in model.buffers():
                dist.broadcast_tensor(buffer)
        val_loss = evaluate_loss(model, loss_fn, val_noisy, val_clean, config.batch_size,
                                 device, dist=dist)
        state["epoch"] += 1
        state["history"].append({"epoch": state["epoch"], "train_loss": train_loss,
                                 "val_loss": val_loss})
        if val_loss < state["best_val"]:
            state["best_val"] = val_loss
            state["best_epoch"] = state["epoch"]
            if dist.is_main:
                _save_tensors(model.state_dict(), best_path, {"epoch": state["epoch"]})
        state["wall_s"] = time.perf_counter() - start
        if dist.is_main:
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
            flat, layout = _flatten_optimiser(optimiser.state_dict())
            tensors.update(flat)
            _save_tensors(tensors, last_path)
            write_json(last_json, {"state": state, "optimiser": layout})
        if dist.broadcast_flag(time_budget_s is not None and state["wall_s"] > time_budget_s):
            stopped_early = state["epoch"] < config.epochs
            break

    record = None
    if dist.is_main:
        record = {
            "name": name, **git_commit(Path(__file__).resolve().parents[2]),
            "profile": config.profile, "device": config.device,
            "epochs_requested": config.epochs, "epochs_trained": state["epoch"],
            "stopped_by_time_budget": stopped_early, "time_budget_s": time_budget_s,
            "best_epoch": state.get("best_epoch"), "best_val_loss": state["best_val"],
            "wall_s": round(state["wall_s"], 1), "batch_size": config.batch_size,
            "learning_rate": config.learning_rate, "seed": config.seed,
            "n_train": n_train, "n_val": len(val_noisy), "history": state["history"],
            "world_size": world, "backend": dist.backend, "sync_batchnorm": sync_bn,
            "torch": package_versions().get("torch"), **config.extra,
        }
        write_json(out_dir / f"{name}.json", record)
        if not stopped_early:
            last_path.unlink(missing_ok=True)
            last_json.unlink(missing_ok=True)
    dist.barrier()  # the others wait for rank 0's files
    return dist.broadcast_object(record)


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, loss_fn: Callable[..., torch.Tensor],
                  noisy: torch.Tensor, clean: torch.Tensor, batch_size: int, device, *,
                  dist: Context | None = None) -> float:
    """Mean loss over a dataset in evaluation mode (batch norm uses running statistics).

    Parameters
    ----------
    model : torch.nn.Module
        The bare model (not a DistributedDataParallel wrapper).
    loss_fn : callable
        As in :func:`train`.
    noisy, clean : Tensor, shape (n, 1, H, W)
        The dataset (moved to ``device`` if not already there).
    batch_size : int
        Batches are consecutive ``batch_size`` slices, as in a single process.
    device : str or torch.device
        Where to compute.
    dist : Context, optional
        With several processes rank ``r`` evaluates batches ``r, r + W, ...`` and the sums
        are all-reduced, so every process returns the single-process value.

    Returns
    -------
    float
        ``sum over batches of loss × batch length / n``.
    """
    model.eval()
    noisy, clean = noisy.to(device), clean.to(device)
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    total = torch.zeros((), dtype=torch.float64, device=noisy.device)
    for i, (start, stop) in enumerate(_batch_bounds(len(noisy), batch_size)):
        if i % world == rank:
            x, y = noisy[start:stop], clean[start:stop]
            denoised, residual = model(x)
            total += loss_fn(y, x, denoised, residual).double() * (stop - start)
    if dist is not None:
        dist.all_reduce_sum(total)
    return float(total) / len(noisy)


@torch.no_grad()
def denoise(model: torch.nn.Module, noisy: np.ndarray, *, batch_size: int | None = None,
            device: str = "cpu") -> np.ndarray:
    """Apply a residual denoiser to (n, H, W) normalised images → (n, H, W) float32.

    A :class:`~nacode.denoise.dncnn.ResidualDnCNN` runs in the float32
    :class:`~nacode.denoise.fast.InferenceEngine` (batch norm folded, channels-last,
    :data:`~nacode.denoise.fast.CPU_BATCH` images per pass on the CPU): on two cores
    1.5–2.4× faster per slice than the eager model in batches of 32 (``nacode bench
    --compare``), equal to it up to float32 rounding. Any other module ``x ↦ (denoised, …)``
    runs eagerly, ``batch_size`` (default 32) images at a time.
    """
    from nacode.denoise.dncnn import ResidualDnCNN
    from nacode.denoise.fast import InferenceEngine

    x = torch.from_numpy(np.asarray(noisy, np.float32))
    if isinstance(model, ResidualDnCNN):
        engine = InferenceEngine(model.eval(), device, dtype=torch.float32,
                                 batch_size=batch_size)
        return engine(x).cpu().numpy()
    model.eval().to(device)
    step = batch_size or 32
    with torch.no_grad():
        out = [model(x[i:i + step, None].to(device))[0].cpu() for i in range(0, len(x), step)]
    return torch.cat(out)[:, 0].numpy()


def _flatten_optimiser(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, layout = {}, {"param_groups": state_dict["param_groups"], "state": {}}
    for index, values in state_dict["state"].items():
        layout["state"][str(index)] = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value
                layout["state"][str(index)][key] = "tensor"
            else:
                layout["state"][str(index)][key] = value
    return tensors, layout


def _unflatten_optimiser(tensors: dict[str, torch.Tensor], layout: dict) -> dict:
    state = {}
    for index, values in layout["state"].items():
        state[int(index)] = {key: tensors[f"optim.{index}.{key}"] if value == "tensor" else value
                             for key, value in values.items()}
    return {"state": state, "param_groups": layout["param_groups"]}
