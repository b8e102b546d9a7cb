"""The calf CNN: architecture, losses, training, checkpoints and resumption."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nacode.denoise import losses
from nacode.denoise.dncnn import ResidualDnCNN
from nacode.denoise.trainer import TrainConfig, denoise, load_weights, train
from nacode.evaluate import metrics


def test_architecture_matches_the_paper():
    model = ResidualDnCNN()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    pads = [m for m in model.modules() if isinstance(m, torch.nn.ReflectionPad2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 1 + 2 * 8 + 2 and len(pads) == len(convs)
    assert len(norms) == 2 * 8 + 1
    assert all(c.kernel_size == (3, 3) for c in convs) and convs[-1].out_channels == 1
    x = torch.rand(2, 1, 80, 80)
    denoised, residual = model(x)
    assert denoised.shape == x.shape and torch.allclose(denoised, x + residual)
    with pytest.raises(ValueError, match="batch, 1, H, W"):
        model(torch.rand(2, 80, 80))


def test_ssim_matches_scikit_image_and_is_one_for_identical_images():
    rng = np.random.default_rng(0)
    a = rng.random((40, 40))
    b = np.clip(a + 0.05 * rng.standard_normal((40, 40)), 0, 1)
    ours = float(losses.ssim(torch.tensor(a)[None, None], torch.tensor(b)[None, None]))
    assert ours == pytest.approx(metrics.ssim(a, b), abs=1e-6)
    same = torch.tensor(a)[None, None]
    assert float(losses.ssim_loss(same, same)) == pytest.approx(0.0, abs=1e-7)


def test_jensen_shannon_distance_properties():
    p = torch.rand(1000, dtype=torch.float64)
    assert float(losses.jensen_shannon_distance(p, p)) == pytest.approx(0.0, abs=1e-5)
    assert float(losses.jensen_shannon_distance(p, 3 * p)) == pytest.approx(0.0, abs=1e-5)
    disjoint = torch.zeros(10, dtype=torch.float64)
    disjoint[0] = 1.0
    other = torch.zeros(10, dtype=torch.float64)
    other[1] = 1.0
    assert float(losses.jensen_shannon_distance(disjoint, other)) == pytest.approx(1.0, abs=1e-5)
    q = torch.rand(1000, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: losses.jensen_shannon_distance(p, t + 0.5), (q,))


def tiny_data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:16, :16]
    clean = np.stack([((x - rng.integers(4, 12)) ** 2 + (y - 8) ** 2 < 20).astype(np.float32)
                      * 0.8 + 0.1 for _ in range(n)])
    noisy = (clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32)
    return noisy, clean


def seeded_model(seed=5):
    torch.manual_seed(seed)
    return ResidualDnCNN(blocks=1, channels=8)


def test_training_lowers_the_loss_and_writes_provenance(tmp_path):
    data = tiny_data()
    config = TrainConfig(epochs=6, batch_size=8, learning_rate=1e-3, seed=1)
    record = train(seeded_model(), losses.calf_loss, data, data, tmp_path, "tiny", config,
                   progress=False)
    train_loss = [h["train_loss"] for h in record["history"]]
    assert train_loss[-1] < 0.8 * train_loss[0]
    assert record["best_val_loss"] < record["history"][0]["val_loss"]
    provenance = json.loads((tmp_path / "tiny.json").read_text(encoding="utf-8"))
    for key in ("commit", "profile", "device", "epochs_trained", "wall_s", "best_val_loss"):
        assert key in provenance
    assert not (tmp_path / "tiny.last.safetensors").exists()  # completed: no resume state
    model = load_weights(ResidualDnCNN(blocks=1, channels=8), tmp_path / "tiny.safetensors")
    assert denoise(model, data[0][:3]).shape == (3, 16, 16)


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    data = tiny_data()
    config = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3, seed=2)
    straight = train(seeded_model(), losses.calf_loss, data, data,
                     tmp_path / "a", "m", config, progress=False)
    first = train(seeded_model(), losses.calf_loss, data, data,
                  tmp_path / "b", "m", config, time_budget_s=0.0, progress=False)
    assert first["epochs_trained"] == 1 and first["stopped_by_time_budget"]
    resumed = train(seeded_model(99), losses.calf_loss, data, data,
                    tmp_path / "b", "m", config, progress=False)
    assert resumed["epochs_trained"] == 2
    assert resumed["history"] == straight["history"]
    a = (tmp_path / "a" / "m.safetensors").read_bytes()
    b = (tmp_path / "b" / "m.safetensors").read_bytes()
    assert a == b


def test_tampered_or_foreign_weights_are_refused(tmp_path):
    from nacode.manifest import sha256_file

    data = tiny_data(8)
    train(ResidualDnCNN(blocks=1, channels=8), losses.calf_loss, data, data, tmp_path, "w",
          TrainConfig(epochs=1, batch_size=8), progress=False)
    path = tmp_path / "w.safetensors"
    digest = sha256_file(path)
    load_weights(ResidualDnCNN(blocks=1, channels=8), path, sha256=digest)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        load_weights(ResidualDnCNN(blocks=1, channels=8), path, sha256=digest)
    with pytest.raises(ValueError, match="not a valid weight file"):
        load_weights(ResidualDnCNN(blocks=2, channels=8), tmp_path / "w.safetensors")
