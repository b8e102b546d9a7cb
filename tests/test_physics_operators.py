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
def test_planned_nufft_is_sigpys_nufft(ndim):
    from nacode.physics import nufft as nf

    rng = np.random.default_rng(3)
    if ndim == 2:
        shape, coord = (40, 40), trajectory.spiral(matrix=40, n_interleaves=10).coord
    else:
        shape, coord = (10, 10, 10), trajectory.radial3d(matrix=10).coord
    flat = coord.reshape(-1, ndim)
    x = rng.standard_normal((2, *shape)) + 1j * rng.standard_normal((2, *shape))
    y = rng.standard_normal((2, flat.shape[0])) + 1j * rng.standard_normal((2, flat.shape[0]))
    ours_f, ours_a = nf.nufft(x, coord), nf.nufft_adjoint(y, coord, shape)
    ref_f = sp.nufft(x, flat, oversamp=nf.OVERSAMP, width=nf.WIDTH)
    ref_a = sp.nufft_adjoint(y, flat, oshape=(2, *shape), oversamp=nf.OVERSAMP, width=nf.WIDTH)
    assert np.linalg.norm(ours_f - ref_f) / np.linalg.norm(ref_f) < 1e-6
    assert np.linalg.norm(ours_a - ref_a) / np.linalg.norm(ref_a) < 1e-6


def test_large_problems_fall_back_to_sigpy(monkeypatch):
    from nacode.physics import nufft as nf

    monkeypatch.setattr(nf, "MAX_PLAN_NNZ", 10)
    coord = trajectory.radial(matrix=16).coord
    assert nf.plan_for((16, 16), coord) is None
    x = np.random.default_rng(0).standard_normal((16, 16)) + 0j
    ref = sp.nufft(x, coord.reshape(-1, 2), oversamp=nf.OVERSAMP, width=nf.WIDTH)
    assert np.allclose(nf.nufft(x, coord), ref)
