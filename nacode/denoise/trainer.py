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
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise ValueError(f"{path}: not a valid weight file for {type(model).__name__} "
                         f"({str(exc).splitlines()[0]})") from None
    return model


def _batches(n: int, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


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
) -> dict[str, Any]:
    """Train a residual denoiser on (noisy, clean) pairs; keep the best by validation loss.

    Parameters
    ----------
    model : torch.nn.Module
        Returns ``(denoised, residual)`` for a (batch, 1, H, W) input.
    loss_fn : callable
        ``loss_fn(clean, noisy, denoised, residual) -> scalar``.
    train_data, val_data : tuple of ndarray
        ``(noisy, clean)``, each (n, H, W) float32.
    out_dir, name : path, str
        Where the checkpoints and provenance go (see module docstring).
    config : TrainConfig
        Epochs, batch size, learning rate, seed, device, profile.
    time_budget_s : float, optional
        Stop after the epoch during which this wall time is exceeded (recorded).
    progress : bool
        Show a tqdm bar per epoch with the running loss.

    Returns
    -------
    dict
        The provenance record (also written to ``<name>.json``).
    """
    from tqdm.auto import tqdm

    from nacode.book import git_commit, package_versions

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path = out_dir / f"{name}.safetensors", out_dir / f"{name}.last.safetensors"
    last_json = out_dir / f"{name}.last.json"
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_val": float("inf"),
                             "wall_s": 0.0}
    if last_path.is_file() and last_json.is_file():  # resume
        from safetensors.torch import load_file

        saved = load_file(str(last_path))
        model.load_state_dict({k[6:]: v for k, v in saved.items() if k.startswith("model.")})
        opt_state = json.loads(last_json.read_text(encoding="utf-8"))
        optimiser.load_state_dict(_unflatten_optimiser(saved, opt_state["optimiser"]))
        state = opt_state["state"]

    noisy_t, clean_t = (torch.from_numpy(np.asarray(a, np.float32))[:, None] for a in train_data)
    val_noisy, val_clean = (torch.from_numpy(np.asarray(a, np.float32))[:, None]
                            for a in val_data)
    start = time.perf_counter() - state["wall_s"]
    stopped_early = False
    while state["epoch"] < config.epochs:
        model.train()
        running, count = 0.0, 0
        # the batch order depends on (seed, epoch) only, so a resumed run repeats it exactly
        rng = np.random.default_rng([config.seed, state["epoch"]])
        batches = list(_batches(len(noisy_t), config.batch_size, rng))
        bar = tqdm(batches, desc=f"{name} epoch {state['epoch'] + 1}/{config.epochs}",
                   disable=not progress, leave=False)
        for index in bar:
            noisy, clean = noisy_t[index].to(device), clean_t[index].to(device)
            optimiser.zero_grad(set_to_none=True)
            denoised, residual = model(noisy)
            loss = loss_fn(clean, noisy, denoised, residual)
            loss.backward()
            optimiser.step()
            running += float(loss.detach()) * len(index)
            count += len(index)
            bar.set_postfix(loss=f"{running / count:.4f}")
        val_loss = evaluate_loss(model, loss_fn, val_noisy, val_clean, config.batch_size,
                                 device)
        state["epoch"] += 1
        state["history"].append({"epoch": state["epoch"], "train_loss": running / count,
                                 "val_loss": val_loss})
        if val_loss < state["best_val"]:
            state["best_val"] = val_loss
            state["best_epoch"] = state["epoch"]
            _save_tensors(model.state_dict(), best_path, {"epoch": state["epoch"]})
        state["wall_s"] = time.perf_counter() - start
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        flat, layout = _flatten_optimiser(optimiser.state_dict())
        tensors.update(flat)
        _save_tensors(tensors, last_path)
        write_json(last_json, {"state": state, "optimiser": layout})
        if time_budget_s is not None and state["wall_s"] > time_budget_s:
            stopped_early = state["epoch"] < config.epochs
            break

    record = {
        "name": name, **git_commit(Path(__file__).resolve().parents[2]),
        "profile": config.profile, "device": config.device,
        "epochs_requested": config.epochs, "epochs_trained": state["epoch"],
        "stopped_by_time_budget": stopped_early, "time_budget_s": time_budget_s,
        "best_epoch": state.get("best_epoch"), "best_val_loss": state["best_val"],
        "wall_s": round(state["wall_s"], 1), "batch_size": config.batch_size,
        "learning_rate": config.learning_rate, "seed": config.seed,
        "n_train": len(noisy_t), "n_val": len(val_noisy), "history": state["history"],
        "torch": package_versions().get("torch"), **config.extra,
    }
    write_json(out_dir / f"{name}.json", record)
    if not stopped_early:
        last_path.unlink(missing_ok=True)
        last_json.unlink(missing_ok=True)
    return record


@torch.no_grad()
def evaluate_loss(model, loss_fn, noisy: torch.Tensor, clean: torch.Tensor, batch_size: int,
                  device) -> float:
    """Mean loss over a dataset in evaluation mode (batch norm uses running statistics)."""
    model.eval()
    total = 0.0
    for index in _batches(len(noisy), batch_size, None):
        x, y = noisy[index].to(device), clean[index].to(device)
        denoised, residual = model(x)
        total += float(loss_fn(y, x, denoised, residual)) * len(index)
    return total / len(noisy)


@torch.no_grad()
def denoise(model: torch.nn.Module, noisy: np.ndarray, *, batch_size: int = 32,
            device: str = "cpu") -> np.ndarray:
    """Apply a residual denoiser to (n, H, W) normalised images → (n, H, W) float32."""
    model.eval().to(device)
    x = torch.from_numpy(np.asarray(noisy, np.float32))[:, None]
    out = [model(x[i:i + batch_size].to(device))[0].cpu() for i in range(0, len(x), batch_size)]
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
