"""Bootstrap intervals for a ranking of methods scored on the same subjects.

A benchmark scores every method on every test subject at several noise levels; its table
reports, per study, each method's median score per level and its mean rank over the levels
(rank 1 = best median at a level). With a handful of subjects per study those numbers move
when one subject is swapped for another, so :func:`rank_intervals` resamples the *subjects*
(with replacement, the same draw for every method and level, so that the pairing is kept) and
reports the percentile interval of both statistics over the draws.
"""

from __future__ import annotations

import numpy as np


def _cube(rows, subject: str, level: str, method: str, value: str):
    """``rows`` of one study as an array (subjects, levels, methods), with the labels.

    Methods lacking a score for some subject and level are dropped (an optional method
    that did not run), so that every draw ranks the same methods.
    """
    table = rows.pivot_table(index=subject, columns=[level, method], values=value,
                             aggfunc="first")
    subjects = list(table.index)
    levels = sorted(table.columns.get_level_values(0).unique())
    methods = [m for m in dict.fromkeys(table.columns.get_level_values(1))
               if all((lv, m) in table.columns and table[(lv, m)].notna().all()
                      for lv in levels)]
    cube = np.stack([table[[(lv, m) for m in methods]].to_numpy(float) for lv in levels],
                    axis=1)
    return cube, subjects, levels, methods


def _ranks(medians: np.ndarray) -> np.ndarray:
    """Rank along the last axis, 1 = highest, ties share the lowest rank ("min")."""
    from scipy.stats import rankdata

    return rankdata(-medians, method="min", axis=-1)


def rank_intervals(per_image, *, by: str = "study", subject: str = "seed",
                   level: str = "snr", method: str = "method", value: str = "psnr",
                   exclude=("noiseless",), n_boot: int = 2000, confidence: float = 0.95,
                   seed: int = 0):
    """Percentile bootstrap intervals of each method's median score and mean rank.

    Parameters
    ----------
    per_image : pandas.DataFrame
        One row per (``by``, ``subject``, ``level``, ``method``) with the score ``value``
        (higher is better), e.g. the benchmark's per-image table.
    by, subject, level, method, value : str
        Column names: the groups ranked separately (studies), the resampling unit, the noise
        level, the method and the score.
    exclude : sequence of str
        Methods left out of the ranking (e.g. the noiseless floor).
    n_boot : int
        Bootstrap draws per group.
    confidence : float
        Coverage of the percentile interval.
    seed : int
        Seed of the draws (same seed, same intervals).

    Returns
    -------
    ranks : pandas.DataFrame
        ``by, method, mean_rank, rank_low, rank_high, n_subjects``: the mean rank over the
        levels on the data as they are and its interval.
    medians : pandas.DataFrame
        ``by, level, method, median, median_low, median_high, n_subjects``.

    Raises
    ------
    ValueError
        If a group has fewer than 2 subjects (nothing to resample).
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    tail = 100 * (1 - confidence) / 2
    rank_rows, median_rows = [], []
    for group, rows in per_image[~per_image[method].isin(exclude)].groupby(by, sort=False):
        cube, subjects, levels, methods = _cube(rows, subject, level, method, value)
        if len(subjects) < 2:
            raise ValueError(f"{by} {group}: {len(subjects)} subject; the bootstrap needs ≥ 2")
        draws = rng.integers(0, len(subjects), size=(n_boot, len(subjects)))
        medians = np.median(cube[draws], axis=1)  # (n_boot, levels, methods)
        mean_ranks = _ranks(medians).mean(axis=1)  # (n_boot, methods)
        point = np.median(cube, axis=0)
        point_rank = _ranks(point).mean(axis=0)
        low, high = np.percentile(mean_ranks, [tail, 100 - tail], axis=0)
        m_low, m_high = np.percentile(medians, [tail, 100 - tail], axis=0)
        for j, name in enumerate(methods):
            rank_rows.append({by: group, method: name, "mean_rank": point_rank[j],
                              "rank_low": low[j], "rank_high": high[j],
                              "n_subjects": len(subjects)})
            for i, lv in enumerate(levels):
                median_rows.append({by: group, level: lv, method: name,
                                    "median": point[i, j], "median_low": m_low[i, j],
                                    "median_high": m_high[i, j], "n_subjects": len(subjects)})
    return pd.DataFrame(rank_rows), pd.DataFrame(median_rows)
