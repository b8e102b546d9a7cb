"""Coils: maps, bias field, sum-of-squares and adaptive (Walsh) combination."""

from __future__ import annotations

import numpy as np
import pytest

from nacode.physics import coils, noise


def test_coil_maps_shape_and_normalisation():
    maps = coils.coil_maps((48, 48), 8)
    assert maps.shape == (8, 48, 48)
    assert coils.sum_of_squares(maps).max() == pytest.approx(1.0)
    assert coils.coil_maps((12, 12, 12), 8).shape == (8, 12, 12, 12)
    with pytest.raises(ValueError, match="2D or 3D"):
        coils.coil_maps((4,), 8)


def test_bias_field_is_positive_smooth_and_identity_at_zero():
    assert np.allclose(coils.bias_field((16, 16), np.zeros(6)), 1.0)
    field = coils.bias_field((32, 32), np.array([0.0, 0.2, -0.1, 0.05, 0.0, -0.05]))
    assert field.min() > 0 and np.abs(np.diff(np.log(field), axis=0)).max() < 0.05
    with pytest.raises(ValueError, match="polynomial order"):
        coils.bias_field((8, 8), np.zeros(5))


def snr_map(combine, maps, psi, n_trials=60, seed=0):
    """Pixel-wise SNR (mean / SD over noise realisations) of a combined uniform object."""
    rng = np.random.default_rng(seed)
    clean = maps * 1.0  # uniform object of intensity 1
    stack = np.stack([np.abs(combine(clean + noise.coil_noise(maps.shape[1:], psi, rng)))
                      for _ in range(n_trials)])
    return stack.mean(0) / stack.std(0)


def test_adaptive_combination_beats_sum_of_squares_with_correlated_noise():
    maps = coils.coil_maps((24, 24), 8)
    psi = 0.05**2 * noise.correlated_covariance(8, correlation=0.5, seed=1)
    sos = snr_map(coils.sum_of_squares, maps, psi)
    adaptive = snr_map(lambda x: coils.walsh(x, psi, window=5), maps, psi)
    centre = (slice(6, 18), slice(6, 18))
    gain = np.median(adaptive[centre]) / np.median(sos[centre])
    print(f"Walsh / sum-of-squares SNR on a uniform object, correlated noise: {gain:.2f}")
    assert gain > 1.05


def test_walsh_recovers_a_noiseless_object_up_to_the_coil_norm():
    maps = coils.coil_maps((16, 16), 4)
    obj = np.linspace(1, 2, 256).reshape(16, 16)
    expected = coils.sum_of_squares(maps) * obj
    # one-pixel window: the weights are the pixel's own coil vector, exactly
    assert np.allclose(np.abs(coils.walsh(maps * obj, window=1)), expected, rtol=1e-9)
    # a 5x5 window averages slowly varying sensitivities: close, not exact
    assert np.allclose(np.abs(coils.walsh(maps * obj, window=5)), expected, rtol=0.02)
