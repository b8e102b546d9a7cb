"""From a virtual subject to k-space: the noiseless forward model of a sodium scan.

The object is drawn on the subject's fine grid and sampled along the trajectory with a NUFFT
(:func:`nacode.physics.nufft.sample_image`), so partial volume, the finite k-space extent and
the sampling pattern's point-spread function all arise as in a real scan. With readout decay
every sample sees the bi-exponential T2* decay at its own acquisition time; the tissues'
decay curves are factored into a few temporal basis functions (:func:`decay_basis`), one
NUFFT per basis function (and coil). A subject's within-tissue TSC texture
(:attr:`Subject.tsc_texture`) multiplies every per-voxel image: TSC enters the signal linearly,
so texture × per-label curve is exact.
"""

from __future__ import annotations

import numpy as np

from nacode.anatomy.subject import Subject
from nacode.physics.nufft import sample_image
from nacode.physics.signal import CALF_SEQUENCE, Sequence, decay, decay_basis, saturation
from nacode.physics.trajectory import Trajectory


def tissue_curves(subject: Subject, seq: Sequence, times_ms: np.ndarray) -> np.ndarray:
    """Signal of every label at the given times: ρ · S(T1) · D(t), shape (n_labels, n_times).

    Row ``l`` belongs to label ``l`` (labels absent from the table give zero rows).
    """
    n_labels = int(subject.labels.max()) + 1
    curves = np.zeros((n_labels, times_ms.size))
    for label, tissue in subject.tissues.items():
        if label < n_labels and tissue.tsc > 0:
            weight = tissue.tsc * saturation(tissue.t1, seq.tr_ms, seq.flip_deg)
            curves[label] = weight * decay(times_ms, tissue.t2_fast, tissue.t2_slow,
                                           tissue.frac_fast)
    return curves


def voxel_image(subject: Subject, per_label: np.ndarray) -> np.ndarray:
    """A per-label value painted on the fine grid, times the subject's TSC texture if any.

    Parameters
    ----------
    subject : Subject
    per_label : ndarray, shape (n_labels,)
        Value of each label (a column of :func:`tissue_curves` or of its decay coefficients),
        proportional to TSC.

    Returns
    -------
    ndarray, shape ``subject.shape``
        ``per_label[labels]``, multiplied by ``subject.tsc_texture`` when it is set (exactly
        ``per_label[labels]`` otherwise).
    """
    image = per_label[subject.labels]
    if subject.tsc_texture is not None:
        image = image * subject.tsc_texture
    return image


def signal_image(subject: Subject, seq: Sequence = CALF_SEQUENCE, *, te_ms: float = 0.23
                 ) -> np.ndarray:
    """Sodium signal on the fine grid at one time ``te_ms``: ρ · S(T1) · D(TE), float64.

    ρ is the TSC, texture included (:func:`voxel_image`).
    """
    curves = tissue_curves(subject, seq, np.array([te_ms]))
    return voxel_image(subject, curves[:, 0])


def acquire(
    subject: Subject,
    traj: Trajectory,
    seq: Sequence = CALF_SEQUENCE,
    *,
    readout_decay: bool = True,
    coil_maps: np.ndarray | None = None,
    tol: float = 1e-4,
) -> np.ndarray:
    """Noiseless k-space of a subject along a trajectory.

    Parameters
    ----------
    subject : Subject
        The virtual subject; its field of view must equal the trajectory's (in every axis).
    traj : Trajectory
        Sampling pattern and sample times (TE included).
    seq : Sequence
        TR and flip angle (T1 saturation).
    readout_decay : bool
        If True each sample decays to its own time; if False the whole readout sees the
        object at TE (the first sample time), as if T2* were infinite during the readout.
    coil_maps : ndarray, shape ``(n_coils, *subject.shape)``, optional
        Receive sensitivities (and any bias field) on the fine grid.
    tol : float
        Relative error accepted in the low-rank decay model.

    Returns
    -------
    ndarray, shape ``traj.times_ms.shape`` or ``(n_coils, *traj.times_ms.shape)``, complex128
        k-space in the units of the NUFFT of a TSC-like image (mM-scaled) on the matrix.
    """
    if not np.allclose(subject.fov_mm, traj.fov_mm, rtol=1e-6):
        raise ValueError(f"subject FOV {subject.fov_mm} mm != trajectory FOV {traj.fov_mm} mm")
    if subject.ndim != len(traj.matrix):
        raise ValueError(f"subject is {subject.ndim}D, trajectory {len(traj.matrix)}D")
    if coil_maps is not None and coil_maps.shape[1:] != subject.shape:
        raise ValueError(f"coil maps {coil_maps.shape} must be (n_coils, *{subject.shape})")
    if readout_decay:
        times, index = np.unique(traj.times_ms, return_inverse=True)
        index = index.reshape(traj.times_ms.shape)
    else:
        times, index = np.array([traj.times_ms.min()]), np.zeros(traj.times_ms.shape, int)
    coefficients, basis, _ = decay_basis(tissue_curves(subject, seq, times), tol=tol)
    maps = np.ones((1, *subject.shape)) if coil_maps is None else coil_maps
    kspace = np.zeros((maps.shape[0], *traj.times_ms.shape), dtype=np.complex128)
    for r in range(basis.shape[0]):
        image = voxel_image(subject, coefficients[:, r])
        weight = basis[r][index]
        for c, sensitivity in enumerate(maps):
            kspace[c] += weight * sample_image(image * sensitivity, traj)
    return kspace[0] if coil_maps is None else kspace


def downsample(fine: np.ndarray, matrix: tuple[int, ...]) -> np.ndarray:
    """Block-average a fine-grid map onto the acquisition matrix (integer factor per axis).

    Voxel j of the matrix is centred at ``(j − N/2)`` voxels (the NUFFT's origin is index
    N/2, on both grids), so its block is the fine indices ``f·j − f/2 … f·j + f/2 − 1`` for a
    factor ``f``: the map is rolled by ``f // 2`` before the blocks are averaged (for even
    ``f`` the block centre is then half a fine voxel off, 1/(2f) of an acquisition voxel).
    """
    factors = {f // m for f, m in zip(fine.shape, matrix, strict=True)}
    if len(factors) != 1 or any(f % m for f, m in zip(fine.shape, matrix, strict=True)):
        raise ValueError(f"fine grid {fine.shape} is not an integer multiple of {matrix}")
    factor = factors.pop()
    split = [n for m in matrix for n in (m, factor)]
    rolled = np.roll(np.asarray(fine, dtype=np.float64), factor // 2, axis=tuple(range(fine.ndim)))
    return rolled.reshape(split).mean(
        axis=tuple(range(1, 2 * len(matrix), 2)))
