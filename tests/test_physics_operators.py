"""Every linear operator passes one adjointness-and-linearity check in complex128, and the
NUFFT agrees with exact transforms."""

from __future__ import annotations

import numpy as np
import pytest
import sigpy as sp

from nacode.physics import trajectory
from nacode.physics.coils import coil_maps
from nacode.physics.linops import (
    TorchLinop,
    adjoint_error,
    coil_op,
    finite_difference_op,
    linearity_error,
    multicoil_nufft_op,
)
from nacode.physics.nufft import nufft_op, sample_image

EXACT, NUFFT = 1e-6, 1e-4


def _operators():
    maps2 = coil_maps((24, 24), 8)
    radial = trajectory.radial(matrix=24)
    return {
        "nufft-spiral-80": (nufft_op((80, 80), trajectory.spiral().coord), NUFFT),
        "nufft-radial-full": (nufft_op((24, 24), radial.coord), NUFFT),
        "nufft-radial-R4-golden": (nufft_op((24, 24), trajectory.radial(
            matrix=24, undersampling=4, golden=True).coord), NUFFT),
        "nufft-radial3d": (nufft_op((12, 12, 12), trajectory.radial3d(matrix=12).coord),
                           NUFFT),
        "coil-8ch": (coil_op(maps2), EXACT),
        "coil-nufft-8ch": (multicoil_nufft_op(maps2, radial.coord), NUFFT),
        "finite-differences-2d": (finite_difference_op((24, 24)), EXACT),
        "finite-differences-3d": (finite_difference_op((8, 9, 10)), EXACT),
        "gradient-neumann-2d": (_torch_op("gradient"), EXACT),
        "dtv-random-prior": (_torch_op("dtv"), EXACT),
        "toeplitz-normal-R4": (_torch_op("toeplitz"), EXACT),
    }


def _torch_op(kind: str):
    """The torch operators of the variational reconstructions as shared-check operators."""
    import torch

    from nacode.physics.nufft import density_compensation
    from nacode.physics.toeplitz import ToeplitzNormal
    from nacode.recon import variational as v

    shape = (12, 14)
    if kind == "gradient":
        return TorchLinop(v.gradient, v.gradient_adjoint, shape, (2, *shape))
    if kind == "dtv":
        rng = np.random.default_rng(3)
        xi = rng.standard_normal((2, *shape))
        xi = torch.as_tensor(xi / np.maximum(np.linalg.norm(xi, axis=0), 1.0))  # |ξ| ≤ 1
        return TorchLinop(lambda x: v.directional_gradient(x, xi),
                          lambda y: v.directional_gradient_adjoint(y, xi), shape, (2, *shape))
    traj = trajectory.radial(matrix=16, undersampling=4)
    weights = torch.as_tensor(density_compensation(traj).reshape(-1))
    normal = ToeplitzNormal(traj.coord.reshape(-1, 2), (16, 16), weights, dtype=torch.float64)
    return TorchLinop(normal, normal, (16, 16), (16, 16))  # self-adjoint by construction


OPERATORS = _operators()


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_adjoint_and_linearity(name):
    op, tolerance = OPERATORS[name]
    rng = np.random.default_rng(7)
    assert adjoint_error(op, rng) < tolerance
    assert linearity_error(op, rng) < tolerance


class _WrongAdjoint(sp.linop.Linop):
    """The NUFFT with an adjoint that is 1 % too large."""

    def __init__(self, op):
        self.op = op
        super().__init__(op.oshape, op.ishape)

    def _apply(self, input):
        return self.op(input)

    def _adjoint_linop(self):
        return sp.linop.Multiply(self.op.ishape, 1.01) * self.op.H


def test_the_check_catches_a_wrong_adjoint():
    op = nufft_op((16, 16), trajectory.radial(matrix=16).coord)
    assert adjoint_error(op) < NUFFT
    assert adjoint_error(_WrongAdjoint(op)) == pytest.approx(0.01, rel=1e-3)


def centred_fft(x):
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x), norm="ortho"))


def test_nufft_on_cartesian_coordinates_equals_the_centred_fft():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 32)) + 1j * rng.standard_normal((32, 32))
    ky, kx = np.mgrid[-16:16, -16:16]
    coord = np.stack([ky, kx], -1).astype(float)
    result = nufft_op((32, 32), coord)(x).reshape(32, 32)
    assert np.linalg.norm(result - centred_fft(x)) / np.linalg.norm(x) < 1e-3


def test_nufft_matches_an_exact_nonuniform_dft_along_the_spiral():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 32)) + 1j * rng.standard_normal((32, 32))
    coord = trajectory.spiral(matrix=32, n_interleaves=8).coord.reshape(-1, 2)
    n = np.arange(32) - 16
    rows, cols = np.meshgrid(n, n, indexing="ij")
    phase = np.outer(coord[:, 0], rows.ravel()) + np.outer(coord[:, 1], cols.ravel())
    exact = np.exp(-2j * np.pi * phase / 32) @ x.ravel() / 32
    approx = nufft_op((32, 32), coord)(x)
    error = np.linalg.norm(approx - exact) / np.linalg.norm(exact)
    print(f"NUFFT vs exact NDFT on 32x32 along the spiral: relative error {error:.2e}")
    assert error < 1e-3


def test_fine_grid_sampling_equals_acquisition_grid_sampling_for_a_smooth_object():
    traj = trajectory.spiral()

    def blob(n):
        pos = (np.arange(n) - n // 2) * 80 / n
        y, x = np.meshgrid(pos, pos, indexing="ij")
        return np.exp(-((y - 5) ** 2 + (x + 3) ** 2) / (2 * 4.0**2))

    coarse, fine = sample_image(blob(80), traj), sample_image(blob(320), traj)
    assert np.linalg.norm(coarse - fine) / np.linalg.norm(coarse) < 1e-6


@pytest.mark.parametrize("ndim", [2, 3])
def test_sparse_plan_is_sigpys_nufft(ndim):
    """The sparse Kaiser–Bessel plan (the torch operator's 2D CPU backend) is sigpy's NUFFT."""
    from nacode.physics import sparse_nufft as sn

    rng = np.random.default_rng(3)
    if ndim == 2:
        shape, coord = (40, 40), trajectory.spiral(matrix=40, n_interleaves=10).coord
    else:
        shape, coord = (10, 10, 10), trajectory.radial3d(matrix=10).coord
    flat = coord.reshape(-1, ndim)
    plan = sn.SparseNufftPlan(shape, coord)
    x = rng.standard_normal((2, *shape)) + 1j * rng.standard_normal((2, *shape))
    y = rng.standard_normal((2, flat.shape[0])) + 1j * rng.standard_normal((2, flat.shape[0]))
    ours_f, ours_a = plan.forward(x), plan.adjoint(y)
    ref_f = sp.nufft(x, flat, oversamp=sn.OVERSAMP, width=sn.WIDTH)
    ref_a = sp.nufft_adjoint(y, flat, oshape=(2, *shape), oversamp=sn.OVERSAMP, width=sn.WIDTH)
    assert np.linalg.norm(ours_f - ref_f) / np.linalg.norm(ref_f) < 1e-6
    assert np.linalg.norm(ours_a - ref_a) / np.linalg.norm(ref_a) < 1e-6


@pytest.mark.parametrize("ndim", [2, 3])
def test_finufft_nufft_agrees_with_sigpy_and_beats_it_against_the_exact_dft(ndim):
    """nacode's NUFFT (finufft) and sigpy's agree to sigpy's own accuracy; against the exact
    DFT nacode's error is at finufft's requested EPS, sigpy's at its kernel's ≈ 4e-4."""
    from nacode.physics import nufft as nf

    rng = np.random.default_rng(4)
    if ndim == 2:
        shape, coord = (20, 20), trajectory.spiral(matrix=20, n_interleaves=6).coord
    else:
        shape, coord = (8, 10, 6), trajectory.radial3d(matrix=10).coord * [0.8, 1.0, 0.6]
    flat = coord.reshape(-1, ndim)
    x = rng.standard_normal((2, *shape)) + 1j * rng.standard_normal((2, *shape))
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    phase = sum(np.outer(flat[:, d], grids[d].ravel() / n) for d, n in enumerate(shape))
    exact = x.reshape(2, -1) @ np.exp(-2j * np.pi * phase).T / np.sqrt(np.prod(shape))
    ours = nf.nufft(x, coord)
    theirs = sp.nufft(x, flat, oversamp=1.25, width=6)
    error = np.linalg.norm(ours - exact) / np.linalg.norm(exact)
    print(f"{ndim}D NUFFT vs exact DFT: finufft {error:.1e}, sigpy "
          f"{np.linalg.norm(theirs - exact) / np.linalg.norm(exact):.1e}")
    assert error < 10 * nf.EPS
    assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 1e-3


def test_plans_are_cached_by_identity_for_trajectories_and_by_content_otherwise():
    from nacode.physics import nufft as nf

    traj = trajectory.radial(matrix=16)
    assert not traj.coord.flags.writeable  # a Trajectory's coordinates are frozen
    plan = nf.plan_for((16, 16), traj.coord)
    assert nf.plan_for((16, 16), traj.coord) is plan
    assert nf.plan_for((16, 16), np.array(traj.coord)) is plan  # same bytes, same plan
    moved = np.array(traj.coord)
    moved[0, 0, 0] += 0.5  # a writeable array edited in place gets a new plan
    assert nf.plan_for((16, 16), moved) is not plan
    assert nf.plan_for((24, 24), traj.coord) is not plan


def test_transforms_are_deterministic_and_batched_like_single_calls():
    """Same input, same bits (the adjoint spreads on one thread); a batch (finufft's n_trans)
    equals one call per image."""
    from nacode.physics import nufft as nf

    coord = trajectory.radial3d(matrix=16).coord
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 16, 16, 16)) + 0j
    y = rng.standard_normal((3, coord.shape[0] * coord.shape[1])) + 0j
    forward, adjoint = nf.nufft(x, coord), nf.nufft_adjoint(y, coord, (16, 16, 16))
    assert np.array_equal(forward, nf.nufft(x, coord))
    assert np.array_equal(adjoint, nf.nufft_adjoint(y, coord, (16, 16, 16)))
    for i in range(3):
        assert np.allclose(forward[i], nf.nufft(x[i], coord), rtol=0, atol=1e-12)
        assert np.allclose(adjoint[i], nf.nufft_adjoint(y[i], coord, (16, 16, 16)), rtol=0,
                           atol=1e-12)


def test_nufft_refuses_mismatched_shapes():
    from nacode.physics import nufft as nf

    plan = nf.NufftPlan((8, 8), trajectory.radial(matrix=8).coord)
    with pytest.raises(ValueError, match="does not end with"):
        plan.forward(np.zeros((8, 9), complex))
    with pytest.raises(ValueError, match="samples for a plan"):
        plan.adjoint(np.zeros(plan.n_samples + 1, complex))
