"""Toeplitz data term and the TV/dTV primal–dual reconstruction: exact references and
behaviour on small problems."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nacode.physics.nufft import density_compensation
from nacode.physics.toeplitz import SenseNormal, ToeplitzNormal
from nacode.physics.torch_nufft import TorchNufft
from nacode.physics.trajectory import Trajectory
from nacode.recon import variational as v


def _radial(n: int, spokes: int, reach: float = 1.0, samples: int | None = None) -> Trajectory:
    """Centre-out spokes to ``reach`` × N/2 (beyond 1 they cover the corners of k-space)."""
    angles = np.arange(spokes) * 2 * np.pi / spokes
    radius = np.linspace(0.0, reach * n / 2, samples or n)
    coord = np.stack([np.outer(np.sin(angles), radius), np.outer(np.cos(angles), radius)], -1)
    return Trajectory(coord=coord, times_ms=np.zeros(coord.shape[:2]), matrix=(n, n),
                      fov_mm=100.0, name="test radial")


def _phantom(n: int) -> np.ndarray:
    y, x = np.mgrid[:n, :n] - n / 2
    image = 0.3 * (y**2 / 0.8 + x**2 <= (0.42 * n) ** 2)
    image += 0.7 * ((y + 0.1 * n) ** 2 + (x - 0.1 * n) ** 2 <= (0.15 * n) ** 2)
    image += 0.4 * ((np.abs(y - 0.2 * n) < 0.08 * n) & (np.abs(x + 0.15 * n) < 0.12 * n))
    return image


def _maps(n: int, coils: int = 3) -> np.ndarray:
    y, x = (np.mgrid[:n, :n] - n / 2) / n
    return np.stack([(1 + 0.5 * np.cos(2 * np.pi * c / coils) * x
                      + 0.5 * np.sin(2 * np.pi * c / coils) * y) * np.exp(1j * (c + x))
                     for c in range(coils)]) / np.sqrt(coils)


def _problem(n: int = 24, rate: int = 1, sigma: float = 0.0, seed: int = 0, copies: int = 1,
             traj: Trajectory | None = None):
    """Batched multi-coil radial data of the phantom (complex128) at undersampling ``rate``."""
    traj = traj or _radial(n, int(np.ceil(np.pi * n / 4) * 4))
    coord = traj.coord.reshape(-1, 2)
    weights = density_compensation(traj)
    keep = np.zeros_like(weights)
    keep[::rate] = 1.0
    nufft = TorchNufft.from_coord((n, n), coord, dtype=torch.float64)
    truth = _phantom(n)
    maps = torch.as_tensor(np.broadcast_to(_maps(n), (copies, 3, n, n)).copy())
    clean = nufft(maps * torch.as_tensor(truth))
    rng = np.random.default_rng(seed)
    noise = sigma * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape))
    mask = torch.as_tensor(keep.reshape(-1))
    kspace = (clean + torch.as_tensor(noise)) * mask
    w = torch.as_tensor((weights * keep).reshape(-1)).expand(copies, -1).contiguous()
    return coord, maps, w, kspace, truth, nufft


def test_toeplitz_normal_matches_the_nufft_pair_per_copy():
    coord, _, w, _, _, nufft = _problem(n=20, copies=2)
    w = w.clone()
    w[1, ::3] = 0.0  # a different undersampling in the second copy
    normal = ToeplitzNormal(coord, (20, 20), w, dtype=torch.float64)
    x = torch.randn(2, 3, 20, 20, dtype=torch.complex128,
                    generator=torch.Generator().manual_seed(1))
    reference = nufft.adjoint(w[:, None] * nufft(x))
    error = torch.linalg.vector_norm(normal(x) - reference) / torch.linalg.vector_norm(reference)
    assert error < 1e-3  # the NUFFT's own accuracy (≈ 4e-4)
    with pytest.raises(ValueError, match="kernels"):
        normal(x[:1])


def test_sense_data_term_and_its_gradient_match_the_direct_form():
    coord, maps, w, kspace, truth, nufft = _problem(n=16, sigma=0.05, copies=2)
    term = SenseNormal(coord, maps, w, kspace)
    x = torch.as_tensor(np.stack([truth, 0.5 * truth]), dtype=torch.float64).requires_grad_()
    direct = 0.5 * (w[:, None] * (nufft(maps * x[:, None]) - kspace).abs() ** 2).sum(dim=(-2, -1))
    ours = term(x)
    torch.testing.assert_close(ours, direct, rtol=1e-3, atol=1e-6)
    ours.sum().backward()
    expected = (term.normal(x.detach()) - term.rhs).real  # ∇ of a real image: Re(N x − b)
    torch.testing.assert_close(x.grad, expected, rtol=1e-6, atol=1e-8)


def test_zero_lambda_gives_the_weighted_least_squares_solution():
    # spokes to the corners of k-space: a well-conditioned problem (singular values 0.86–0.95)
    traj = _radial(12, 64, reach=1.45, samples=24)
    coord, maps, w, kspace, _truth, nufft = _problem(n=12, sigma=0.05, traj=traj)
    result = v.reconstruct(coord, maps, w, kspace, 0.0, max_iter=3000, tol=1e-7)
    # dense weighted least squares: min ‖√w (F S x − y)‖² over complex x
    eye = torch.eye(144, dtype=torch.complex128).reshape(144, 12, 12)
    columns = nufft(maps[0][None] * eye[:, None])  # (144, C, n)
    a = (columns * w[0].sqrt()).reshape(144, -1).T.numpy()
    b = (kspace[0] * w[0].sqrt()).reshape(-1).numpy()
    exact = np.linalg.lstsq(a, b, rcond=None)[0].reshape(12, 12)
    assert np.linalg.norm(result.images[0] - exact) / np.linalg.norm(exact) < 2e-3
    assert result.converged[0] and result.iterations[0] < 3000


def test_dtv_with_the_truth_as_prior_beats_tv():
    from nacode.denoise.priors import fuse

    coord, maps, w, kspace, truth, _ = _problem(n=32, rate=4, sigma=0.08)
    lams = (0.003, 0.01, 0.03, 0.1)
    t = torch.as_tensor(truth)
    xi = fuse(t, t, alpha=1.0, eta=0.05).xi

    def best(prior):
        errors = []
        for lam in lams:
            image = np.abs(v.reconstruct(coord, maps, w, kspace, lam, prior, tol=1e-4).images[0])
            errors.append(np.sqrt(np.mean((image - truth) ** 2)))
        return min(errors)

    assert best(xi) < 0.8 * best(None)


def test_the_minimiser_scores_no_worse_than_the_truth_and_stops_converged():
    coord, maps, w, kspace, truth, _ = _problem(n=24, rate=2, sigma=0.05)
    lam = 0.02
    result = v.reconstruct(coord, maps, w, kspace, lam, tol=1e-5)
    assert result.converged[0]
    term = SenseNormal(coord, maps, w, kspace)
    scale = float(term.rhs.abs().max())
    t = torch.as_tensor(truth / scale)[None]
    truth_objective = (term(t * scale) / scale**2 + lam * v.dtv_norm(t, None)).item()
    assert result.objective[0] <= truth_objective
    longer = v.reconstruct(coord, maps, w, kspace, lam, tol=1e-7, max_iter=5000)

    def psnr(x):
        return 10 * np.log10(truth.max() ** 2 / np.mean((np.abs(x) - truth) ** 2))

    assert abs(psnr(result.images[0]) - psnr(longer.images[0])) < 0.05


def test_per_copy_lambdas_equal_separate_runs_and_dtv_without_prior_is_tv():
    coord, maps, w, kspace, _, _ = _problem(n=16, rate=2, sigma=0.05, copies=2)
    both = v.reconstruct(coord, maps, w, kspace, [0.01, 0.05], max_iter=200, tol=0)
    one = v.reconstruct(coord, maps[1:], w[1:], kspace[1:], 0.05, max_iter=200, tol=0)
    # the same problem; only the power-iteration estimate of L (hence τ) differs slightly
    np.testing.assert_allclose(both.images[1], one.images[0], rtol=1e-5, atol=1e-7)
    x = torch.randn(3, 16, 16, dtype=torch.complex128)
    torch.testing.assert_close(v.dtv_norm(x, torch.zeros(2, 16, 16, dtype=torch.float64)),
                               v.dtv_norm(x, None))
    with pytest.raises(ValueError, match="≥ 0"):
        v.reconstruct(coord, maps, w, kspace, -1.0)
