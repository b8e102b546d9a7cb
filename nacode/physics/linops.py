"""Linear operators of the acquisition and the shared adjointness/linearity check.

Operators are sigpy ``Linop`` objects (functions first, operators on top): the NUFFT
(:func:`nacode.physics.nufft.nufft_op`), the coil operator ``x ↦ (s_c x)_c``, the
multi-coil NUFFT ``A = F S`` and finite differences. :func:`adjoint_error` is the one check
every operator passes in the tests: ``|⟨Ax, y⟩ − ⟨x, Aᴴy⟩| / |⟨Ax, y⟩|`` in complex128.
"""

from __future__ import annotations

import numpy as np

from nacode.physics.nufft import nufft_op


def coil_op(maps: np.ndarray):
    """``x ↦ maps · x``: image ``shape`` → coil images ``(n_coils, *shape)``."""
    import sigpy as sp

    return sp.linop.Multiply(maps.shape[1:], maps)


def multicoil_nufft_op(maps: np.ndarray, coord: np.ndarray):
    """Multi-coil forward model ``F S``: image → k-space of every coil, (n_coils, n)."""
    return nufft_op(maps.shape, coord) * coil_op(maps)


def finite_difference_op(shape: tuple[int, ...]):
    """Forward differences along every axis (circular): ``shape`` → ``(ndim, *shape)``."""
    import sigpy as sp

    return sp.linop.FiniteDifference(tuple(shape))


class TorchLinop:
    """A torch operator pair seen as a NumPy operator, for :func:`adjoint_error` and friends.

    ``forward`` and ``adjoint`` map complex128 tensors of shape ``ishape`` to ``oshape`` and
    back; calls take and return NumPy arrays (the ``op(x)`` / ``op.H(y)`` protocol of
    sigpy's ``Linop`` that the shared checks use).
    """

    def __init__(self, forward, adjoint, ishape: tuple[int, ...], oshape: tuple[int, ...]
                 ) -> None:
        self.forward, self.adjoint = forward, adjoint
        self.ishape, self.oshape = tuple(ishape), tuple(oshape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        return self.forward(torch.as_tensor(np.asarray(x, dtype=np.complex128))).numpy()

    @property
    def H(self) -> TorchLinop:
        """The adjoint operator."""
        return TorchLinop(self.adjoint, self.forward, self.oshape, self.ishape)


def _random(shape, rng) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def adjoint_error(op, rng: np.random.Generator | None = None) -> float:
    """Relative adjointness error ``|⟨Ax, y⟩ − ⟨x, Aᴴy⟩| / |⟨Ax, y⟩|`` on random data.

    Normalising by the inner product itself (not by ``‖Ax‖ ‖y‖``, which is √n times larger
    for random vectors) makes a 1 % error in the adjoint read as 0.01.
    """
    rng = rng or np.random.default_rng(0)
    x = _random(op.ishape, rng)
    y = _random(op.oshape, rng)
    forward = np.vdot(op(x), y)
    backward = np.vdot(x, op.H(y))
    return float(abs(forward - backward) / abs(forward))


def linearity_error(op, rng: np.random.Generator | None = None) -> float:
    """Relative error of ``A(a x + b z) = a Ax + b Az`` for random complex a, b, x, z."""
    rng = rng or np.random.default_rng(1)
    x, z = _random(op.ishape, rng), _random(op.ishape, rng)
    a, b = _random((2,), rng)
    combined = op(a * x + b * z)
    separate = a * op(x) + b * op(z)
    return float(np.linalg.norm(combined - separate) / np.linalg.norm(separate))
