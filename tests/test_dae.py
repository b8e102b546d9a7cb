"""The brain paper's patch autoencoder: fully convolutional equivalence, patches, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nacode.denoise.dae import (
    PatchDAE,
    denoise_volume,
    extract_patches,
    fully_convolutional,
    interior_centres,
)
from nacode.denoise.dae_train import DAEConfig, PatchSet, patch_loss, train_dae


def _random_model(seed: int = 0) -> PatchDAE:
    """PyTorch's default (Kaiming-uniform) initialisation, seeded."""
    torch.manual_seed(seed)
    return PatchDAE()


def test_fully_convolutional_network_equals_patchwise_inference_within_1e_5():
    model = _random_model()
    rng = np.random.default_rng(0)
    volume = rng.random((14, 12, 13)).astype(np.float32)
    mask = np.zeros(volume.shape, bool)
    mask[2:-2, 2:-2, 2:-2] = True
    centres = interior_centres(mask)
    with torch.no_grad():
        patchwise = model(torch.from_numpy(extract_patches(volume, centres))).numpy()
    whole = denoise_volume(model, volume, mask)
    assert np.abs(whole.reshape(-1)[centres] - patchwise).max() < 1e-5
    assert patchwise.std() > 1e-3  # the map varies: no layer is dead everywhere
    # the raw fully convolutional output is the same map
    net = fully_convolutional(model)
    with torch.no_grad():
        raw = net(torch.from_numpy(volume)[None, None])[0, 0].numpy()
    assert raw.shape == (10, 8, 9)
    np.testing.assert_allclose(raw.reshape(-1), whole[2:-2, 2:-2, 2:-2].reshape(-1), atol=1e-5)


def test_denoise_volume_keeps_voxels_outside_the_mask_and_handles_edges():
    model = _random_model(1)
    volume = np.random.default_rng(1).random((9, 9, 9)).astype(np.float32)
    mask = np.zeros(volume.shape, bool)
    mask[0, 4, 4] = mask[8, 8, 8] = True  # on the faces: zero padding, as patches would be
    out = denoise_volume(model, volume, mask)
    np.testing.assert_array_equal(out[~mask], volume[~mask])
    padded = np.pad(volume, 2)
    with torch.no_grad():
        expected = model(torch.from_numpy(np.stack([padded[0:5, 4:9, 4:9],
                                                    padded[8:13, 8:13, 8:13]])[:, None]))
    np.testing.assert_allclose(out[mask], expected.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        denoise_volume(model, np.full((9, 9, 9), np.nan), mask)


def test_patches_match_explicit_slices_for_numpy_torch_and_stacks():
    stack = np.arange(2 * 7 * 8 * 9, dtype=np.float32).reshape(2, 7, 8, 9)
    centre = np.ravel_multi_index((1, 3, 4, 5), stack.shape)
    expected = stack[1, 1:6, 2:7, 3:8]
    np.testing.assert_array_equal(extract_patches(stack, np.array([centre]))[0, 0], expected)
    got = extract_patches(torch.from_numpy(stack), torch.tensor([centre]))
    np.testing.assert_array_equal(got[0, 0].numpy(), expected)
    mask = np.zeros((7, 8, 9), bool)
    mask[1, 4, 4] = True
    with pytest.raises(ValueError, match="edge"):
        interior_centres(mask)
    with pytest.raises(ValueError, match="patches"):
        PatchDAE()(torch.zeros(2, 1, 3, 3, 3))


def _toy_set(rng: np.random.Generator, n: int, noise_sd: float) -> PatchSet:
    """Smooth volumes; inputs = clean + noise, targets = clean."""
    from scipy.ndimage import gaussian_filter

    clean = np.stack([gaussian_filter(rng.random((12, 12, 12)), 2.0) * 4 for _ in range(n)])
    inputs = clean + rng.normal(0, 0.05, clean.shape)
    masks = np.zeros(clean.shape, bool)
    masks[:, 2:-2, 2:-2, 2:-2] = True
    return PatchSet(inputs.astype(np.float32), clean.astype(np.float32), masks,
                    np.full(n, noise_sd, np.float32))


def test_training_lowers_the_validation_loss_and_is_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    train, val = _toy_set(rng, 4, 0.02), _toy_set(rng, 1, 0.0)
    config = DAEConfig(max_epochs=3, patience=8, batch_size=64, learning_rate=1e-3, seed=3)
    first = train_dae(train, val, tmp_path / "a", "toy", config, progress=False)
    second = train_dae(train, val, tmp_path / "b", "toy", config, progress=False)
    untrained = patch_loss(PatchDAE(), *(torch.as_tensor(a) for a in
                                         (val.inputs, val.targets.reshape(-1), val.centres())))
    assert first["best_val_mse"] < 0.5 * untrained
    assert first["history"][-1]["train_mse"] < first["history"][0]["train_mse"]
    assert first["history"] == second["history"]
    assert (tmp_path / "a" / "toy.safetensors").read_bytes() == \
        (tmp_path / "b" / "toy.safetensors").read_bytes()
    record = json.loads((tmp_path / "a" / "toy.json").read_text())
    assert record["step_mode"] == "eager" and record["epochs_trained"] == 3
    assert record["patches_per_epoch"] == 4 * 8**3


def test_early_stopping_waits_patience_epochs_after_the_best(tmp_path):
    rng = np.random.default_rng(1)
    train, val = _toy_set(rng, 2, 0.02), _toy_set(rng, 1, 0.0)
    config = DAEConfig(max_epochs=50, patience=2, batch_size=256, learning_rate=0.05, seed=0)
    record = train_dae(train, val, tmp_path, "stop", config, progress=False)
    assert record["early_stopped"]
    assert record["epochs_trained"] == record["best_epoch"] + 3
    best = min(h["val_mse"] for h in record["history"])
    assert record["best_val_mse"] == best


def test_patch_set_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match="inconsistent"):
        PatchSet(np.zeros((2, 8, 8, 8), np.float32), np.zeros((2, 8, 8, 8), np.float32),
                 np.zeros((1, 8, 8, 8), bool), np.zeros(2, np.float32))
