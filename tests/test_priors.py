"""Regularisers of DIP-Fusion (nacode.denoise.priors): properties, not just runs."""

from __future__ import annotations

import math

import pytest
import torch

from nacode.denoise import priors
from nacode.denoise.priors import (
    FusedPrior,
    bias_basis,
    bias_field,
    bias_penalty,
    dtv,
    fuse,
    gradient,
    gradient_consistency,
    noise_sd,
    normalise,
    objective,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


def disc(n: int = 48, radius: float = 14.0, centre: tuple[float, float] = (0.0, 0.0),
         width: float = 1.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A disc of value 1 on 0 with a tanh edge of ``width`` pixels (``width=0``: binary)."""
    i = torch.arange(n, dtype=dtype) - (n - 1) / 2
    r = torch.sqrt((i[:, None] - centre[0]) ** 2 + (i[None, :] - centre[1]) ** 2)
    if width == 0:
        return (r <= radius).to(dtype)
    return 0.5 * (1 - torch.tanh((r - radius) / width))


def grad_energy(x: torch.Tensor) -> torch.Tensor:
    return (gradient(x) ** 2).sum(dim=-3).mean(dim=(-2, -1))


# --- gradient and normalise ----------------------------------------------------------------


def test_gradient_ramp_and_neumann_boundary():
    i, j = torch.meshgrid(torch.arange(5.0), torch.arange(6.0), indexing="ij")
    g = gradient(2 * i + 3 * j)
    assert g.shape == (2, 5, 6)
    assert torch.equal(g[0, :-1], torch.full((4, 6), 2.0))
    assert torch.equal(g[1, :, :-1], torch.full((5, 5), 3.0))
    assert torch.equal(g[0, -1], torch.zeros(6))
    assert torch.equal(g[1, :, -1], torch.zeros(5))
    assert gradient(torch.zeros(2, 3, 5, 6)).shape == (2, 3, 2, 5, 6)


def test_normalise_percentile_mask_and_zero_guard():
    x = torch.rand(2, 20, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[1] *= 7.0
    y = normalise(x)
    q = torch.quantile(y.reshape(2, -1), 0.99, dim=-1)
    assert torch.allclose(q, torch.ones(2, dtype=torch.float64))
    mask = torch.zeros(20, 30, dtype=torch.bool)
    mask[:10] = True
    y = normalise(x, mask)
    assert torch.allclose(torch.quantile(y[:, :10].reshape(2, -1), 0.99, dim=-1),
                          torch.ones(2, dtype=torch.float64))
    assert torch.equal(normalise(torch.zeros(4, 4)), torch.zeros(4, 4))


# --- dTV and the objective -----------------------------------------------------------------


def test_dtv_without_direction_is_smoothed_tv_by_hand():
    x = torch.tensor([[0.0, 1.0], [2.0, 4.0]], dtype=torch.float64)
    eps = 0.1
    # ∇x per pixel: (2, 1), (3, 0), (0, 2), (0, 0)
    expected = (math.sqrt(5 + eps**2) + math.sqrt(9 + eps**2) + math.sqrt(4 + eps**2)
                + eps) / 4
    got = dtv(x, torch.zeros(2, 2, 2, dtype=torch.float64), eps=eps)
    assert got.shape == ()
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_dtv_ignores_gradients_parallel_to_a_unit_direction():
    i = torch.arange(6.0, dtype=torch.float64)[:, None].expand(6, 7)
    xi = torch.zeros(2, 6, 7, dtype=torch.float64)
    xi[0] = 1.0  # ramp along H, direction along H
    assert dtv(5 * i, xi, eps=1e-3).item() == pytest.approx(1e-3, rel=1e-12)
    assert dtv(5 * i, torch.zeros_like(xi)).item() > 1.0


def test_edges_following_the_prior_cost_less():
    prior = fuse(disc(), disc())
    x = 2 * disc()
    noise = torch.randn(48, 48, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    noise = noise * torch.sqrt(grad_energy(x) / grad_energy(noise))
    shifted = 2 * disc(centre=(3.0, 2.0))  # same gradient energy and TV, misaligned edges
    assert grad_energy(noise).item() == pytest.approx(grad_energy(x).item())
    assert dtv(x, prior.xi) < 0.1 * dtv(noise, prior.xi)
    assert dtv(x, prior.xi) < 0.5 * dtv(shifted, prior.xi)
    tv = torch.zeros_like(prior.xi)
    assert dtv(shifted, tv).item() == pytest.approx(dtv(x, tv).item(), rel=1e-6)


def test_objective_with_zero_weights_is_the_data_term(monkeypatch):
    prior = fuse(disc(16), disc(16))
    basis = bias_basis((16, 16), dtype=torch.float64, device="cpu")
    coefficients = torch.full((5,), 0.3, dtype=torch.float64)
    x = 2 * disc(16)
    data = torch.tensor(0.123456789, dtype=torch.float64)
    off = dict(lam_dtv=0.0, lam_gc=0.0, lam_bias=0.0)
    assert torch.equal(objective(data, x, prior, coefficients, basis, **off), data)
    assert torch.equal(objective(data, x, prior, None, None, **off), data)

    def forbidden(*args, **kwargs):
        raise AssertionError("a term with weight 0 was evaluated")

    with_gc = data + 0.7 * gradient_consistency(x, prior.xi)
    expected = with_gc + 0.2 * bias_penalty(coefficients, basis)
    monkeypatch.setattr(priors, "dtv", forbidden)
    got = objective(data, x, prior, coefficients, basis, lam_dtv=0.0, lam_gc=0.7, lam_bias=0.2)
    assert torch.equal(got, expected)
    monkeypatch.undo()
    full = objective(data, x, prior, coefficients, basis, lam_dtv=0.5, lam_gc=0.7, lam_bias=0.2)
    assert torch.allclose(full, expected + 0.5 * dtv(x, prior.xi), rtol=1e-12)


# --- structure-tensor fusion ---------------------------------------------------------------


def test_fuse_proton_only_follows_the_proton_gradient():
    proton = disc()
    sodium = torch.rand(48, 48, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    g = gradient(proton)
    edges = torch.linalg.vector_norm(g, dim=0) > 0.05
    for sigma, tol in [(0.0, 1e-9), (0.7, 0.05)]:  # smoothing mixes neighbours
        xi = fuse(proton, sodium, alpha=1.0, sigma=sigma).xi
        cos = (xi * g).sum(0) / (torch.linalg.vector_norm(xi, dim=0)
                                 * torch.linalg.vector_norm(g, dim=0))
        assert edges.sum() > 50
        assert torch.all(cos[edges].abs() > 1 - tol)


def test_fuse_is_polarity_invariant():
    proton = disc(width=1.5)
    sodium = disc(radius=8.0, centre=(4.0, -3.0), width=0)  # binary: same percentile as 1 − s
    a = fuse(proton, sodium)
    b = fuse(proton, 1.0 - sodium)
    outer = lambda xi: xi[:, None] * xi[None, :]  # noqa: E731
    assert torch.allclose(outer(a.xi), outer(b.xi), atol=1e-9)
    assert torch.allclose(a.strength, b.strength, atol=1e-9)


def test_sodium_only_lesion_shows_only_with_sodium_weight():
    proton = disc(radius=18.0, width=0)
    sodium = 0.5 * proton + disc(radius=4.0, width=0)  # a lesion absent from the proton image
    ring = torch.abs(torch.sqrt(((torch.arange(48.0) - 23.5) ** 2)[:, None]
                                + ((torch.arange(48.0) - 23.5) ** 2)[None, :]) - 4.0) < 1.5
    mixed = fuse(proton, sodium, alpha=0.5).strength
    proton_only = fuse(proton, sodium, alpha=1.0).strength
    assert mixed[ring].max() > 0.3 * mixed.max()
    assert proton_only[ring].max() < 1e-12
    assert proton_only.max() > 0.1


def test_fuse_direction_is_bounded_and_detached():
    gen = torch.Generator().manual_seed(4)
    proton = torch.rand(3, 20, 21, generator=gen, dtype=torch.float64).requires_grad_()
    sodium = torch.rand(3, 20, 21, generator=gen, dtype=torch.float64)
    prior = fuse(proton, sodium, eta=0.01)
    assert prior.xi.shape == (3, 2, 20, 21) and prior.strength.shape == (3, 20, 21)
    assert torch.all(torch.linalg.vector_norm(prior.xi, dim=-3) <= 1 + 1e-12)
    assert torch.all(prior.strength >= 0)
    assert not prior.xi.requires_grad
    moved = prior.to("cpu")
    assert isinstance(moved, FusedPrior) and torch.equal(moved.xi, prior.xi)


# --- gradient consistency ------------------------------------------------------------------


def test_gradient_consistency_is_scale_and_polarity_invariant():
    gen = torch.Generator().manual_seed(5)
    x = disc() + 0.3 * torch.rand(48, 48, generator=gen, dtype=torch.float64)
    s = fuse(disc(), disc()).xi
    value = gradient_consistency(x, s)
    assert gradient_consistency(3 * x, s).item() == pytest.approx(value.item(), rel=1e-4)
    assert torch.equal(gradient_consistency(-x, s), value)


def test_gradient_consistency_vanishes_for_matching_edges():
    x = disc()
    s = fuse(x, torch.zeros_like(x), alpha=1.0, sigma=0.0, eta=1e-3).xi  # ξ ∥ ∇x, |ξ| ≈ 1
    noise = torch.rand(48, 48, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    matched = gradient_consistency(x, s)
    assert matched < 1e-3
    assert matched < 1e-2 * gradient_consistency(disc(centre=(3.0, 2.0)), s)
    assert gradient_consistency(noise, s) > 0.8  # noise lies where the prior is flat


def test_gradient_consistency_prefers_the_truth_to_its_noisy_version():
    truth = disc(width=1.5)
    gen = torch.Generator().manual_seed(8)
    noisy = truth + 0.05 * torch.randn(48, 48, generator=gen, dtype=torch.float64)
    proton = disc(width=1.5, centre=(0.5, 0.0)) + 0.02 * torch.randn(
        48, 48, generator=gen, dtype=torch.float64)  # misregistered, noisy prior
    xi = fuse(proton, noisy, alpha=0.5).xi
    assert gradient_consistency(truth, xi) < 0.5 * gradient_consistency(noisy, xi)


def test_eta_scales_with_the_noise():
    gen = torch.Generator().manual_seed(9)
    clean = disc(width=1.5)
    sd = [float(noise_sd(clean + s * torch.randn(48, 48, generator=gen, dtype=torch.float64)))
          for s in (0.02, 0.08)]
    assert sd[1] == pytest.approx(0.08, rel=0.2) and sd[0] < 0.5 * sd[1]
    noisy = clean + 0.08 * torch.randn(48, 48, generator=gen, dtype=torch.float64)
    flat = torch.linalg.vector_norm(gradient(clean), dim=0) < 1e-6
    fixed = torch.linalg.vector_norm(fuse(noisy, noisy, eta=0.05).xi, dim=0)[flat].median()
    scaled = torch.linalg.vector_norm(fuse(noisy, noisy).xi, dim=0)[flat].median()
    assert scaled < 0.6 and fixed > scaled + 0.2  # noise is no longer an edge


# --- bias field ----------------------------------------------------------------------------


def test_bias_basis_excludes_the_constant():
    basis = bias_basis((16, 20), dtype=torch.float64, device="cpu")
    assert basis.shape == (5, 16, 20)
    assert torch.allclose(basis.mean(dim=(-2, -1)), torch.zeros(5, dtype=torch.float64),
                          atol=1e-12)
    assert torch.all(basis.std(dim=(-2, -1)) > 0.1)
    gram = torch.einsum("khw,lhw->kl", basis, basis) / (16 * 20)
    assert torch.linalg.matrix_rank(gram) == 5
    for order in (1, 3):
        n = (order + 1) * (order + 2) // 2 - 1
        assert bias_basis((8, 8), order, dtype=torch.float32, device="cpu").shape == (n, 8, 8)


def test_bias_field_and_penalty():
    basis = bias_basis((12, 10), dtype=torch.float64, device="cpu")
    zero = torch.zeros(3, 5, dtype=torch.float64)
    assert torch.equal(bias_field(zero, basis), torch.ones(3, 12, 10, dtype=torch.float64))
    assert torch.equal(bias_penalty(zero, basis), torch.zeros(3, dtype=torch.float64))
    c = torch.randn(3, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    field = bias_field(c, basis)
    assert torch.all(field > 0)
    assert torch.all(bias_penalty(c, basis) > 0)
    assert torch.allclose(bias_penalty(c, basis), (field.log() ** 2).mean(dim=(-2, -1)))


# --- autograd and dtypes -------------------------------------------------------------------


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(8)
    x = torch.rand(2, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    prior = fuse(torch.rand(6, 7, generator=gen, dtype=torch.float64),
                 torch.rand(6, 7, generator=gen, dtype=torch.float64), eta=0.01)
    assert torch.autograd.gradcheck(lambda v: dtv(v, prior.xi), (x,))
    assert torch.autograd.gradcheck(lambda v: gradient_consistency(v, prior.xi), (x,))
    basis = bias_basis((6, 7), dtype=torch.float64, device="cpu")
    c = torch.randn(2, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: bias_field(v, basis), (c,))
    assert torch.autograd.gradcheck(lambda v: bias_penalty(v, basis), (c,))


@pytest.mark.parametrize("device", DEVICES)
def test_float32_and_device_are_preserved(device):
    gen = torch.Generator().manual_seed(9)
    x = torch.rand(2, 12, 13, generator=gen).to(device)
    prior = fuse(x, torch.rand(2, 12, 13, generator=gen).to(device))
    basis = bias_basis((12, 13), dtype=torch.float32, device=device)
    c = torch.zeros(2, 5, device=device)
    outputs = [gradient(x), normalise(x), prior.xi, prior.strength, dtv(x, prior.xi),
               gradient_consistency(x, prior.xi), bias_field(c, basis),
               bias_penalty(c, basis),
               objective(torch.zeros(2, device=device), x, prior, c, basis,
                         lam_dtv=1.0, lam_gc=1.0, lam_bias=1.0)]
    for out in outputs:
        assert out.dtype == torch.float32
        assert out.device.type == device
    assert dtv(x, prior.xi).shape == (2,)
