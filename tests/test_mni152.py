"""The MNI152 templates: shapes, probability maps and tissue volumes."""

from __future__ import annotations

import numpy as np
import pytest

from nacode.anatomy import load_mni152, tissue_volumes


@pytest.fixture(scope="module")
def templates():
    return load_mni152(2)


def test_grid_and_affine(templates):
    assert templates.shape == (99, 117, 95)
    assert templates.voxel_mm == (2.0, 2.0, 2.0)
    assert templates.voxel_ml == pytest.approx(0.008)
    for array in (templates.gm, templates.wm, templates.csf, templates.mask):
        assert array.shape == templates.shape
    # RAS+: voxel (0, 0, 0) maps to the most left-posterior-inferior corner
    assert np.allclose(np.diag(templates.affine)[:3], 2.0)


def test_probability_maps_are_a_partition_inside_the_mask(templates):
    for name in ("GM", "WM", "CSF"):
        tissue = templates.tissue(name)
        assert tissue.min() >= 0.0 and tissue.max() <= 1.0
    total = templates.gm + templates.wm + templates.csf
    inside = templates.mask
    # where GM + WM < 1 the CSF fills the rest exactly; where they exceed 1, CSF is 0
    assert np.all(total[inside] >= 1.0 - 1e-6)
    assert np.all(templates.csf[~inside] == 0.0)


def test_tissue_volumes_add_up_and_are_plausible(templates):
    volumes = tissue_volumes(templates).set_index("tissue")
    brain = volumes.loc["brain", "volume_ml"]
    parts = volumes.loc[["GM", "WM", "CSF"], "volume_ml"].sum()
    assert parts == pytest.approx(brain)
    # the mask's own volume, counted directly
    assert volumes.loc["brain", "fraction"] == pytest.approx(
        parts / (templates.mask.sum() * templates.voxel_ml))
    # adult-brain orders of magnitude (the MNI average is large): GM 500-1100 mL, WM 350-800 mL
    assert 500 < volumes.loc["GM", "volume_ml"] < 1100
    assert 350 < volumes.loc["WM", "volume_ml"] < 800
    # T1 contrast: WM brighter than GM brighter than CSF
    t1 = volumes["mean_t1"]
    assert t1["WM"] > t1["GM"] > t1["CSF"]


def test_resolution_is_validated():
    with pytest.raises(ValueError, match="resolution_mm must be one of"):
        load_mni152(3)


def test_unknown_tissue_is_rejected(templates):
    with pytest.raises(ValueError, match="unknown tissue"):
        templates.tissue("bone")
