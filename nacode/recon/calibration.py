"""Tissue sodium quantification: tube ROIs, linear calibration, aTSC maps, ROI statistics.

As in the calf paper, a straight line is fitted to the mean signal of ROIs drawn in the
centre of the reference tubes against their known concentrations; the apparent TSC (aTSC)
map is the image mapped through that line. ROIs stay away from edges: tube ROIs are discs
shrunk by ``margin`` acquisition voxels, tissue ROIs keep only acquisition voxels that the
tissue fills (fine-grid fraction ≥ ``purity``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nacode.anatomy.subject import Subject, Tube


@dataclass(frozen=True)
class Calibration:
    """Signal = slope · concentration + intercept, fitted on the tubes.

    Attributes
    ----------
    slope : float
        Signal units per mM.
    intercept : float
        Signal at 0 mM.
    r2 : float
        Coefficient of determination of the fit.
    concentrations, signals : ndarray
        The tubes' known concentrations (mM) and measured mean ROI signals.
    """

    slope: float
    intercept: float
    r2: float
    concentrations: np.ndarray
    signals: np.ndarray

    def to_mm(self, image: np.ndarray) -> np.ndarray:
        """Apply the calibration: aTSC map in mM."""
        return (np.asarray(image, dtype=np.float64) - self.intercept) / self.slope


def tube_rois(tubes: tuple[Tube, ...], matrix: tuple[int, int], fov_mm: float, *,
              margin: float = 1.0) -> list[np.ndarray]:
    """Disc ROIs in the centre of each 2D tube on the acquisition matrix.

    Parameters
    ----------
    tubes : tuple of Tube
        Tubes with ``centre_mm = (y, x)`` relative to the grid centre.
    matrix : tuple of int
        Acquisition matrix ``(Ny, Nx)``.
    fov_mm : float
        Field of view (square), mm.
    margin : float
        Erosion from the tube wall, in acquisition voxels.

    Returns
    -------
    list of ndarray of bool, each ``matrix``
    """
    voxel = fov_mm / matrix[0]
    # voxel j sits at (j − N/2) · voxel: the origin of the centred FFT/NUFFT is index N/2
    y, x = np.meshgrid((np.arange(matrix[0]) - matrix[0] // 2) * voxel,
                       (np.arange(matrix[1]) - matrix[1] // 2) * voxel, indexing="ij")
    rois = []
    for tube in tubes:
        radius = tube.radius_mm - margin * voxel
        if radius <= 0:
            raise ValueError(f"tube of {tube.radius_mm} mm radius is too small for a "
                             f"{margin}-voxel margin at {voxel:.2f} mm voxels")
        roi = (y - tube.centre_mm[0]) ** 2 + (x - tube.centre_mm[1]) ** 2 <= radius**2
        if not roi.any():
            raise ValueError(f"tube at {tube.centre_mm} mm has an empty ROI")
        rois.append(roi)
    return rois


def calibrate(image: np.ndarray, rois: list[np.ndarray], concentrations) -> Calibration:
    """Least-squares line through (concentration, mean ROI signal) of the tubes."""
    image = np.asarray(image)
    if not np.all(np.isfinite(image)):
        raise ValueError("image contains NaN or infinity")
    if np.iscomplexobj(image):
        raise ValueError("calibrate a magnitude (real) image, not a complex one")
    concentrations = np.asarray(concentrations, dtype=float)
    if len(rois) != concentrations.size or concentrations.size < 2:
        raise ValueError(f"need ≥ 2 tubes with one ROI each, got {len(rois)} ROIs and "
                         f"{concentrations.size} concentrations")
    signals = np.array([image[roi].mean() for roi in rois])
    slope, intercept = np.polyfit(concentrations, signals, 1)
    residual = signals - (slope * concentrations + intercept)
    total = ((signals - signals.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else 0.0
    if slope <= 0:
        raise ValueError("calibration slope is not positive: are the tube ROIs on the tubes?")
    return Calibration(float(slope), float(intercept), float(r2), concentrations, signals)


def calibrate_subject(image: np.ndarray, subject: Subject, *, margin: float = 1.0
                      ) -> Calibration:
    """Calibrate a 2D image of ``subject`` on its tubes."""
    if subject.ndim != 2:
        raise ValueError("calibrate_subject handles 2D subjects; use tube_rois for others")
    rois = tube_rois(subject.tubes, image.shape, subject.fov_mm[0], margin=margin)
    return calibrate(image, rois, [t.concentration for t in subject.tubes])


def tissue_roi(subject: Subject, names, matrix: tuple[int, ...], *, purity: float = 0.9
               ) -> np.ndarray:
    """Acquisition voxels filled (≥ ``purity``) by the tissues ``names`` on the fine grid."""
    from nacode.physics.acquire import downsample

    names = (names,) if isinstance(names, str) else tuple(names)
    fraction = downsample(subject.mask(*names).astype(float), matrix)
    return fraction >= purity


def roi_stats(atsc: np.ndarray, rois: dict[str, np.ndarray]):
    """Median, IQR, mean, SD and voxel count of an aTSC map in each named ROI.

    Returns
    -------
    pandas.DataFrame
        One row per ROI: ``roi, n, median, iqr, q1, q3, mean, sd`` (mM).
    """
    import pandas as pd

    rows = []
    for name, roi in rois.items():
        values = atsc[roi]
        if values.size == 0:
            raise ValueError(f"ROI {name!r} is empty")
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        rows.append({"roi": name, "n": int(values.size), "median": median, "iqr": q3 - q1,
                     "q1": q1, "q3": q3, "mean": values.mean(), "sd": values.std(ddof=1)
                     if values.size > 1 else 0.0})
    return pd.DataFrame(rows)
