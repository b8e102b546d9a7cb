"""Worker of ``tests/test_distributed.py``: two tiny trainings, alone or under torchrun.

``python tests/ddp_worker.py OUT`` trains in one process;
``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py OUT``
trains the same with two gloo processes. Each run writes its checkpoints and provenance to
``OUT/<run>/`` (rank 0 only) and each process the records it got back to
``OUT/returned-rank<r>.json``.

Runs (24 × 24 seeded synthetic discs with Gaussian noise, 20 validation pairs, 3 epochs):

``calf``
    ``ResidualDnCNN(blocks=1, channels=8)`` (with batch norm) and the paper's ``calf_loss``;
    64 training pairs in global batches of 16 (shards 8 | 8).
``exact``
    a batch-norm-free residual CNN and the SSIM loss alone (a mean over samples), so two
    processes must reproduce one up to rounding; 61 training pairs in global batches of 15,
    so the shards are uneven (8 | 7) and the last batch (1 sample) leaves rank 1's empty.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

N_TRAIN, N_VAL = 64, 20  # validation batches of 16 and 4 (15 and 5): one per process


def synthetic_pairs(n: int, size: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean), each (n, size, size) float32: bright discs on a dim background."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    clean = np.empty((n, size, size), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(6, size - 6, 2)
        radius = rng.uniform(3, 7)
        clean[i] = 0.1 + rng.uniform(0.5, 0.8) * ((x - cx) ** 2 + (y - cy) ** 2 < radius**2)
    noisy = (clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32)
    return noisy, clean


class PlainResidual(nn.Module):
    """Two convolutions without batch norm; returns ``(denoised, residual)``."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(1, channels, 3), nn.ReLU(),
                                  nn.ReflectionPad2d(1), nn.Conv2d(channels, 1, 3))

    def forward(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        residual = self.body(noisy)
        return noisy + residual, residual


def ssim_only(clean, noisy, denoised, residual) -> torch.Tensor:
    """``1 − mean SSIM``: a mean over samples, so sharding changes nothing."""
    from nacode.denoise.losses import ssim_loss

    return ssim_loss(clean, denoised)


def run_all(out: Path, dist=None) -> dict[str, dict]:
    """Train the runs into ``out/<run>`` (see the module docstring); return the records.

    Besides ``calf`` and ``exact``: ``resumed_first``, the ``exact`` run cut short by a zero
    time budget after its first epoch, and ``resumed``, the same folder trained again, which
    resumes from the last checkpoint and must end where ``exact`` did.
    """
    from nacode.denoise.dncnn import ResidualDnCNN
    from nacode.denoise.losses import calf_loss
    from nacode.denoise.trainer import TrainConfig, train

    data = synthetic_pairs(N_TRAIN + N_VAL)
    val = (data[0][N_TRAIN:], data[1][N_TRAIN:])
    runs = {  # name: (model, loss, training pairs, global batch, learning rate, folder, budget)
        "calf": (lambda: ResidualDnCNN(blocks=1, channels=8), calf_loss, 64, 16, 2e-3, "calf",
                 None),
        "exact": (PlainResidual, ssim_only, 61, 15, 1e-3, "exact", None),
        "resumed_first": (PlainResidual, ssim_only, 61, 15, 1e-3, "resumed", 0.0),
        "resumed": (PlainResidual, ssim_only, 61, 15, 1e-3, "resumed", None),
    }
    records = {}
    for name, (build, loss_fn, n_train, batch_size, lr, folder, budget) in runs.items():
        torch.manual_seed(7)
        config = TrainConfig(epochs=3, batch_size=batch_size, learning_rate=lr, seed=3)
        records[name] = train(build(), loss_fn, (data[0][:n_train], data[1][:n_train]), val,
                              out / folder, folder, config, time_budget_s=budget,
                              progress=False, dist=dist)
    return records


def main(out: Path) -> None:
    """Train under torchrun's environment (or alone) and write what this process got back."""
    from nacode.denoise.distributed import init_from_env

    dist = init_from_env("cpu")
    try:
        records = run_all(out, dist)
        (out / f"returned-rank{dist.rank}.json").write_text(json.dumps(records, indent=1),
                                                            encoding="utf-8")
    finally:
        dist.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
