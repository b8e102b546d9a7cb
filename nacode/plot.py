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


def image_grid(
    images: Mapping[str, np.ndarray],
    *,
    ncols: int | None = None,
    cmap: str = "gray",
    vmin: float | None = 0.0,
    vmax: float | Mapping[str, float] | None = None,
    colorbar: str | None = None,
    panel_inches: float = 2.4,
):
    """Panels of 2D images with titles, optionally sharing one colour bar.

    Parameters
    ----------
    images : mapping of str to ndarray, each shape (Ny, Nx)
        Title → image (row 0 at the top).
    ncols : int, optional
        Panels per row (default: all in one row).
    cmap : str
        Colormap.
    vmin : float, optional
        Lower display limit.
    vmax : float or mapping, optional
        Upper display limit, shared or per title (default: the largest 99.5th percentile).
    colorbar : str, optional
        Label of a shared colour bar (e.g. ``"TSC (mM)"``); none if omitted.
    panel_inches : float
        Size of one panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    ncols = ncols or len(images)
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(ncols * panel_inches, nrows * panel_inches + 0.3))
    shared = vmax if isinstance(vmax, int | float) else None
    if vmax is None:
        shared = max(float(np.percentile(image, 99.5)) for image in images.values()) or 1.0
    shown = None
    for ax, (title, image) in zip(axes.flat, images.items(), strict=False):
        top = vmax.get(title, shared) if isinstance(vmax, Mapping) else shared
        shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=top, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.axis("off")
    if colorbar and shown is not None:
        fig.colorbar(shown, ax=axes, label=colorbar, shrink=0.8)
    else:
        fig.tight_layout()
    return fig


def trajectory_plot(traj, *, shots: int = 3):
    """k-space paths of the first ``shots`` interleaves/spokes coloured by time, and ``|k|(t)``.

    Parameters
    ----------
    traj : nacode.physics.trajectory.Trajectory
        A 2D trajectory.
    shots : int
        How many interleaves or spokes to draw in colour (the rest in grey).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.8))
    for coord in traj.coord:
        left.plot(coord[:, 1], coord[:, 0], color="0.85", lw=0.6)
    for shot in range(min(shots, traj.n_shots)):
        points = left.scatter(traj.coord[shot, :, 1], traj.coord[shot, :, 0],
                              c=traj.times_ms[shot], s=3, cmap="viridis")
    fig.colorbar(points, ax=left, label="time after excitation (ms)")
    half = traj.matrix[0] / 2
    left.set(xlim=(-half, half), ylim=(-half, half), aspect="equal",
             xlabel="$k_x$ (cycles/FOV)", ylabel="$k_y$ (cycles/FOV)")
    radius = np.sqrt((traj.coord[0] ** 2).sum(-1))
    right.plot(traj.times_ms[0], radius)
    right.set(xlabel="time after excitation (ms)", ylabel="|k| (cycles/FOV)",
              title=f"readout {traj.readout_ms:.2f} ms")
    fig.tight_layout()
    return fig


def line_plot(x: np.ndarray, curves: Mapping[str, np.ndarray], *, xlabel: str, ylabel: str,
              title: str | None = None, markers: bool = False):
    """Several curves over one x axis, with a legend."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for label, y in curves.items():
        ax.plot(x, y, marker="o" if markers else None, ms=3, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def calibration_plot(calibration):
    """Tube signals against their concentrations with the fitted line.

    Parameters
    ----------
    calibration : nacode.recon.calibration.Calibration
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    c = np.asarray(calibration.concentrations)
    ax.plot(c, calibration.signals, "o", label="tube ROI means")
    grid = np.linspace(0, c.max() * 1.05, 50)
    ax.plot(grid, calibration.slope * grid + calibration.intercept,
            label=f"fit, $R^2$ = {calibration.r2:.4f}")
    ax.set(xlabel="tube concentration (mM)", ylabel="signal (a.u.)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def bland_altman_plot(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                      unit: str = "mM", panel_inches: float = 3.0):
    """Bland–Altman plots: difference against mean, with the bias and 95 % limits.

    Parameters
    ----------
    panels : mapping of str to (ndarray, ndarray)
        Title → (method values, reference values), paired.
    unit : str
        Unit of the values, for the axis labels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(len(panels) * panel_inches, panel_inches), sharey=True)
    for ax, (title, (values, reference)) in zip(axes[0], panels.items(), strict=True):
        values, reference = np.asarray(values, float), np.asarray(reference, float)
        diff, mean = values - reference, (values + reference) / 2
        bias, spread = diff.mean(), 1.96 * diff.std(ddof=1)
        ax.scatter(mean, diff, s=12)
        for level, style in ((bias, "-"), (bias - spread, "--"), (bias + spread, "--")):
            ax.axhline(level, color="k", ls=style, lw=0.8)
        ax.set(title=title, xlabel=f"mean ({unit})")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"difference ({unit})")
    fig.tight_layout()
    return fig


def ranking_plot(gains, order: Mapping[str, list[str]], *, value: str = "psnr_gain",
                 xlabel: str = "PSNR gain over gridding (dB)", width_inches: float = 7.0,
                 fontsize: float = 9.5, intervals: Mapping | None = None):
    """One panel per study, stacked: each method's mean ``value`` over the noise levels, best
    on top.

    The figure is ``width_inches`` wide (a page's text width) with every label at
    ``fontsize`` points, so that it reads at that size when shown at page width; the panels
    share the x axis so that gains compare across studies.

    Parameters
    ----------
    gains : pandas.DataFrame
        Columns ``study``, ``snr``, ``method`` and ``value``
        (:func:`nacode.studies.benchmark.gains`).
    order : mapping of str to list of str
        Study → methods from best to worst (their rank order).
    width_inches, fontsize : float
        Figure width and the size of every label (points).
    intervals : mapping, optional
        ``{(study, method): (low, high)}``: an interval of each method's mean rank (e.g. the
        bootstrap's, :func:`nacode.evaluate.intervals.rank_intervals`), printed after its name.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    means = {study: gains[gains["study"] == study].groupby("method")[value].mean()
             for study in order}
    methods = {study: [m for m in names if m in means[study].index]
               for study, names in order.items()}
    rows = [max(len(m), 1) for m in methods.values()]
    height = 0.55 * len(order) + 0.24 * sum(rows) + 0.5
    fig, axes = plt.subplots(len(order), 1, squeeze=False, sharex=True,
                             figsize=(width_inches, height),
                             gridspec_kw={"height_ratios": rows})
    for ax, (study, names) in zip(axes[:, 0], methods.items(), strict=True):
        heights = [means[study][m] for m in names]
        positions = np.arange(len(names))[::-1]
        ax.barh(positions, heights, height=0.7,
                color=["C2" if h >= 0 else "C3" for h in heights])

        def label(i: int, m: str, study: str = study) -> str:
            if intervals is None or (study, m) not in intervals:
                return f"{i + 1}. {m}"
            low, high = intervals[(study, m)]
            return f"{i + 1}. {m}  [rank {low:.1f}–{high:.1f}]"

        ax.set_yticks(positions, [label(i, m) for i, m in enumerate(names)])
        ax.tick_params(labelsize=fontsize)
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.axvline(0.0, color="k", lw=0.8)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(study, fontsize=fontsize + 1, loc="left", fontweight="bold")
    axes[-1, 0].set_xlabel(xlabel, fontsize=fontsize)
    axes[-1, 0].tick_params(labelbottom=True)
    fig.tight_layout()
    return fig


def tuning_curves(rows, *, ncols: int = 4, panel_inches: float = 2.6, by: str = "R",
                  label: str = "R", ylabel: str = "validation PSNR (dB)"):
    """One panel per tuned (method, parameter): validation score against the value.

    ``rows`` is a :class:`pandas.DataFrame` (or records) with ``method``, ``parameter``,
    ``value``, ``score``, ``chosen`` (e.g. the concatenated ``Tuning.rows()``) and optionally
    a column ``by`` (default ``R``; e.g. ``nsa``), which adds one curve per value, labelled
    ``f"{label} = {value}"``. Log-scaled x; the chosen value is ringed.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.DataFrame(rows)
    table = table[pd.to_numeric(table["value"], errors="coerce").notna()]
    table = table.assign(value=table["value"].astype(float))
    groups = list(table.groupby(["method", "parameter"], sort=False))
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, min(ncols, len(groups)), squeeze=False,
                             figsize=(panel_inches * min(ncols, len(groups)),
                                      0.8 * panel_inches * nrows))
    for ax, ((method, parameter), group) in zip(axes.flat, groups, strict=False):
        curves = (group.groupby(by) if by in group and group[by].notna().any()
                  else [(None, group)])
        for rate, curve in curves:
            curve = curve.sort_values("value")
            ax.plot(curve["value"], curve["score"], marker=".",
                    label=None if rate is None else f"{label} = {rate:g}")
            picked = curve[curve["chosen"].astype(bool)]
            ax.plot(picked["value"], picked["score"], "o", mfc="none", ms=9, color="k")
        ax.set_xscale("log")
        ax.set_title(f"{method}: {parameter}", fontsize=9)
        ax.tick_params(labelsize=8)
        if rate is not None:
            ax.legend(fontsize=7)
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    fig.supylabel(ylabel, fontsize=9)
    fig.tight_layout()
    return fig
