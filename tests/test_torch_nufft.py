"""Tests of the differentiable torch NUFFT and multi-coil forward model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nacode.physics.nufft import NufftPlan
from nacode.physics.sparse_nufft import SparseNufftPlan
from nacode.physics.torch_nufft import (
    MulticoilForward,
    TorchNufft,
    _pad_or_crop,
    choose_backend,
)
from nacode.physics.trajectory import radial

N = 24


@pytest.fixture(scope="module")
def plan() -> SparseNufftPlan:
    traj = radial(matrix=N, undersampling=4.0, samples_per_spoke=16)
    return SparseNufftPlan((N, N), traj.coord)


BACKENDS = ["sparse", "finufft"]


def _op(plan: SparseNufftPlan, backend: str, dtype=torch.float64) -> TorchNufft:
    """The operator of the fixture's trajectory on either backend."""
    if backend == "sparse":
        return TorchNufft(plan, dtype=dtype)
    traj = radial(matrix=N, undersampling=4.0, samples_per_spoke=16)
    return TorchNufft(NufftPlan((N, N), traj.coord), dtype=dtype)


def _crandn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    real = torch.randn(*shape, 2, generator=gen, dtype=torch.float64)
    return torch.view_as_complex(real)


def _maps(gen: torch.Generator, n_coils: int, shape: tuple[int, int]) -> torch.Tensor:
    """Smooth random complex coil maps: low-order polynomials in y and x."""
    y, x = torch.meshgrid(*(torch.linspace(-1, 1, n, dtype=torch.float64) for n in shape),
                          indexing="ij")
    c = _crandn(gen, n_coils, 3)
    return c[:, :1, None] + c[:, 1:2, None] * y + c[:, 2:3, None] * x


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("shape", [(7, 10), (8, 9), (12, 12), (5, 5), (12, 7)])
def test_pad_or_crop_matches_sigpy_resize(shape):
    import sigpy as sp

    x = np.arange(80.0).reshape(8, 10) + 0j
    ours = _pad_or_crop(torch.from_numpy(x), shape).numpy()
    np.testing.assert_array_equal(ours, sp.resize(x, shape))


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_matches_nufft_plan(plan, dtype, tol):
    rng = np.random.default_rng(0)
    image = rng.standard_normal((2, N, N)) + 1j * rng.standard_normal((2, N, N))
    samples = rng.standard_normal((2, plan.n_samples)) + 1j * rng.standard_normal(
        (2, plan.n_samples))
    op = TorchNufft(plan, dtype=dtype)
    fwd = op(torch.from_numpy(image)).numpy()
    adj = op.adjoint(torch.from_numpy(samples)).numpy()
    assert fwd.shape == (2, plan.n_samples) and adj.shape == (2, N, N)
    assert _rel(fwd, plan.forward(image)) < tol
    assert _rel(adj, plan.adjoint(samples)) < tol


def test_odd_grid_matches_nufft_plan():
    traj = radial(matrix=N, undersampling=8.0, samples_per_spoke=12)
    plan = SparseNufftPlan((9, 10), traj.coord * 9 / N)  # odd image axis, odd grid axis
    assert plan.os_shape == (12, 13)
    rng = np.random.default_rng(1)
    image = rng.standard_normal((9, 10)) + 1j * rng.standard_normal((9, 10))
    samples = rng.standard_normal(plan.n_samples) + 1j * rng.standard_normal(plan.n_samples)
    op = TorchNufft(plan, dtype=torch.float64)
    assert _rel(op(torch.from_numpy(image)).numpy(), plan.forward(image)) < 1e-10
    assert _rel(op.adjoint(torch.from_numpy(samples)).numpy(), plan.adjoint(samples)) < 1e-10


def _adjointness(forward, adjoint, x: torch.Tensor, y: torch.Tensor) -> float:
    ax = forward(x)
    lhs, rhs = torch.vdot(ax.flatten(), y.flatten()), torch.vdot(x.flatten(), adjoint(y).flatten())
    return float(abs(lhs - rhs) / (ax.norm() * y.norm()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_adjointness(plan, backend):
    gen = torch.Generator().manual_seed(2)
    op = _op(plan, backend)
    x, y = _crandn(gen, 3, N, N), _crandn(gen, 3, plan.n_samples)
    assert _adjointness(op, op.adjoint, x, y) < 1e-10
    weights = torch.rand(plan.n_samples, generator=gen, dtype=torch.float64) + 0.1
    model = MulticoilForward(op, _maps(gen, 4, (N, N)), weights)
    x, y = _crandn(gen, 2, N, N), _crandn(gen, 2, 4, plan.n_samples)
    assert _adjointness(model, model.adjoint, x, y) < 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_data_fidelity_gradient(plan, backend):
    gen = torch.Generator().manual_seed(3)
    op = _op(plan, backend)
    weights = torch.rand(plan.n_samples, generator=gen, dtype=torch.float64) + 0.1
    model = MulticoilForward(op, _maps(gen, 4, (N, N)), weights)
    y = model.weighted(_crandn(gen, 2, 4, plan.n_samples))
    image = torch.randn(2, N, N, generator=gen, dtype=torch.float64, requires_grad=True)
    loss = model.data_fidelity(image, y)
    assert loss.shape == (2,)
    loss.sum().backward()
    with torch.no_grad():
        expected = model.adjoint(model(image) - y).real / (4 * plan.n_samples)
    assert float((image.grad - expected).abs().max() / expected.abs().max()) < 1e-8


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_tiny(backend):
    traj = radial(matrix=8, undersampling=6.0, samples_per_spoke=5)
    op = TorchNufft.from_coord((8, 8), traj.coord, backend=backend, dtype=torch.float64)
    assert op.backend == backend
    gen = torch.Generator().manual_seed(4)
    model = MulticoilForward(op, _maps(gen, 2, (8, 8)),
                             torch.rand(op.n_samples, generator=gen, dtype=torch.float64))
    y = _crandn(gen, 2, op.n_samples)
    real = torch.randn(8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    cplx = _crandn(gen, 8, 8).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: model.data_fidelity(x, y), (real,))
    assert torch.autograd.gradcheck(model, (cplx,))
    assert torch.autograd.gradcheck(op.adjoint, (_crandn(gen, op.n_samples).requires_grad_(),))


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_equals_single_calls(plan, backend):
    gen = torch.Generator().manual_seed(5)
    model = MulticoilForward(_op(plan, backend), _maps(gen, 3, (N, N)))
    images = torch.randn(2, N, N, generator=gen, dtype=torch.float64)
    kspace = _crandn(gen, 2, 3, plan.n_samples)
    batch, adj = model(images), model.adjoint(kspace)
    assert batch.shape == (2, 3, plan.n_samples) and adj.shape == (2, N, N)
    for b in range(2):
        torch.testing.assert_close(batch[b], model(images[b]), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(adj[b], model.adjoint(kspace[b]), rtol=1e-12, atol=1e-12)
        loss = model.data_fidelity(images[b], kspace[b])
        assert loss.shape == ()
        torch.testing.assert_close(model.data_fidelity(images, kspace)[b], loss)


def test_gradients_of_gradients_through_finufft():
    """The backward pass is itself differentiable (the other transform): gradgradcheck."""
    traj = radial(matrix=8, undersampling=6.0, samples_per_spoke=5)
    op = TorchNufft.from_coord((8, 8), traj.coord, backend="finufft", dtype=torch.float64)
    x = _crandn(torch.Generator().manual_seed(6), 8, 8).requires_grad_()
    assert torch.autograd.gradgradcheck(op, (x,))


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-5), (torch.float32, 1e-4)])
def test_finufft_operator_matches_an_exact_dft(dtype, tol):
    """float64 runs at nacode.physics.nufft.EPS, float32 at EPS_SINGLE (finufft's float)."""
    traj = radial(matrix=12, undersampling=2.0, samples_per_spoke=12)
    coord = traj.coord.reshape(-1, 2)
    op = TorchNufft.from_coord((12, 12), coord, backend="finufft", dtype=dtype)
    n = np.arange(12) - 6
    rows, cols = np.meshgrid(n, n, indexing="ij")
    phase = np.outer(coord[:, 0], rows.ravel()) + np.outer(coord[:, 1], cols.ravel())
    dft = np.exp(-2j * np.pi * phase / 12) / 12
    x = np.random.default_rng(7).standard_normal((12, 12)) + 0j
    y = np.random.default_rng(8).standard_normal(coord.shape[0]) + 0j
    assert _rel(op(torch.from_numpy(x)).numpy(), dft @ x.ravel()) < tol
    assert _rel(op.adjoint(torch.from_numpy(y)).numpy().ravel(), dft.conj().T @ y) < tol


def test_backend_choice():
    assert choose_backend(2, "cpu") == "sparse" and choose_backend(3, "cpu") == "finufft"
    with pytest.raises(ValueError, match="backend must be"):
        TorchNufft.from_coord((8, 8), radial(matrix=8).coord, backend="nfft")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_matches_cpu(backend):
    """The CUDA path (cufinufft, or cuSPARSE for the sparse backend) equals the CPU one."""
    if backend == "finufft":
        pytest.importorskip("cufinufft", reason="cufinufft is not installed")
    traj = radial(matrix=N, undersampling=4.0, samples_per_spoke=16)
    cpu, gpu = (TorchNufft.from_coord((N, N), traj.coord, backend=backend, device=device,
                                      dtype=torch.float64) for device in ("cpu", "cuda"))
    gen = torch.Generator().manual_seed(9)
    x, y = _crandn(gen, 2, N, N), _crandn(gen, 2, cpu.n_samples)
    assert _rel(gpu(x.cuda()).cpu().numpy(), cpu(x).numpy()) < 1e-5
    assert _rel(gpu.adjoint(y.cuda()).cpu().numpy(), cpu.adjoint(y).numpy()) < 1e-5
    assert _adjointness(gpu, gpu.adjoint, x.cuda(), y.cuda()) < 1e-10
