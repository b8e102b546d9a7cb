"""``nacode recon``: magnitude images from raw non-Cartesian k-space (:class:`~nacode.io.raw.
RawData`), by gridding, CS-TV or directional TV guided by an anatomical prior.

Every method starts the same way:

1. **Noise whitening** when the file has a noise scan: the coils are mixed by
   :func:`~nacode.physics.noise.whitening_matrix` of the scan's covariance (scaled to the
   imaging bandwidth), so that least squares and the coil combination weight the channels
   optimally and correlated noise does not bias them.
2. **Density compensation** (Pipe–Menon, :func:`~nacode.physics.nufft.density_compensation`)
   and gridding of every coil.
3. **Coil sensitivities** by Walsh's method on the gridded coil images
   (:func:`~nacode.physics.coils.walsh_maps`, unit norm over the coils), so that the gridded
   combination and the SENSE-type solutions below are in the same units.

Then ``gridding`` is the magnitude of the Walsh combination; ``cs`` solves
``min_x ½‖√w (F S x − y)‖² + λ‖∇x‖₁`` (:func:`~nacode.recon.cs.tv_recon_multicoil`);
``dtv`` the same with ``∇`` replaced by ``P_ξ ∇``, ``P_ξ v = v − ξ (ξ·v)``, ξ the direction
field of the prior (Ehrhardt & Betcke 2016): edges of the prior cost less across them, so the
sodium image keeps the prior's boundaries. ``ξ = γ ∇p / √(|∇p|² + η²)`` with ``γ = 0.995``
and ``η`` a fraction ``eta`` of the 99th percentile of ``|∇p|`` (the prior is normalised by
its 99th percentile first). Both use sigpy's primal–dual solver and its (anisotropic) ℓ₁ of
each difference, so ``dtv`` with a flat prior is exactly ``cs``. 2D and 3D alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nacode.io.raw import RawData

METHODS = ("gridding", "cs", "dtv")
#: Defaults: λ relative to an image scaled to peak 1 (as :func:`~nacode.recon.cs.tv_recon`),
#: primal–dual iterations, η of the direction field, ξ's length bound.
LAMDA = 0.01
MAX_ITER = 50
ETA = 0.05
GAMMA = 0.995


def direction_field(prior: np.ndarray, *, eta: float = ETA, gamma: float = GAMMA
                    ) -> np.ndarray:
    """ξ of a prior image, shape ``(ndim, *prior.shape)``, ``|ξ| ≤ γ`` per voxel.

    Differences are :func:`~nacode.physics.linops.finite_difference_op` (the operator the solver
    uses), after normalising the prior by its 99th percentile.
    """
    from nacode.physics.linops import finite_difference_op

    prior = np.asarray(prior, dtype=np.float64)
    if not np.all(np.isfinite(prior)):
        raise ValueError("the prior contains NaN or infinity")
    scale = float(np.percentile(np.abs(prior), 99)) or 1.0
    grad = finite_difference_op(prior.shape)(prior / scale)
    norm = np.sqrt((grad**2).sum(axis=0))
    level = eta * (float(np.percentile(norm, 99)) or 1.0)
    return gamma * grad / np.sqrt(norm**2 + level**2)


def directional_projection(xi: np.ndarray):
    """The sigpy operator ``v ↦ v − ξ (ξ·v)`` on gradients of shape ``xi.shape``
    (``(ndim, *shape)``); self-adjoint for real ξ."""
    import sigpy as sp

    class DirectionalProjection(sp.linop.Linop):
        def __init__(self):
            super().__init__(xi.shape, xi.shape)

        def _apply(self, v):
            return v - xi * (xi * v).sum(axis=0, keepdims=True)

        def _adjoint_linop(self):
            return self

    return DirectionalProjection()


def cache_dir() -> Path:
    """Where density weights are kept between runs: ``$NACODE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/nacode`` (``~/.cache/nacode``)."""
    env = os.environ.get("NACODE_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nacode"


def cached_density(traj) -> np.ndarray:
    """:func:`~nacode.physics.nufft.density_compensation` of ``traj``, kept on disk.

    Pipe–Menon weights depend only on the trajectory and the matrix but take most of a 3D
    gridding (47 s of 53 s for 5655 spokes × 31 samples on 60³): they are stored as
    ``dcf/<sha1 of coordinates and matrix>.npy`` under :func:`cache_dir`, written atomically,
    and recomputed when the file is absent or unreadable (or the folder unwritable).
    """
    import hashlib

    from nacode.physics.nufft import density_compensation
    from nacode.results import atomic_write

    key = hashlib.sha1(np.ascontiguousarray(traj.coord).tobytes())
    key.update(repr(tuple(traj.matrix)).encode())
    path = cache_dir() / "dcf" / f"{key.hexdigest()}.npy"
    try:
        weights = np.load(path)
        if weights.shape == traj.times_ms.shape and np.all(np.isfinite(weights)):
            return weights
    except (OSError, ValueError):
        pass
    weights = density_compensation(traj)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as handle:
            np.save(handle, weights)
    except OSError:  # a read-only home: recompute next time
        pass
    return weights


def whitened(raw: RawData) -> tuple[np.ndarray, np.ndarray | None]:
    """The k-space with its coils whitened by the noise scan, and the covariance used."""
    from nacode.physics.noise import whiten, whitening_matrix

    covariance = raw.noise_covariance()
    if covariance is None or raw.n_coils == 1:
        return raw.kspace, covariance
    matrix = whitening_matrix(covariance)
    return np.stack([whiten(k, matrix) for k in raw.kspace]), covariance


def prepare(raw: RawData):
    """What every reconstruction of ``raw`` starts from: ``(kspace, covariance, traj,
    weights)``, the k-space whitened by the noise scan (:func:`whitened`), the covariance used
    (None without a noise scan), the :class:`~nacode.physics.trajectory.Trajectory` and its
    cached density weights (:func:`cached_density`)."""
    kspace, covariance = whitened(raw)
    traj = raw.trajectory()
    return kspace, covariance, traj, cached_density(traj)


def scan_info(raw: RawData, covariance, method: str) -> dict:
    """The provenance every reconstruction records: method, coils, whitening, grid."""
    return {"method": method, "coils": raw.n_coils,
            "whitened": covariance is not None and raw.n_coils > 1,
            "matrix": list(raw.matrix), "fov_mm": list(raw.fov_mm)}


def reconstruct(raw: RawData, method: str = "gridding", *, lamda: float = LAMDA,
                max_iter: int = MAX_ITER, prior: np.ndarray | None = None, eta: float = ETA,
                progress: bool = False) -> tuple[np.ndarray, dict]:
    """Reconstruct every slice (or the volume) of ``raw``.

    Parameters
    ----------
    raw : RawData
        From :func:`nacode.io.raw.read_ismrmrd`.
    method : {"gridding", "cs", "dtv"}
    lamda, max_iter : float, int
        Regularisation (relative to an image of peak 1) and iterations of ``cs`` and ``dtv``.
    prior : ndarray, shape ``raw.matrix`` (3D) or ``(n_slices, *raw.matrix)`` (2D), optional
        Anatomical image on the reconstruction grid; needed by ``dtv``.
    eta : float
        ``dtv``: edge scale of the direction field (:func:`direction_field`).
    progress : bool
        A tqdm bar over slices.

    Returns
    -------
    image : ndarray, float64
        Magnitude, shape ``raw.matrix`` for 3D data or ``(n_slices, *raw.matrix)`` for 2D.
    info : dict
        method, parameters, whether the coils were whitened, number of coils.
    """
    from tqdm.auto import tqdm

    from nacode.physics.coils import walsh_maps
    from nacode.physics.linops import finite_difference_op
    from nacode.physics.nufft import gridding
    from nacode.recon.cs import tv_recon_multicoil

    if method not in METHODS:
        raise ValueError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if method != "gridding" and (lamda < 0 or max_iter < 1):
        raise ValueError(f"need λ ≥ 0 and at least 1 iteration, got {lamda} and {max_iter}")
    three_d = len(raw.matrix) == 3
    n_slices = raw.kspace.shape[0]
    if method == "dtv":
        if prior is None:
            raise ValueError("--method dtv needs --prior IMAGE (an anatomical image on the "
                             "reconstruction grid)")
        prior = np.asarray(prior, dtype=np.float64)
        want = raw.matrix if three_d else (n_slices, *raw.matrix)
        if prior.shape != tuple(want):
            raise ValueError(f"the prior has shape {prior.shape}, the reconstruction "
                             f"{tuple(want)}; resample it onto the reconstruction grid")
    kspace, covariance, traj, weights = prepare(raw)
    out = []
    for s in tqdm(range(n_slices), desc="reconstructing", unit="slice",
                  disable=not progress or n_slices < 2):
        coil_images = gridding(kspace[s], traj, weights)
        maps = walsh_maps(coil_images)
        if method == "gridding":
            image = (maps.conj() * coil_images).sum(axis=0)
        elif method == "cs":
            image = tv_recon_multicoil(kspace[s], traj, weights, maps, lamda,
                                       max_iter=max_iter)
        else:
            xi = direction_field(prior if three_d else prior[s], eta=eta)
            gradient = directional_projection(xi) * finite_difference_op(raw.matrix)
            image = tv_recon_multicoil(kspace[s], traj, weights, maps, lamda,
                                       max_iter=max_iter, gradient=gradient)
        out.append(np.abs(image))
    image = out[0] if three_d else np.stack(out)
    info = scan_info(raw, covariance, method)
    if method != "gridding":
        info.update(lamda=lamda, max_iter=max_iter)
    if method == "dtv":
        info["eta"] = eta
    return image, info
