"""``nacode tsc``: tissue sodium quantification of a user's own image, and the tube report.

:func:`run` reads a magnitude sodium image (2D or 3D; ``.npy``, NIfTI, DICOM) with
:func:`nacode.io.images.read_images`, finds its calibration tubes — a label image given by
the user (tube ``k`` holds the ``k``-th concentration of ``--mM``) or
:func:`nacode.recon.tube_detect.detect_tubes` — fits signal = slope · concentration +
intercept on the tube means (:func:`nacode.recon.calibration.calibrate`) and writes, in the
input's format and layout:

- ``OUT``: the aTSC map in mM, with the fit in its provenance;
- ``<OUT stem>_tubes<ext>``: the tube ROIs it used (labels as above), to inspect or edit and
  give back as ``--tubes``;
- ``<OUT stem>.csv``: one row per tube (:data:`TUBE_COLUMNS`) and, with ``--roi``, one row per
  ROI (:data:`ROI_COLUMNS`, by :func:`nacode.recon.calibration.roi_stats`).

Everything is computed before the first write; a refusal is one ``ValueError`` line naming
the file and the fix, and a failed write removes what was already written.
:func:`tube_report` is what ``nacode denoise`` prints: each tube's mean before and after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nacode.io.images import to_stack, to_stored

#: The calf paper's tubes, mM.
DEFAULT_MM = (10.0, 25.0, 50.0, 75.0, 100.0)
TUBE_COLUMNS = ("kind", "name", "label", "n_voxels", "concentration_mM", "mean_signal",
                "sd_signal", "fitted_mM", "error_mM")
ROI_COLUMNS = ("median_mM", "iqr_mM", "q1_mM", "q3_mM", "mean_mM", "sd_mM")
#: Below this R² the fit is reported with a warning (a tube ROI may be off its tube).
MIN_R2 = 0.99
#: ``nacode denoise`` warns for a tube whose mean moved by more than this, %.
MAX_CHANGE_PCT = 1.0


def parse_mm(text: str) -> tuple[float, ...]:
    """``"10,25,50"`` → ``(10.0, 25.0, 50.0)``: ≥ 2 distinct finite concentrations ≥ 0 mM."""
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"--mM {text!r}: give comma-separated concentrations in mM, e.g. "
                         "10,25,50,75,100") from None
    if len(values) < 2 or len(set(values)) != len(values):
        raise ValueError(f"--mM {text!r}: need at least 2 distinct concentrations to fit a line")
    if not all(np.isfinite(values)) or min(values) < 0:
        raise ValueError(f"--mM {text!r}: concentrations must be finite and ≥ 0 mM")
    return values


def read_labels(path: str | Path, layout, option: str) -> np.ndarray:
    """A label image (``.npy``, NIfTI or DICOM) of the image's shape, as int32 stored-shape.

    Refused in one line: unreadable, another shape (singleton axes aside), or values that are
    not whole numbers ≥ 0.
    """
    from nacode.io.images import read_images

    stack, own = read_images(path)
    values = to_stored(stack, own)
    squeeze = [n for n in values.shape if n > 1]
    if squeeze != [n for n in layout.shape if n > 1]:
        raise ValueError(f"{path}: {option} has shape {values.shape}, the image "
                         f"{layout.shape}; give a label image of the image's shape")
    if np.any(values < 0) or np.any(values != np.round(values)):
        raise ValueError(f"{path}: {option} is not a label image (whole numbers ≥ 0: 0 outside, "
                         "1, 2, … inside)")
    return values.reshape(layout.shape).astype(np.int32)


def tube_rois(labels: np.ndarray, n: int, path, text: str) -> list[np.ndarray]:
    """Tube ROIs ``labels == k`` for k = 1..n; refuses other labels or an empty one."""
    found = sorted(int(v) for v in np.unique(labels) if v > 0)
    if not set(found) <= set(range(1, n + 1)):
        raise ValueError(f"{path}: --tubes has labels {found[0]}..{found[-1]} but --mM {text} "
                         f"has {n} concentrations; label the tubes 1..{n} in the order of --mM")
    missing = [k for k in range(1, n + 1) if k not in found]
    if missing:
        raise ValueError(f"{path}: --tubes label {missing[0]} is empty; each of 1..{n} (one "
                         "per --mM concentration) needs voxels")
    return [labels == k for k in range(1, n + 1)]


def tube_table(image: np.ndarray, rois: list[np.ndarray], calibration):
    """One row per tube: :data:`TUBE_COLUMNS` (signal in image units, mM otherwise)."""
    import pandas as pd

    rows = []
    for k, (roi, c) in enumerate(zip(rois, calibration.concentrations, strict=True), start=1):
        values = image[roi]
        mean = float(values.mean())
        fitted = float(calibration.to_mm(mean))
        rows.append({"kind": "tube", "name": f"tube{k}", "label": k, "n_voxels": values.size,
                     "concentration_mM": float(c), "mean_signal": mean,
                     "sd_signal": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                     "fitted_mM": fitted, "error_mM": fitted - float(c)})
    return pd.DataFrame(rows, columns=list(TUBE_COLUMNS))


def roi_table(atsc: np.ndarray, labels: np.ndarray, names, path):
    """One row per ROI label (in increasing order): :data:`ROI_COLUMNS` in mM."""
    import pandas as pd

    from nacode.recon.calibration import roi_stats

    values = sorted(int(v) for v in np.unique(labels) if v > 0)
    if not values:
        raise ValueError(f"{path}: --roi holds no ROI (all zero); label ROIs 1, 2, …")
    names = list(names) if names else [f"roi{v}" for v in values]
    if len(names) != len(values):
        raise ValueError(f"{path}: --roi has {len(values)} labels ({values}) but --roi-names "
                         f"gives {len(names)} names; give one name per label")
    stats = roi_stats(atsc, {name: labels == v for name, v in zip(names, values, strict=True)})
    return pd.DataFrame({"kind": "roi", "name": stats.roi, "label": values, "n_voxels": stats.n,
                         "median_mM": stats["median"], "iqr_mM": stats.iqr, "q1_mM": stats.q1,
                         "q3_mM": stats.q3, "mean_mM": stats["mean"], "sd_mM": stats.sd})


def companion(out: Path, tag: str, ext: str | None = None) -> Path:
    """``<out stem><tag><ext>`` beside ``out`` (``ext`` default: ``out``'s own suffix)."""
    name = out.name
    own = next((s for s in (".nii.gz", ".nii", ".npy", ".dcm", ".ima")
                if name.lower().endswith(s)), "")
    stem = name[:len(name) - len(own)] if own else name
    return out.with_name(f"{stem}{tag}{own if ext is None else ext}")


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    path.unlink(missing_ok=True)
    Path(f"{path}.json").unlink(missing_ok=True)


def run(image_path, out_path, *, tubes: str = "auto", mm: str = "10,25,50,75,100",
        roi=None, roi_names: str | None = None, margin: int = 1,
        slice_axis: int | None = None) -> dict:
    """Calibrate an image on its tubes and write the aTSC map, the tube ROIs and the table.

    Parameters
    ----------
    image_path, out_path : path-like
        Magnitude sodium image in; the aTSC map (mM) out, in the input's format.
    tubes : str
        ``"auto"`` (:func:`~nacode.recon.tube_detect.detect_tubes`, ``margin`` voxels inside
        each wall) or a label image path: tube ``k`` holds the ``k``-th value of ``mm``.
    mm : str
        Comma-separated tube concentrations, mM.
    roi : path-like, optional
        A label image of ROIs (1, 2, …) whose aTSC statistics are tabulated.
    roi_names : str, optional
        Comma-separated names of the ROI labels in increasing order (default ``roi<label>``).
    slice_axis : int, optional
        As for :func:`nacode.io.images.read_images`.

    Returns
    -------
    dict
        ``calibration`` (:class:`~nacode.recon.calibration.Calibration`), ``table``
        (pandas.DataFrame, the CSV), ``tubes`` (``"auto"`` or the mask path), ``outputs``
        (aTSC, tubes, csv paths), ``layout`` and ``warnings`` (lines).
    """
    from nacode.io.images import read_images, write_images
    from nacode.recon.calibration import calibrate
    from nacode.recon.tube_detect import TubeDetectionError, detect_tubes
    from nacode.results import atomic_write, check_output

    image_path, out_path = Path(image_path), Path(out_path)
    concentrations = parse_mm(mm)
    n = len(concentrations)
    names = [s.strip() for s in roi_names.split(",")] if roi_names else None
    if names is not None and roi is None:
        raise ValueError("--roi-names needs --roi LABELS")
    outputs = [out_path, companion(out_path, "_tubes"), companion(out_path, "", ".csv")]
    for out in outputs:
        check_output(image_path, out, offer_force=False)
    stack, layout = read_images(image_path, slice_axis=slice_axis)
    image = to_stored(stack, layout)
    if tubes == "auto":
        try:
            found = detect_tubes(image, n, margin=margin)
        except TubeDetectionError as exc:
            raise ValueError(f"{image_path}: tube detection {exc}; give --tubes MASK (a label "
                             "image: tube k holds the k-th value of --mM)") from None
        labels = np.zeros(image.shape, np.int32)  # k-th lowest signal → k-th lowest mM
        for k, index in enumerate(np.argsort(concentrations, kind="stable"), start=1):
            labels[found == k] = index + 1
        source = "auto"
    else:
        labels, source = read_labels(tubes, layout, "--tubes"), str(tubes)
    rois = tube_rois(labels, n, tubes, mm)
    try:
        calibration = calibrate(image, rois, concentrations)
    except ValueError as exc:
        raise ValueError(f"{image_path}: {exc}") from None
    atsc = calibration.to_mm(image)
    table = tube_table(image, rois, calibration)
    if roi is not None:
        import pandas as pd

        table = pd.concat([table, roi_table(atsc, read_labels(roi, layout, "--roi"), names,
                                            roi)], ignore_index=True)
    warnings = []
    if calibration.r2 < MIN_R2:
        warnings.append(f"warning: R² = {calibration.r2:.4f} < {MIN_R2}: a tube ROI may be off "
                        f"its tube; inspect {outputs[1]}" + (" or give --tubes MASK"
                                                            if source == "auto" else ""))
    record = {"method": "tsc", "input": str(image_path), "units": "mM",
              "slope": calibration.slope, "intercept": calibration.intercept,
              "r2": calibration.r2, "concentrations_mM": list(concentrations),
              "tubes": source, "margin_voxels": margin if source == "auto" else None}
    written: list[Path] = []
    try:
        written.append(write_images(out_path, to_stack(atsc, layout), layout, record))
        written.append(write_images(outputs[1], to_stack(labels, layout), layout, {
            **record, "method": "tsc tube ROIs", "units": "label k = k-th --mM value"}))
        with atomic_write(outputs[2], "w", encoding="utf-8", newline="") as handle:
            table.to_csv(handle, index=False, float_format="%.6g")
        written.append(outputs[2])
    except BaseException:
        for path in written:
            _remove(path)
        raise
    return {"calibration": calibration, "table": table, "tubes": source, "layout": layout,
            "outputs": [str(p) for p in written], "warnings": warnings}


def summary(result: dict) -> list[str]:
    """The lines ``nacode tsc`` prints: the fit, the table and the files written."""
    fit, table = result["calibration"], result["table"]
    lines = [f"calibration on {len(fit.concentrations)} tubes ({result['tubes']}): slope "
             f"{fit.slope:.6g} per mM, intercept {fit.intercept:.6g}, R² = {fit.r2:.4f}"]
    for kind, columns in (("tube", TUBE_COLUMNS[1:]), ("roi", ("name", "label", "n_voxels",
                                                                 *ROI_COLUMNS))):
        part = table[table.kind == kind]
        if len(part):
            lines.append(part[list(columns)].to_string(
                index=False, float_format=lambda v: f"{v:.4g}"))
    return [*lines, *[f"written: {p}" for p in result["outputs"]]]


@dataclass
class TubeReport:
    """What a denoiser did to the calibration tubes of one file.

    Attributes
    ----------
    source : str
        ``"auto"``, the mask path, or ``"none"``.
    rows : list of dict
        Per tube: ``label``, ``n_voxels``, ``before``, ``after`` (mean signal, image units)
        and ``change_pct`` = 100 (after / before − 1).
    skipped : str
        Why there is no report (empty when there is one or it was not asked for).
    """

    source: str
    rows: list = field(default_factory=list)
    skipped: str = ""

    def lines(self) -> tuple[list[str], list[str]]:
        """(stdout lines, stderr lines): one line per tube, a warning per tube beyond
        :data:`MAX_CHANGE_PCT`, or the reason the report was skipped."""
        if self.skipped:
            return [], [f"tube report skipped: {self.skipped}; give --tubes MASK"]
        out = [f"tube {r['label']}: mean {r['before']:.6g} before, {r['after']:.6g} after "
               f"({r['change_pct']:+.2f} %)" for r in self.rows]
        err = [f"warning: tube {r['label']} changed by {r['change_pct']:+.1f} % "
               f"(> {MAX_CHANGE_PCT:g} %)" for r in self.rows
               if abs(r["change_pct"]) > MAX_CHANGE_PCT]
        return out, err

    def record(self) -> dict:
        """For the provenance sidecar (nothing when no report was asked for)."""
        if self.source == "none":
            return {}
        return {"tube_report": {"tubes": self.source, "rows": self.rows,
                                **({"skipped": self.skipped} if self.skipped else {})}}


def tube_changes(before: np.ndarray, after: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Each labelled tube's mean before and after, and its change in percent.

    Parameters
    ----------
    before, after : ndarray
        Images of one shape (any units).
    labels : ndarray of int, same shape
        0 outside the tubes, 1, 2, … inside.

    Returns
    -------
    list of dict
        ``label, n_voxels, before, after, change_pct`` per label in increasing order, with
        ``change_pct = 100 (after / before − 1)`` (NaN for a tube whose mean is 0).
    """
    rows = []
    for k in sorted(int(v) for v in np.unique(labels) if v > 0):
        roi = labels == k
        b, a = float(np.mean(before[roi])), float(np.mean(after[roi]))
        rows.append({"label": k, "n_voxels": int(roi.sum()), "before": b, "after": a,
                     "change_pct": 100.0 * (a / b - 1.0) if b != 0 else float("nan")})
    return rows


def tube_report(before: np.ndarray, after: np.ndarray, layout, tubes: str | None = "auto"
                ) -> TubeReport:
    """The tube report of a denoised ``(n, H, W)`` stack against its input.

    ``tubes`` is ``"auto"`` (detected on the input, every tube found), a label image of the
    stored image's shape, or ``"none"``/None. A detection that finds nothing usable gives a
    report with ``skipped`` set; a bad mask raises ``ValueError``.
    """
    from nacode.recon.tube_detect import TubeDetectionError, detect_tubes

    if tubes in (None, "none"):
        return TubeReport("none")
    stored_before, stored_after = to_stored(before, layout), to_stored(after, layout)
    if tubes == "auto":
        try:
            labels = detect_tubes(stored_before, None)
        except (TubeDetectionError, ValueError) as exc:
            return TubeReport("auto", skipped=f"tube detection {exc} on the input")
    else:
        labels = read_labels(tubes, layout, "--tubes")
        if not labels.any():
            raise ValueError(f"{tubes}: --tubes holds no tube (all zero); label tubes 1, 2, …")
    return TubeReport(str(tubes), tube_changes(stored_before, stored_after, labels))
