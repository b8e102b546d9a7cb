"""The brain study's scores under other conventions, and what denoising does to the tubes.

The paper (Koppers et al. 2019) gives its pSNR (equation 1) and SSIM (equation 3) as means over
the brain-mask voxels but not the window, the data range or whether SSIM was 2D or 3D, and its
SSIM gains are far larger than ours. :data:`SSIM_CONVENTIONS` and :data:`PSNR_CONVENTIONS` are
the variants a 2019 paper could have used, all through scikit-image
(:func:`~nacode.evaluate.metrics.windowed_ssim`, :func:`~nacode.evaluate.metrics.region_psnr`);
:func:`conventions_table` sets each one's input value and relative improvements beside the
paper's Tables 2 and 3.

Every acquisition is calibrated to mM on its own four tubes before it is denoised, so a
denoiser that changes the tube voxels changes what a recalibration would read. The tube tables
(:func:`tube_rows`, :func:`tube_change_table`) compare each tube's ROI mean after denoising with
its mean in the acquisition. Images are in network units (mM /
:data:`~nacode.studies.brain_data.NORM_MM`) throughout; tube means and TSC are in mM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nacode.studies.brain_data import NORM_MM

#: ``L = 2`` mM: scikit-image's float default (before 0.19) applied to images in mM, which
#: makes SSIM's stabilising constants negligible. In network units that is 0.02.
L_2_MM = 2.0 / NORM_MM
#: The smallest tube concentration (mM) that the tube-change summary considers.
MIN_TUBE_MM = 25.0


@dataclass(frozen=True)
class Convention:
    """One way of computing SSIM or pSNR.

    Attributes
    ----------
    key : str
        Short identifier (the ``convention`` column of the per-volume scores).
    region : str
        ``"brain mask"`` (mean over the mask's voxels) or ``"whole FOV"``.
    window : str
        The SSIM window in words (``"—"`` for pSNR).
    dims : str
        ``"3D"`` or ``"2D slices"`` (axial slices, averaged).
    scale : str
        SSIM's data range ``L`` or pSNR's peak, in words.
    options : dict
        Keyword arguments of :func:`~nacode.evaluate.metrics.windowed_ssim` or
        :func:`~nacode.evaluate.metrics.region_psnr` (the mask is added for the brain mask).
    """

    key: str
    region: str
    window: str
    dims: str
    scale: str
    options: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The convention in words, e.g. ``whole FOV · uniform 7 · 3D · L = 2``."""
        parts = (self.region, self.window, self.dims, self.scale)
        return " · ".join(p for p in parts if p != "—")


_GAUSS = "Gaussian σ 1.5"
_UNIFORM = "uniform 7"
_REF = "range of reference"
SSIM_CONVENTIONS = (
    Convention("mask_gauss_3d", "brain mask", _GAUSS, "3D", _REF, {"gaussian": True}),
    Convention("mask_uniform_3d", "brain mask", _UNIFORM, "3D", _REF, {}),
    Convention("mask_gauss_2d", "brain mask", _GAUSS, "2D slices", _REF,
               {"gaussian": True, "slice_axis": 2}),
    Convention("mask_gauss_3d_L2mM", "brain mask", _GAUSS, "3D", "L = 2 mM",
               {"gaussian": True, "data_range": L_2_MM}),
    Convention("fov_uniform_3d", "whole FOV", _UNIFORM, "3D", _REF, {}),
    Convention("fov_uniform_3d_L2", "whole FOV", _UNIFORM, "3D", "L = 2 (network units)",
               {"data_range": 2.0}),
    Convention("fov_uniform_3d_L2mM", "whole FOV", _UNIFORM, "3D", "L = 2 mM",
               {"data_range": L_2_MM}),
    Convention("fov_gauss_3d", "whole FOV", _GAUSS, "3D", _REF, {"gaussian": True}),
    Convention("fov_uniform_2d", "whole FOV", _UNIFORM, "2D slices", _REF, {"slice_axis": 2}),
)
"""SSIM variants: the chapter's (first; equals :func:`~nacode.evaluate.metrics.masked_ssim`),
scikit-image's defaults (uniform 7-wide window, ``L`` given or its pre-0.19 float default 2),
Wang et al.'s Gaussian window, 3D or slice-wise, in the brain mask or over the whole FOV."""

PSNR_CONVENTIONS = (
    Convention("mask_range", "brain mask", "—", "3D", "peak = range of reference"),
    Convention("mask_max", "brain mask", "—", "3D", "peak = max of reference", {"peak": "max"}),
    Convention("fov_range", "whole FOV", "—", "3D", "peak = range of reference"),
    Convention("fov_max", "whole FOV", "—", "3D", "peak = max of reference", {"peak": "max"}),
    Convention("fov_peak1", "whole FOV", "—", "3D", "peak = 1 (100 mM)", {"peak": 1.0}),
    Convention("fov_range_2d", "whole FOV", "—", "2D slices", "peak = range of reference",
               {"slice_axis": 2}),
)
"""pSNR variants: the paper's equation 1 in the mask (first; equals
:func:`~nacode.evaluate.metrics.masked_psnr`), the peak as the maximum, over the whole FOV,
scikit-image's pre-0.19 float default peak 1, and slice-wise."""

_CONVENTIONS = {"ssim": SSIM_CONVENTIONS, "psnr": PSNR_CONVENTIONS}


def convention_rows(keys: dict, method: str, reference: np.ndarray, image: np.ndarray,
                    mask: np.ndarray) -> list[dict]:
    """Every SSIM and pSNR convention of one image, as rows of a long table.

    Parameters
    ----------
    keys : dict
        Columns copied into every row (e.g. ``fold, subject, acquisition``).
    method : str
    reference, image : ndarray, shape (X, Y, Z)
        The mean of three and the image scored, network units.
    mask : ndarray of bool, shape (X, Y, Z)
        The brain mask.

    Returns
    -------
    list of dict
        ``**keys, method, metric ("ssim" or "psnr"), convention (key), value``.
    """
    from nacode.evaluate.metrics import region_psnr, windowed_ssim

    functions = {"ssim": windowed_ssim, "psnr": region_psnr}
    rows = []
    for metric, conventions in _CONVENTIONS.items():
        for c in conventions:
            region = {"mask": mask} if c.region == "brain mask" else {}
            value = functions[metric](reference, image, **c.options, **region)
            rows.append({**keys, "method": method, "metric": metric, "convention": c.key,
                         "value": value})
    return rows


def _gains(scores, metric: str, convention: str):
    """Per-volume relative improvement (%) over the input, one column per method."""
    keys = ["fold", "subject", "acquisition"]
    part = scores[(scores.metric == metric) & (scores.convention == convention)]
    wide = part.pivot_table(index=keys, columns="method", values="value", sort=False)
    base = wide.pop("input")
    return 100.0 * (wide.sub(base, axis=0)).div(base, axis=0), base


def conventions_table(scores, metric: str, paper: dict):
    """Input value and mean relative improvement (%) per convention, beside the paper's.

    Parameters
    ----------
    scores : pandas.DataFrame
        Rows of :func:`convention_rows` over the test volumes.
    metric : {"ssim", "psnr"}
    paper : dict of str to tuple
        The paper's (mean, median, σ) per method (``PAPER_TABLE3`` or ``PAPER_TABLE2``).

    Returns
    -------
    pandas.DataFrame
        One row per convention: ``convention`` (in words), ``key``, ``input`` (mean over the
        test volumes: dimensionless SSIM or dB), ``<method> %`` per method (mean of the
        per-volume improvement; methods with fewer volumes are averaged over theirs),
        ``paper NLM %``, ``paper DAE %`` and ``distance (pp)``: the mean absolute difference
        between our NLM and DAE means and the paper's, in percentage points.
    """
    import pandas as pd

    rows = []
    for c in _CONVENTIONS[metric]:
        gains, base = _gains(scores, metric, c.key)
        row = {"convention": c.label, "key": c.key, "input": float(base.mean())}
        row.update({f"{m} %": float(gains[m].mean()) for m in gains.columns})
        row.update({f"paper {m} %": paper[m][0] for m in ("NLM", "DAE")})
        row["distance (pp)"] = float(np.mean([abs(row[f"{m} %"] - paper[m][0])
                                              for m in ("NLM", "DAE")]))
        rows.append(row)
    return pd.DataFrame(rows)


def closest_convention(table):
    """The row of :func:`conventions_table` nearest the paper (smallest ``distance (pp)``)."""
    return table.loc[table["distance (pp)"].idxmin()]


def tube_rows(keys: dict, method: str, before: np.ndarray, after: np.ndarray,
              concentrations, rois: list[np.ndarray]) -> list[dict]:
    """Each tube's ROI mean in ``after`` against ``before``, as rows of a long table.

    Parameters
    ----------
    keys : dict
        Columns copied into every row.
    method : str
    before, after : ndarray, shape (X, Y, Z)
        The calibrated acquisition and the same acquisition denoised, network units.
    concentrations : sequence of float
        The tubes' concentrations, mM, in the order of ``rois``.
    rois : list of ndarray of bool
        The calibration ROIs (:meth:`~nacode.studies.brain_data.BrainScan.tube_rois`).

    Returns
    -------
    list of dict
        ``**keys, method, tube_mM, before_mM, after_mM, change_pct`` (100 (after − before) /
        before).
    """
    from nacode.evaluate import tubes as shared

    rows = []
    for concentration, roi in zip(concentrations, rois, strict=True):
        mean_before = float(before[roi].mean()) * NORM_MM
        mean_after = float(after[roi].mean()) * NORM_MM
        rows.append({**keys, "method": method, "tube_mM": float(concentration),
                     "before_mM": mean_before, "after_mM": mean_after,
                     "change_pct": shared.change_pct(mean_before, mean_after)})
    return rows


def tube_change_table(tubes):
    """Tube means before and after per method and tube: median and IQR over the test volumes.

    Parameters
    ----------
    tubes : pandas.DataFrame
        Rows of :func:`tube_rows`.

    Returns
    -------
    pandas.DataFrame
        ``method, tube_mM, n, before_mM, after_mM`` (medians, mM) and the per-volume change's
        ``median_pct, q1_pct, q3_pct, iqr_pct, max_abs_pct`` (%)
        (:func:`nacode.evaluate.tubes.summarise`).
    """
    from nacode.evaluate import tubes as shared

    return shared.summarise(tubes, ["method"], carry=("before_mM", "after_mM"))


def _order(methods) -> dict:
    """Each method's place in the order of first appearance."""
    return {m: i for i, m in enumerate(dict.fromkeys(methods))}


def worst_tube_change(change, min_mm: float = MIN_TUBE_MM):
    """Per method, the tube ≥ ``min_mm`` with the largest absolute median change.

    Parameters
    ----------
    change : pandas.DataFrame
        From :func:`tube_change_table`.
    min_mm : float
        Smallest tube concentration considered, mM.

    Returns
    -------
    pandas.DataFrame, indexed by method
        ``tube_change_pct`` (that tube's signed median change, %), ``tube_mM`` (which tube) and
        ``worst_image_pct`` (the largest absolute change of any such tube in any test volume,
        %) (:func:`nacode.evaluate.tubes.worst`).
    """
    from nacode.evaluate import tubes as shared

    return shared.worst(change, ["method"], min_mm=min_mm).set_index("method")


def summary_table(scores, change, tsc):
    """The brain results per method: masked and whole-FOV scores, TSC error, tube change.

    Parameters
    ----------
    scores : pandas.DataFrame
        Rows of :func:`convention_rows`.
    change : pandas.DataFrame
        From :func:`tube_change_table`.
    tsc : pandas.DataFrame
        From :func:`~nacode.studies.brain.tsc_error_table`.

    Returns
    -------
    pandas.DataFrame
        One row per method: ``pSNR masked (dB)``, ``SSIM masked``, ``SSIM whole FOV``
        (scikit-image's 7³ uniform window, ``L`` the reference's range) — means over the test
        volumes, against the mean of three —, ``MAE <tissue> (mM)`` (TSC against the truth),
        ``tube Δ worst (%)`` (:func:`worst_tube_change`) and ``tube |Δ| max (%)``. Scores
        are missing for the reference and the noiseless acquisition, tube changes for the
        recalibrated images (their tubes sit on the fitted line by construction).
    """
    import pandas as pd

    picks = {("psnr", "mask_range"): "pSNR masked (dB)", ("ssim", "mask_gauss_3d"): "SSIM masked",
             ("ssim", "fov_uniform_3d"): "SSIM whole FOV"}
    table = pd.DataFrame({name: scores[(scores.metric == metric) & (scores.convention == key)]
                          .groupby("method", sort=False)["value"].mean()
                          for (metric, key), name in picks.items()})
    mae = tsc.pivot_table(index="method", columns="tissue", values="mae_mM", sort=False)
    table = table.join(mae.rename(columns=lambda t: f"MAE {t} (mM)"), how="outer")
    worst = worst_tube_change(change)
    table = table.join(worst[["tube_change_pct", "worst_image_pct"]].rename(
        columns={"tube_change_pct": "tube Δ worst (%)",
                 "worst_image_pct": "tube |Δ| max (%)"}), how="outer")
    order = _order([*scores.method, *tsc.method, *change.method])
    table = table.loc[sorted(table.index, key=order.get)]
    return table.rename_axis("method").reset_index()


def recalibrated(image: np.ndarray, rois: list[np.ndarray], concentrations) -> np.ndarray:
    """``image`` calibrated again on its own tubes (as if it had been denoised before the
    calibration), network units.

    Parameters
    ----------
    image : ndarray, shape (X, Y, Z)
        A denoised, already calibrated image, network units.
    rois, concentrations
        As for :func:`tube_rows`.
    """
    from nacode.recon.calibration import calibrate

    fit = calibrate(np.asarray(image, float) * NORM_MM, rois, concentrations)
    return (fit.to_mm(np.asarray(image, float) * NORM_MM) / NORM_MM).astype(np.float32)
