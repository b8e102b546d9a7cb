"""The calf paper's 1H preparation: pad, k-space downsample, simulated tube."""

from __future__ import annotations

import numpy as np
import pytest

from nacode.physics import proton


def test_reflect_pad_square():
    image = np.arange(12.0).reshape(3, 4)
    padded = proton.reflect_pad_square(image)
    assert padded.shape == (4, 4)
    assert np.array_equal(padded[:3], image) and np.array_equal(padded[3], image[1])
    with pytest.raises(ValueError, match="2D"):
        proton.reflect_pad_square(np.zeros((2, 2, 2)))


def test_kspace_downsample_preserves_intensity_and_low_frequencies():
    assert np.allclose(proton.kspace_downsample(np.full((320, 320), 3.0), 80), 3.0)
    n = 256
    y, x = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    smooth = np.exp(-(x**2 + y**2) / (2 * 30.0**2))
    small = proton.kspace_downsample(smooth, 64)
    ys, xs = np.meshgrid(np.arange(64) - 32, np.arange(64) - 32, indexing="ij")
    # the fine Gaussian's tails wrap around by ~1e-4 at the border (periodic FFT)
    assert np.allclose(small, np.exp(-(xs**2 + ys**2) / (2 * 7.5**2)), atol=1e-4)


def test_tube_matches_the_paper():
    rng = np.random.default_rng(4)
    image = rng.uniform(0.5, 1.5, (80, 80))
    prepared = proton.add_tube(image, rng)
    row, col = prepared.centre
    distances = (min(row, 79 - row), min(col, 79 - col))
    assert all(9 <= d <= 15 for d in distances)
    assert prepared.image[row, col] == pytest.approx(7.5 * image.mean(), rel=1e-6)
    # a 12-pixel disc: area π 6² within the blur
    assert prepared.tube.sum() == pytest.approx(np.pi * 36, rel=0.1)
    assert np.allclose(prepared.image[prepared.tube == 0], image[prepared.tube == 0])


def test_corners_are_all_used_and_seeded():
    centres = {proton.add_tube(np.ones((80, 80)), np.random.default_rng(s)).centre[0] < 40
               for s in range(40)}
    assert centres == {True, False}
    a = proton.prepare_proton(np.ones((100, 120)), np.random.default_rng(1))
    b = proton.prepare_proton(np.ones((100, 120)), np.random.default_rng(1))
    assert np.array_equal(a.image, b.image) and a.image.shape == (80, 80)


def test_nan_input_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        proton.prepare_proton(np.full((90, 90), np.nan), np.random.default_rng(0))
