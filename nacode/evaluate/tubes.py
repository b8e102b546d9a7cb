"""What a denoiser does to the calibration tubes, summarised the same way in every study.

Sodium images are calibrated on tubes of known concentration, so a denoiser that moves a
tube's mean signal by x % moves every aTSC derived from that image by about as much. Each
study measures, per image (volunteer, volume, …), each tube's ROI mean after denoising against
before; this module turns those rows into the two tables every chapter shows:

- :func:`summarise`: per group (method, NSA, …) and tube, the median, quartiles and largest
  absolute value of the per-image change;
- :func:`worst`: per group, the tube (≥ a concentration) whose median change is largest in
  absolute value, with its signed median, and the largest change of any one image.
"""

from __future__ import annotations

import numpy as np

TUBE = "tube_mM"  # concentration column, mM
CHANGE = "change_pct"  # per-image change column, 100 (after / before − 1)


def change_pct(before: float, after: float) -> float:
    """``100 (after / before − 1)``: the change of a tube's mean, in percent."""
    return 100.0 * (after / before - 1.0)


def summarise(per_image, by, *, carry=()):
    """Median, quartiles and largest absolute value of the per-image tube change.

    Parameters
    ----------
    per_image : pandas.DataFrame
        One row per image and tube: the ``by`` columns, ``tube_mM`` and ``change_pct``.
    by : list of str
        The grouping columns (e.g. ``["nsa", "method"]``), kept in order of first appearance.
    carry : sequence of str
        Further numeric columns whose median over the images is reported too (e.g. the tube
        means before and after, in mM).

    Returns
    -------
    pandas.DataFrame
        ``*by, tube_mM, n, median_pct, q1_pct, q3_pct, iqr_pct, max_abs_pct`` and the medians
        of ``carry``; rows sorted by group (first appearance) then tube.
    """
    import pandas as pd

    by = list(by)
    rows = []
    for key, group in per_image.groupby([*by, TUBE], sort=False):
        q1, median, q3 = np.percentile(group[CHANGE].to_numpy(float), [25, 50, 75])
        rows.append({**dict(zip([*by, TUBE], key, strict=True)), "n": len(group),
                     **{c: float(group[c].median()) for c in carry},
                     "median_pct": float(median), "q1_pct": float(q1), "q3_pct": float(q3),
                     "iqr_pct": float(q3 - q1),
                     "max_abs_pct": float(group[CHANGE].abs().max())})
    table = pd.DataFrame(rows)
    order = {k: i for i, k in enumerate(dict.fromkeys(
        per_image[by].itertuples(index=False, name=None)))}
    table["_order"] = [order[k] for k in table[by].itertuples(index=False, name=None)]
    return (table.sort_values(["_order", TUBE], kind="stable").drop(columns="_order")
            .reset_index(drop=True))


def worst(summary, by, *, min_mm: float = 25.0):
    """Per group, the tube ≥ ``min_mm`` whose median change is largest in absolute value.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`summarise`.
    by : list of str
        Its grouping columns.
    min_mm : float
        Smallest tube concentration considered, mM (the faint tubes' means are dominated by
        noise and partial volume).

    Returns
    -------
    pandas.DataFrame
        ``*by, tube_change_pct`` (that tube's signed median change, %), ``tube_mM`` (which
        tube) and ``worst_image_pct`` (the largest absolute change of any tube ≥ ``min_mm`` in
        any one image, %).
    """
    import pandas as pd

    by = list(by)
    part = summary[summary[TUBE] >= min_mm]
    if part.empty:
        raise ValueError(f"no tube of {min_mm:g} mM or more in the summary")
    rows = []
    for key, group in part.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = group.loc[group.median_pct.abs().idxmax()]
        rows.append({**dict(zip(by, key, strict=True)),
                     "tube_change_pct": float(row.median_pct), TUBE: float(row[TUBE]),
                     "worst_image_pct": float(group.max_abs_pct.max())})
    return pd.DataFrame(rows)
