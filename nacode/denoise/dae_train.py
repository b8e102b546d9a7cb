"""Training the patch autoencoder: patches gathered on the device, early stopping on validation.

The brain paper trains on every brain voxel of every training acquisition: input the 5³
patch of one acquisition with added Gaussian noise, label the centre voxel of the mean of
the subject's three acquisitions; Adam (learning rate 1e-4), batch 128, MSE, and training
ends once the validation loss has not improved for more than eight epochs. Here the
volumes stay on the device and each batch is gathered by index (:func:`extract_patches`), so
an epoch of ~800,000 patches costs no host-device traffic; the added noise is redrawn every
epoch from a generator seeded by ``(seed, epoch)``.

Outputs, in ``out_dir``: ``<name>.safetensors`` (the best epoch's weights) and
``<name>.json`` (provenance: commit, device, epochs, loss history, wall time, data sizes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nacode.denoise.dae import PATCH, PatchDAE, extract_patches, interior_centres, patch_offsets
from nacode.denoise.trainer import _save_tensors
from nacode.results import write_json


@dataclass(frozen=True)
class PatchSet:
    """Volumes and the voxels to learn from.

    Attributes
    ----------
    inputs : ndarray, shape (V, X, Y, Z), float32
        One acquisition per volume, normalised.
    targets : ndarray, shape (V, X, Y, Z), float32
        The label volume of each input (the mean of its subject's acquisitions).
    masks : ndarray of bool, shape (V, X, Y, Z)
        Voxels used as patch centres (the brain mask), ≥ 2 voxels from every face.
    noise_sd : ndarray, shape (V,)
        SD of the Gaussian noise added to each input during training (0 for validation).
    """

    inputs: np.ndarray
    targets: np.ndarray
    masks: np.ndarray
    noise_sd: np.ndarray

    def __post_init__(self) -> None:
        if not (self.inputs.shape == self.targets.shape == self.masks.shape
                and self.inputs.ndim == 4 and self.noise_sd.shape == self.inputs.shape[:1]):
            raise ValueError(f"inconsistent patch set: inputs {self.inputs.shape}, targets "
                             f"{self.targets.shape}, masks {self.masks.shape}, noise_sd "
                             f"{self.noise_sd.shape}")

    def __len__(self) -> int:
        return int(self.masks.sum())

    def centres(self) -> np.ndarray:
        """Flat indices over the stack of every masked voxel."""
        return interior_centres(self.masks)


@dataclass
class DAEConfig:
    """Hyper-parameters of one autoencoder training (the paper's unless stated)."""

    max_epochs: int = 200
    patience: int = 8
    batch_size: int = 128
    learning_rate: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    profile: str = "quick"
    max_patches: int | None = None  # subsample each epoch (quick demos); None = all
    cuda_graph: bool = True  # replay each step from a CUDA graph on a GPU
    extra: dict[str, Any] = field(default_factory=dict)


def _device_set(data: PatchSet, device: torch.device):
    to = {"device": device}
    return (torch.as_tensor(data.inputs, **to), torch.as_tensor(data.targets, **to).reshape(-1),
            torch.as_tensor(data.noise_sd, dtype=torch.float32, **to),
            torch.as_tensor(data.centres(), **to))


class _Stepper:
    """One Adam step on a batch of patch centres: eager, or replayed from a CUDA graph.

    On a GPU a step of this small network is a few dozen tiny kernels, so Python and launch
    overhead dominate; capturing gather, forward, backward and Adam once in a CUDA graph
    (PyTorch's whole-network capture, with a capturable Adam) and replaying it removes that.
    The graph needs fixed shapes, so in graph mode the last, partial batch of an epoch is
    dropped (< ``batch_size`` of ~800,000 patches). If capture fails the stepper stays eager.
    """

    def __init__(self, model, noisy: torch.Tensor, targets: torch.Tensor, config: DAEConfig):
        self.model, self.noisy, self.targets = model, noisy, targets
        self.batch_size = config.batch_size
        self.offsets = torch.as_tensor(patch_offsets(noisy.shape), device=noisy.device)
        cuda = noisy.device.type == "cuda"
        extra = {"fused": True, "capturable": True} if cuda else {}
        self.optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, **extra)
        self.graph, self.static_index, self.static_loss = None, None, None
        self.want_graph = cuda and config.cuda_graph
        self.mode = "eager"

    def _loss(self, index: torch.Tensor) -> torch.Tensor:
        patches = self.noisy.reshape(-1)[index[:, None] + self.offsets[None, :]]
        pred = self.model(patches.reshape(-1, 1, PATCH, PATCH, PATCH))
        return torch.mean((pred - self.targets[index]) ** 2)

    def _eager(self, index: torch.Tensor) -> torch.Tensor:
        self.optimiser.zero_grad(set_to_none=True)
        loss = self._loss(index)
        loss.backward()
        self.optimiser.step()
        return loss.detach()

    def capture(self, warmup: list[torch.Tensor]) -> int:
        """Run ``warmup`` batches eagerly on a side stream, then capture; returns their count."""
        if not self.want_graph or len(warmup) < 3:
            return 0
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for index in warmup:
                    self._eager(index)
            torch.cuda.current_stream().wait_stream(stream)
            self.static_index = warmup[0].clone()
            graph = torch.cuda.CUDAGraph()
            self.optimiser.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                self.static_loss = self._loss(self.static_index)
                self.static_loss.backward()
                self.optimiser.step()
            self.graph, self.mode = graph, "cuda_graph"
        except RuntimeError as exc:  # fall back to eager steps, and say so in provenance
            self.mode = f"eager (CUDA graph capture failed: {str(exc).splitlines()[0]})"
        return len(warmup)

    def step(self, index: torch.Tensor) -> torch.Tensor | None:
        """One step; in graph mode a partial batch is skipped (returns None)."""
        if self.graph is None:
            return self._eager(index)
        if len(index) != self.batch_size:
            return None
        self.static_index.copy_(index)
        self.graph.replay()
        return self.static_loss.detach().clone()


@torch.no_grad()
def patch_loss(model: PatchDAE, inputs: torch.Tensor, targets: torch.Tensor,
               centres: torch.Tensor, batch_size: int = 4096) -> float:
    """Mean squared error of the model's centre predictions over all ``centres``."""
    model.eval()
    total = torch.zeros((), device=inputs.device, dtype=torch.float64)
    for start in range(0, len(centres), batch_size):
        index = centres[start:start + batch_size]
        pred = model(extract_patches(inputs, index))
        total += ((pred - targets[index]) ** 2).sum(dtype=torch.float64)
    return float(total) / len(centres)


def train_dae(train: PatchSet, val: PatchSet, out_dir: str | Path, name: str,
              config: DAEConfig, *, time_budget_s: float | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Train a :class:`PatchDAE` with early stopping; keep the best validation epoch.

    Parameters
    ----------
    train, val : PatchSet
        Training volumes (noise added each epoch) and validation volumes (used as given).
    out_dir, name : path, str
        Where ``<name>.safetensors`` and ``<name>.json`` are written (atomically).
    config : DAEConfig
        Optimiser, batch size, patience, epoch cap, seed and device.
    time_budget_s : float, optional
        Stop after the epoch during which this wall time is exceeded (recorded).
    progress : bool
        Show a tqdm bar over epochs with the losses.

    Returns
    -------
    dict
        The provenance record, with the per-epoch ``history`` of training and validation MSE.
    """
    from tqdm.auto import tqdm

    from nacode.provenance import git_commit, package_versions

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = PatchDAE().to(device)
    inputs, targets, noise_sd, centres = _device_set(train, device)
    val_inputs, val_targets, _, val_centres = _device_set(val, device)
    sd = noise_sd[:, None, None, None]
    noisy = torch.empty_like(inputs)  # a fixed buffer: the CUDA graph reads it in place
    stepper = _Stepper(model, noisy, targets, config)
    history, best, best_epoch, stale = [], float("inf"), 0, 0
    start = time.perf_counter()
    stopped_by_budget = False
    bar = tqdm(range(config.max_epochs), desc=name, disable=not progress)
    for epoch in bar:
        model.train()
        generator = torch.Generator(device=device).manual_seed(
            int(np.random.SeedSequence([config.seed, epoch]).generate_state(1)[0]))
        noisy.copy_(inputs + sd * torch.randn(inputs.shape, generator=generator, device=device))
        order = centres[torch.randperm(len(centres), generator=generator, device=device)]
        if config.max_patches is not None:
            order = order[:config.max_patches]
        batches = list(torch.split(order, config.batch_size))
        running = torch.zeros((), device=device, dtype=torch.float64)
        seen = 0
        if epoch == 0:
            done = stepper.capture(batches[:3])
            batches = batches[done:]
        for index in batches:
            loss = stepper.step(index)
            if loss is not None:
                running += loss * len(index)
                seen += len(index)
        train_loss = float(running) / max(seen, 1)
        val_loss = patch_loss(model, val_inputs, val_targets, val_centres)
        history.append({"epoch": epoch + 1, "train_mse": train_loss, "val_mse": val_loss})
        if val_loss < best:
            best, best_epoch, stale = val_loss, epoch + 1, 0
            _save_tensors(model.state_dict(), out_dir / f"{name}.safetensors",
                          {"epoch": epoch + 1})
        else:
            stale += 1
        bar.set_postfix(train=f"{train_loss:.2e}", val=f"{val_loss:.2e}", best=best_epoch)
        wall = time.perf_counter() - start
        if stale > config.patience:
            break
        if time_budget_s is not None and wall > time_budget_s:
            stopped_by_budget = epoch + 1 < config.max_epochs
            break
    record = {
        "name": name, **git_commit(Path(__file__).resolve().parents[2]),
        "model": "PatchDAE", "profile": config.profile, "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else "cpu"),
        "max_epochs": config.max_epochs, "patience": config.patience,
        "epochs_trained": len(history), "best_epoch": best_epoch, "best_val_mse": best,
        "early_stopped": stale > config.patience, "stopped_by_time_budget": stopped_by_budget,
        "time_budget_s": time_budget_s, "wall_s": round(time.perf_counter() - start, 1),
        "batch_size": config.batch_size, "learning_rate": config.learning_rate,
        "seed": config.seed, "step_mode": stepper.mode,
        "patches_per_epoch": (len(centres) if config.max_patches is None
                              else min(config.max_patches, len(centres))),
        "n_train_volumes": len(train.inputs), "n_val_volumes": len(val.inputs),
        "n_val_patches": len(val_centres), "history": history,
        "torch": package_versions().get("torch"), **config.extra,
    }
    write_json(out_dir / f"{name}.json", record)
    return record
