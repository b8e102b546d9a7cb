"""Deep image prior: grouped U-Net copies are independent networks; the fit obeys its rules."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from nacode.denoise.dip import DIPConfig, fit
from nacode.denoise.priors import fuse
from nacode.denoise.unet import GroupedUNet
from nacode.physics.toeplitz import SenseNormal
from nacode.physics.torch_nufft import TorchNufft


def test_grouped_unet_copies_are_independent_networks():
    torch.manual_seed(0)
    grouped = GroupedUNet(3, in_channels=2, base=4, levels=3)
    single = GroupedUNet(1, in_channels=2, base=4, levels=3)
    noise = grouped.input_noise((16, 16), torch.Generator().manual_seed(1))
    g = 1
    with torch.no_grad():
        for (_, big), (_, small) in zip(grouped.state_dict().items(),
                                        single.state_dict().items(), strict=True):
            if big.ndim == 0:  # batch-norm counters
                small.copy_(big)
                continue
            rows = big.shape[0] // 3
            small.copy_(big[g * rows:(g + 1) * rows])
        out = grouped(noise)
        alone = single(noise[:, g * 2:(g + 1) * 2])
    assert out.shape == (3, 16, 16)
    torch.testing.assert_close(out[g], alone[0], atol=1e-5, rtol=1e-5)
    # the output of copy 0 does not depend on copy 1's input
    changed = noise.clone()
    changed[:, 2:4] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(grouped(changed)[0], out[0])
    with pytest.raises(ValueError, match="divisible"):
        grouped(torch.zeros(1, 6, 15, 16))


def _problem(copies: int = 2, n: int = 16, seed: int = 0):
    """A tiny 2-coil radial problem with a known disc image per copy."""
    rng = np.random.default_rng(seed)
    angles = np.arange(12) * 2 * np.pi / 12
    radius = np.linspace(0, n / 2, n)
    coord = np.stack([np.outer(np.sin(angles), radius), np.outer(np.cos(angles), radius)], -1)
    nufft = TorchNufft.from_coord((n, n), coord.reshape(-1, 2), dtype=torch.float64)
    y, x = np.mgrid[:n, :n] - n / 2
    truth = np.stack([(y**2 + x**2 <= (3 + c) ** 2).astype(float) for c in range(copies)])
    maps = np.stack([np.exp(1j * (x / n)) * (1 + 0.3 * c * y / n) for c in range(2)])
    maps = torch.as_tensor(np.broadcast_to(maps, (copies, 2, n, n)).copy())
    clean = nufft(maps * torch.as_tensor(truth)[:, None])
    kspace = clean + 0.02 * torch.as_tensor(rng.standard_normal(clean.shape)
                                            + 1j * rng.standard_normal(clean.shape))
    weights = torch.as_tensor(np.tile(np.abs(radius) + 0.5, 12))
    return SenseNormal(coord.reshape(-1, 2), maps, weights, kspace), nufft, truth


def test_dip_fits_the_data_and_stops_by_the_moving_variance_rule():
    term, _nufft, truth = _problem()
    config = DIPConfig(max_iter=150, learning_rate=0.01, base=4, levels=3, window=8,
                       patience=40, seed=0)
    result = fit(term, config)
    assert result.images.shape == truth.shape and result.bias.shape == truth.shape
    np.testing.assert_array_equal(result.bias, 1.0)
    assert np.all(result.stop_iteration >= config.window)
    assert np.all(result.stop_iteration <= result.iterations)
    error = [np.mean((result.images[c] - truth[c]) ** 2) for c in range(2)]
    assert max(error) < 0.5 * min(np.mean(t**2) for t in truth)  # far better than zero
    again = fit(term, config)
    np.testing.assert_array_equal(again.images, result.images)  # seeded


def test_zero_weights_give_the_plain_dip_and_fusion_terms_change_it():
    term, _nufft, truth = _problem()
    t = torch.as_tensor(truth)
    prior = fuse(t, t + 0.1, alpha=0.5)
    base = DIPConfig(max_iter=60, base=4, levels=3, window=8, patience=40, seed=3)
    plain = fit(term, base)
    zero = fit(term, base, prior)
    np.testing.assert_array_equal(plain.images, zero.images)
    fused = fit(term,
                DIPConfig(**{**base.__dict__, "lam_dtv": 0.05, "lam_gc": 0.05,
                             "lam_bias": 0.1, "fit_bias": True}), prior)
    assert not np.array_equal(fused.images, plain.images)
    assert np.all(fused.bias > 0) and not np.allclose(fused.bias, 1.0)
    with pytest.raises(ValueError, match="prior"):
        fit(term, DIPConfig(max_iter=2, lam_dtv=0.1))


def test_callback_sees_every_kth_output_without_changing_the_fit():
    term, _nufft, _ = _problem()
    config = DIPConfig(max_iter=20, base=4, levels=3, window=4, patience=100, seed=1)
    seen = []
    traced = fit(term, config,
                 callback=lambda i, images: seen.append((i, images.shape)), every=5)
    plain = fit(term, config)
    assert seen == [(i, (2, 16, 16)) for i in (5, 10, 15, 20)]
    np.testing.assert_array_equal(traced.images, plain.images)


def test_run_to_end_keeps_each_copys_es_wmv_output_frozen_at_its_stop():
    term, _, _ = _problem()
    config = DIPConfig(max_iter=200, learning_rate=0.03, base=4, levels=3, window=4,
                       patience=10, seed=2, lam_dtv=(0.0, 0.0))
    both = fit(term, config, run_to_end=True)
    assert both.iterations == 200 and np.any(both.stop_iteration + 10 < 200)
    early = fit(term, replace(config, lam_dtv=0.0))
    np.testing.assert_array_equal(early.images, both.images)  # frozen at each copy's stop
    np.testing.assert_array_equal(early.stop_iteration, both.stop_iteration)
    with pytest.raises(ValueError, match="copies"):
        fit(term, DIPConfig(max_iter=2, base=4, levels=3, lam_dtv=(0.1, 0.1, 0.1)),
            fuse(torch.ones(2, 16, 16), torch.ones(2, 16, 16)))
