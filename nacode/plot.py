"""Plotting helpers shared by the chapters (matplotlib is imported lazily)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

VIEWS = ("axial", "coronal", "sagittal")


def central_slices(volume: np.ndarray, centre: tuple[int | None, ...] | None = None):
    """Return the axial, coronal and sagittal slices through ``centre`` of an (X, Y, Z) volume.

    Parameters
    ----------
    volume : ndarray, shape (X, Y, Z)
        Volume in RAS+ voxel order.
    centre : tuple of int or None, optional
        Voxel indices ``(x, y, z)`` the slices pass through; ``None`` (for the whole tuple or
        one axis) means the middle of that axis.

    Returns
    -------
    dict of str to ndarray
        ``axial`` (Y, X), ``coronal`` (Z, X) and ``sagittal`` (Z, Y) slices, transposed and
        flipped for display with ``origin="upper"``: anterior and superior up, the subject's
        right on the image's left (radiological convention), anterior on the left in sagittal.
    """
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D (X, Y, Z) volume, got shape {volume.shape}")
    given = tuple(centre) if centre is not None else (None, None, None)
    if len(given) != 3:
        raise ValueError(f"centre must have 3 entries (x, y, z), got {centre!r}")
    cx, cy, cz = (n // 2 if c is None else int(c) for c, n in zip(given, volume.shape, strict=True))
    axial = volume[:, :, cz].T[::-1, ::-1]
    coronal = volume[:, cy, :].T[::-1, ::-1]
    sagittal = volume[cx, :, :].T[::-1, ::-1]
    return {"axial": axial, "coronal": coronal, "sagittal": sagittal}


def orthogonal_views(
    volumes: Mapping[str, np.ndarray],
    voxel_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    *,
    cmaps: Mapping[str, str] | None = None,
    vmax: Mapping[str, float] | None = None,
    centre: tuple[int | None, ...] | None = None,
    panel_inches: float = 2.4,
):
    """Grid of orthogonal central slices: one row per volume, one column per view.

    Parameters
    ----------
    volumes : mapping of str to ndarray, each shape (X, Y, Z)
        Row label → volume (all on one grid).
    voxel_mm : tuple of float
        Voxel size (mm) along x, y, z; sets each panel's aspect ratio.
    cmaps, vmax : mapping, optional
        Per-row colormap (default ``"gray"``) and upper display limit (default: the
        volume's 99.5th percentile).
    centre : tuple of int or None, optional
        Voxel the three slices pass through (see :func:`central_slices`).
    panel_inches : float
        Size of one panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    cmaps, vmax = dict(cmaps or {}), dict(vmax or {})
    fig, axes = plt.subplots(len(volumes), 3, squeeze=False,
                             figsize=(3 * panel_inches, len(volumes) * panel_inches))
    dx, dy, dz = voxel_mm
    aspects = {"axial": dy / dx, "coronal": dz / dx, "sagittal": dz / dy}
    for i, (label, volume) in enumerate(volumes.items()):
        top = vmax.get(label, float(np.percentile(volume, 99.5)) or 1.0)
        for j, (view, image) in enumerate(central_slices(volume, centre).items()):
            ax = axes[i, j]
            ax.imshow(image, cmap=cmaps.get(label, "gray"), vmin=0, vmax=top,
                      aspect=aspects[view], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label)
            if i == 0:
                ax.set_title(view)
    fig.tight_layout()
    return fig
