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
    y = (kspace.ravel() / scale) * root
    G = sp.linop.FiniteDifference(A.ishape)
    proxg = sp.prox.L1Reg(G.oshape, lamda)
    app = sp.app.LinearLeastSquares(A, y, proxg=proxg, G=G, max_iter=max_iter,
                                    show_pbar=False)
    return np.asarray(app.run()) * scale
