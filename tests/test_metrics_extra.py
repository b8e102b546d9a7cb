"""FSIM, Laplacian focus and the offline-only LPIPS of nacode.evaluate.metrics."""

from __future__ import annotations

import sys
import types
import urllib.request

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from nacode.evaluate.metrics import (
    LPIPS_UNAVAILABLE,
    fsim,
    laplacian_focus,
    lpips_available,
    lpips_distance,
)


@pytest.fixture
def phantom() -> np.ndarray:
    """A smooth 96 × 96 image scaled to [0, 1]."""
    image = gaussian_filter(np.random.default_rng(0).random((96, 96)), 2.0)
    return (image - image.min()) / (image.max() - image.min())


def noisy(image: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    return np.clip(image + sigma * np.random.default_rng(seed).standard_normal(image.shape), 0, 1)


def test_fsim_of_an_image_with_itself_is_one(phantom):
    assert fsim(phantom, phantom) == pytest.approx(1.0, abs=1e-12)


def test_fsim_decreases_with_noise_and_is_symmetric(phantom):
    scores = [fsim(phantom, noisy(phantom, sigma)) for sigma in (0.02, 0.1, 0.3)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0
    image = noisy(phantom, 0.1)
    assert fsim(image, phantom) == pytest.approx(fsim(phantom, image), rel=1e-12)


def test_fsim_scales_by_data_range_and_clips_outside_it(phantom):
    image = noisy(phantom, 0.1)
    assert fsim(3 * phantom, 3 * image, data_range=3.0) == pytest.approx(fsim(phantom, image))
    out_of_range = image.copy()
    out_of_range[:10] += 2.0
    out_of_range[-10:] -= 2.0
    assert fsim(phantom, out_of_range) == pytest.approx(fsim(phantom, np.clip(out_of_range, 0, 1)))


def test_fsim_rejects_bad_input(phantom):
    with pytest.raises(ValueError, match="2D"):
        fsim(phantom[None], phantom[None])
    with pytest.raises(ValueError, match="data_range"):
        fsim(phantom, phantom, data_range=0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        fsim(phantom, phantom[:-1])


def test_laplacian_focus_is_zero_for_a_constant_image_and_drops_with_blur(phantom):
    assert laplacian_focus(np.full((32, 40), 0.7)) == 0.0
    sharp = np.zeros((64, 64))
    sharp[16:48, 16:48] = 1.0
    assert laplacian_focus(sharp) > laplacian_focus(gaussian_filter(sharp, 1.5)) > 0.0


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache, and any download attempt fails the test."""

    def no_download(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args} {kwargs}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(urllib.request, "urlopen", no_download)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path


def test_lpips_is_unavailable_without_cached_weights(offline, phantom):
    assert not lpips_available()
    assert lpips_distance(phantom, noisy(phantom, 0.1)) is None
    assert LPIPS_UNAVAILABLE == "unavailable: needs pretrained backbone weights"


def test_lpips_availability_needs_both_the_package_and_the_cached_backbone(offline, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", types.ModuleType("lpips"))  # a stand-in package
    assert not lpips_available()  # weights not cached
    (offline / "checkpoints").mkdir()
    (offline / "checkpoints" / "alexnet-owt-7be5be79.pth").write_bytes(b"")
    assert lpips_available()
    monkeypatch.setitem(sys.modules, "lpips", None)  # the package is not installed
    assert not lpips_available()
