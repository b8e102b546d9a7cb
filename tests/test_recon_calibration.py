"""TSC calibration on synthetic images (the calf-subject checks live with the anatomy)."""

from __future__ import annotations

import numpy as np
import pytest

from nacode.anatomy.subject import Tube
from nacode.recon import calibration


def tube_image(slope=2.0, intercept=5.0, matrix=80, fov=180.0):
    tubes = tuple(Tube(i + 1, c, (60.0 * np.cos(a), 60.0 * np.sin(a)), 9.0) for i, (c, a) in
                  enumerate(zip((10, 25, 50, 75, 100), np.linspace(0, 5, 5), strict=True)))
    rois = calibration.tube_rois(tubes, (matrix, matrix), fov, margin=0.0)
    image = np.full((matrix, matrix), intercept)
    for roi, tube in zip(rois, tubes, strict=True):
        image[roi] = slope * tube.concentration + intercept
    return image, tubes


def test_calibration_recovers_a_known_line():
    image, tubes = tube_image()
    rois = calibration.tube_rois(tubes, image.shape, 180.0, margin=1.0)
    cal = calibration.calibrate(image, rois, [t.concentration for t in tubes])
    assert cal.slope == pytest.approx(2.0) and cal.intercept == pytest.approx(5.0)
    assert cal.r2 == pytest.approx(1.0)
    assert np.allclose(cal.to_mm(image)[rois[2]], 50.0)


def test_eroded_rois_are_inside_the_tubes():
    _, tubes = tube_image()
    full = calibration.tube_rois(tubes, (80, 80), 180.0, margin=0.0)
    eroded = calibration.tube_rois(tubes, (80, 80), 180.0, margin=1.0)
    for a, b in zip(full, eroded, strict=True):
        assert b.sum() < a.sum() and not (b & ~a).any()
    with pytest.raises(ValueError, match="too small"):
        calibration.tube_rois(tubes, (80, 80), 180.0, margin=10.0)


def test_bad_inputs_say_what_was_expected():
    image, tubes = tube_image()
    rois = calibration.tube_rois(tubes, image.shape, 180.0)
    bad = image.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        calibration.calibrate(bad, rois, [10, 25, 50, 75, 100])
    with pytest.raises(ValueError, match="magnitude"):
        calibration.calibrate(image + 0j, rois, [10, 25, 50, 75, 100])
    with pytest.raises(ValueError, match="one ROI each"):
        calibration.calibrate(image, rois, [10, 25])


def test_roi_stats():
    values = np.arange(100.0).reshape(10, 10)
    table = calibration.roi_stats(values, {"all": np.ones((10, 10), bool)})
    row = table.iloc[0]
    assert row["median"] == pytest.approx(49.5) and row["n"] == 100
    assert row["iqr"] == pytest.approx(np.percentile(values, 75) - np.percentile(values, 25))
    with pytest.raises(ValueError, match="empty"):
        calibration.roi_stats(values, {"none": np.zeros((10, 10), bool)})
