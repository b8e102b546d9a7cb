"""The MNI152 2009a symmetric templates shipped with nilearn: real brain anatomy, offline.

The T1 template and the grey- and white-matter probability maps come from nilearn's
``load_mni152_*`` functions (no download). Cerebrospinal fluid is what the brain mask holds
beyond GM and WM: ``csf = clip(mask - gm - wm, 0, 1)``. Arrays are indexed ``(x, y, z)`` in
RAS+ voxel order with the affine from the NIfTI header; voxel sizes are in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESOLUTIONS_MM = (1, 2)
TISSUES = ("GM", "WM", "CSF")


@dataclass(frozen=True)
class MNI152:
    """MNI152 2009a templates on one grid.

    Attributes
    ----------
    t1 : ndarray, shape (X, Y, Z), float32
        T1-weighted template, intensities in [0, 1].
    gm, wm, csf : ndarray, shape (X, Y, Z), float32
        Tissue probability maps in [0, 1]; inside the mask ``gm + wm + csf`` ≈ 1.
    mask : ndarray, shape (X, Y, Z), bool
        Brain mask (nilearn's, threshold 0.2).
    affine : ndarray, shape (4, 4)
        Voxel-to-world (mm, MNI space) transform.
    voxel_mm : tuple of float
        Voxel size along x, y, z in mm.
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    voxel_mm: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape ``(X, Y, Z)``."""
        return self.t1.shape

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(np.prod(self.voxel_mm)) / 1000.0

    def tissue(self, name: str) -> np.ndarray:
        """Return the probability map of ``"GM"``, ``"WM"`` or ``"CSF"``."""
        maps = {"GM": self.gm, "WM": self.wm, "CSF": self.csf}
        if name not in maps:
            raise ValueError(f"unknown tissue {name!r}: expected one of {list(maps)}")
        return maps[name]


def load_mni152(resolution_mm: int = 2) -> MNI152:
    """Load the MNI152 2009a T1, GM and WM templates and derive CSF and the brain mask.

    Parameters
    ----------
    resolution_mm : {1, 2}
        Isotropic voxel size in mm. 1 is the templates' native grid (197 × 233 × 189);
        2 is nilearn's resampling (99 × 117 × 95).

    Returns
    -------
    MNI152
        The templates as float32 arrays with their affine.

    Raises
    ------
    ValueError
        If ``resolution_mm`` is not 1 or 2.
    """
    if resolution_mm not in RESOLUTIONS_MM:
        raise ValueError(f"resolution_mm must be one of {RESOLUTIONS_MM}, got {resolution_mm!r}")
    from nilearn import datasets

    t1_img = datasets.load_mni152_template(resolution=resolution_mm)
    gm = datasets.load_mni152_gm_template(resolution=resolution_mm).get_fdata(dtype=np.float32)
    wm = datasets.load_mni152_wm_template(resolution=resolution_mm).get_fdata(dtype=np.float32)
    mask = datasets.load_mni152_brain_mask(resolution=resolution_mm).get_fdata() > 0.5
    gm, wm = np.clip(gm, 0, 1), np.clip(wm, 0, 1)
    csf = np.where(mask, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0).astype(np.float32)
    zooms = tuple(float(z) for z in t1_img.header.get_zooms()[:3])
    return MNI152(
        t1=t1_img.get_fdata(dtype=np.float32),
        gm=gm,
        wm=wm,
        csf=csf,
        mask=mask,
        affine=np.asarray(t1_img.affine, dtype=float),
        voxel_mm=zooms,  # type: ignore[arg-type]
    )


def tissue_volumes(templates: MNI152):
    """Tissue volumes and mean T1 intensity of the templates.

    Volumes are probability-weighted sums over the brain mask: ``V_t = Σ p_t · voxel volume``.

    Parameters
    ----------
    templates : MNI152
        Output of :func:`load_mni152`.

    Returns
    -------
    pandas.DataFrame
        One row per tissue (GM, WM, CSF) and a ``brain`` total, with columns ``tissue``,
        ``volume_ml``, ``fraction`` (of the brain-mask volume) and ``mean_t1`` (probability-
        weighted mean T1 intensity, [0, 1] scale).
    """
    import pandas as pd

    inside = templates.mask
    brain_ml = float(inside.sum()) * templates.voxel_ml
    rows = []
    for name in TISSUES:
        weights = templates.tissue(name) * inside
        volume = float(weights.sum(dtype=np.float64)) * templates.voxel_ml
        mean_t1 = float((weights * templates.t1).sum(dtype=np.float64) / weights.sum())
        rows.append({"tissue": name, "volume_ml": volume, "fraction": volume / brain_ml,
                     "mean_t1": mean_t1})
    total = sum(row["volume_ml"] for row in rows)
    mean_brain = float(templates.t1[inside].mean(dtype=np.float64))
    rows.append({"tissue": "brain", "volume_ml": total, "fraction": total / brain_ml,
                 "mean_t1": mean_brain})
    return pd.DataFrame(rows)


def block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    """Average non-overlapping cubes of ``factor`` voxels per side (partial cubes are dropped).

    Parameters
    ----------
    volume : ndarray, shape (X, Y, Z)
        Fine-grid values (e.g. tissue probabilities).
    factor : int
        Integer coarsening factor along every axis (≥ 1).

    Returns
    -------
    ndarray, shape (X // factor, Y // factor, Z // factor), float64
    """
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D (X, Y, Z) volume, got shape {volume.shape}")
    nx, ny, nz = (n // factor for n in volume.shape)
    cropped = np.asarray(volume, dtype=np.float64)[: nx * factor, : ny * factor, : nz * factor]
    return cropped.reshape(nx, factor, ny, factor, nz, factor).mean(axis=(1, 3, 5))


def mixed_voxel_fraction(templates: MNI152, voxel_mm: float = 4.0,
                         purity: float = 0.9) -> float:
    """Fraction of brain voxels at a coarser isotropic resolution that mix tissues.

    The GM, WM and CSF maps are block-averaged to ``voxel_mm`` (the acquisition's voxel) and a
    coarse voxel counts as *mixed* when no tissue reaches ``purity`` of it. Only coarse voxels
    that are at least half inside the brain mask are counted.

    Parameters
    ----------
    templates : MNI152
        Fine-grid templates; ``voxel_mm`` must be an integer multiple of their voxel size.
    voxel_mm : float
        Coarse voxel size in mm (4 mm for the brain study).
    purity : float
        Tissue fraction in (0, 1] above which a voxel is called pure.

    Returns
    -------
    float
        Mixed voxels / brain voxels at the coarse resolution, in [0, 1].
    """
    factor = voxel_mm / templates.voxel_mm[0]
    if abs(factor - round(factor)) > 1e-9 or round(factor) < 1:
        raise ValueError(f"voxel_mm={voxel_mm} is not an integer multiple of "
                         f"{templates.voxel_mm[0]} mm")
    if not 0 < purity <= 1:
        raise ValueError(f"purity must lie in (0, 1], got {purity}")
    factor = round(factor)
    inside = block_mean(templates.mask, factor) >= 0.5
    tissues = np.stack([block_mean(templates.tissue(t) * templates.mask, factor)
                        for t in TISSUES])
    pure = tissues.max(axis=0) >= purity
    return float((inside & ~pure).sum() / inside.sum())
