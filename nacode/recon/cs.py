"""Compressed sensing: total-variation-regularised reconstruction (sigpy's solvers).

Solves ``min_x ½‖W^{1/2}(A x − y)‖² + λ ‖∇x‖₁`` with ``A`` the (planned) NUFFT of the
trajectory, ``W`` the normalised density-compensation weights (a preconditioner, as in
:class:`sigpy.mri.app.TotalVariationRecon`) and ``∇`` finite differences; sigpy's
:class:`~sigpy.app.LinearLeastSquares` runs the primal–dual iterations. The k-space is scaled
so that its gridding reconstruction peaks at 1 before solving, so ``λ`` means the same for
every scan, and the result is scaled back.
"""

from __future__ import annotations

import numpy as np

from nacode.physics.nufft import gridding, nufft_op
from nacode.physics.trajectory import Trajectory


def tv_recon(kspace: np.ndarray, traj: Trajectory, weights: np.ndarray, lamda: float, *,
             max_iter: int = 100) -> np.ndarray:
    """TV-regularised reconstruction of single-coil non-Cartesian k-space.

    Parameters
    ----------
    kspace : ndarray, shape ``traj.times_ms.shape``, complex
        Measured samples.
    traj : Trajectory
        Their positions.
    weights : ndarray, shape ``traj.times_ms.shape``
        Density-compensation weights (:func:`~nacode.physics.nufft.density_compensation`).
    lamda : float
        Regularisation strength relative to an image scaled to peak 1 (≥ 0).
    max_iter : int
        Primal–dual iterations.

    Returns
    -------
    ndarray, shape ``traj.matrix``, complex128
    """
    import sigpy as sp

    if lamda < 0:
        raise ValueError(f"lamda must be ≥ 0, got {lamda}")
    if kspace.shape != traj.times_ms.shape:
        raise ValueError(f"k-space shape {kspace.shape} != trajectory {traj.times_ms.shape}")
    scale = float(np.abs(gridding(kspace, traj, weights)).max()) or 1.0
    root = np.sqrt(weights).ravel()
    A = sp.linop.Multiply((root.size,), root) * nufft_op(traj.matrix, traj.coord)
    return _tv_solve(A, (kspace.ravel() / scale) * root, lamda, max_iter) * scale


def _tv_solve(A, y: np.ndarray, lamda: float, max_iter: int, *, G=None) -> np.ndarray:
    """``argmin ½‖Ax − y‖² + λ‖Gx‖₁`` by sigpy's primal–dual LinearLeastSquares; ``G`` is
    the finite-difference gradient unless given (e.g. a directional one)."""
    import sigpy as sp

    G = sp.linop.FiniteDifference(A.ishape) if G is None else G
    # sigpy estimates the primal-dual step sizes by power iterations from a vector of the
    # global NumPy generator: seed it for this solve only, so that the same data give the
    # same image on every run (unseeded, two runs differed by 2e-4)
    state = np.random.get_state()  # noqa: NPY002 (sigpy draws from the legacy generator)
    np.random.seed(0)  # noqa: NPY002
    try:
        app = sp.app.LinearLeastSquares(A, y, proxg=sp.prox.L1Reg(G.oshape, lamda), G=G,
                                        max_iter=max_iter, show_pbar=False)
        return np.asarray(app.run())
    finally:
        np.random.set_state(state)  # noqa: NPY002


def tv_recon_multicoil(kspace: np.ndarray, traj: Trajectory, weights: np.ndarray,
                       maps: np.ndarray, lamda: float, *, max_iter: int = 100,
                       gradient=None) -> np.ndarray:
    """TV-regularised SENSE reconstruction of multi-coil non-Cartesian k-space (sigpy).

    Minimises ``½ ‖√w (F S x − y)‖² + λ ‖∇x‖₁`` over the complex image ``x`` with sigpy's
    primal–dual :class:`~sigpy.app.LinearLeastSquares`, the NUFFT ``F`` and coil maps ``S``.

    Parameters
    ----------
    kspace : ndarray, shape ``(n_coils, *traj.times_ms.shape)``, complex
    traj : Trajectory
    weights : ndarray, shape ``traj.times_ms.shape``
        Density compensation.
    maps : ndarray, shape ``(n_coils, *traj.matrix)``, complex
        Coil sensitivities (e.g. estimated from the data).
    lamda : float
        Regularisation strength relative to an image scaled to peak 1 (≥ 0).
    max_iter : int
        Primal–dual iterations.
    gradient : sigpy Linop, optional
        The operator in the ℓ₁ term instead of finite differences (e.g. the directional
        gradient of :func:`nacode.recon.raw.directional_projection`).

    Returns
    -------
    ndarray, shape ``traj.matrix``, complex128
    """
    import sigpy as sp

    from nacode.physics.linops import multicoil_nufft_op

    if lamda < 0:
        raise ValueError(f"lamda must be ≥ 0, got {lamda}")
    shape = traj.times_ms.shape
    if kspace.shape[1:] != shape or maps.shape[0] != kspace.shape[0]:
        raise ValueError(f"k-space {kspace.shape} and maps {maps.shape} do not match the "
                         f"trajectory {shape}")
    coil_images = gridding(kspace, traj, weights)
    scale = float(np.abs((maps.conj() * coil_images).sum(0)).max()) or 1.0
    root = np.sqrt(weights).reshape(1, -1)
    A = sp.linop.Multiply((maps.shape[0], root.size), root) * multicoil_nufft_op(
        maps, traj.coord.reshape(-1, traj.coord.shape[-1]))
    y = (kspace.reshape(kspace.shape[0], -1) / scale) * root
    return _tv_solve(A, y, lamda, max_iter, G=gradient) * scale
