"""The MNI152 templates: shapes, probability maps and tissue volumes."""

from __future__ import annotations

import numpy as np
import pytest

from nacode.anatomy import MNI152, block_mean, load_mni152, mixed_voxel_fraction, tissue_volumes


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


def synthetic(boundary: int, shape=(8, 8, 8)) -> MNI152:
    """GM for x < boundary, WM beyond; mask everywhere; 1 mm voxels."""
    gm = np.zeros(shape, np.float32)
    gm[:boundary] = 1.0
    wm = 1.0 - gm
    zeros = np.zeros(shape, np.float32)
    return MNI152(t1=zeros, gm=gm, wm=wm, csf=zeros, mask=np.ones(shape, bool),
                  affine=np.eye(4), voxel_mm=(1.0, 1.0, 1.0))


def test_block_mean_known_values():
    volume = np.arange(4 * 4 * 2, dtype=float).reshape(4, 4, 2)
    coarse = block_mean(volume, 2)
    assert coarse.shape == (2, 2, 1)
    assert coarse[0, 0, 0] == pytest.approx(volume[:2, :2, :2].mean())
    assert block_mean(np.full((5, 5, 5), 3.0), 2).shape == (2, 2, 2)  # partial blocks dropped
    with pytest.raises(ValueError, match="positive integer"):
        block_mean(volume, 0)


def test_mixed_fraction_counts_blocks_straddling_a_boundary():
    # boundary on a block edge: every 4 mm voxel is pure
    assert mixed_voxel_fraction(synthetic(4), voxel_mm=4.0) == 0.0
    # boundary at x = 3: the first block column holds 3/4 GM + 1/4 WM -> mixed; half of all blocks
    assert mixed_voxel_fraction(synthetic(3), voxel_mm=4.0, purity=0.9) == 0.5
    # ... but pure enough at a 70 % purity threshold
    assert mixed_voxel_fraction(synthetic(3), voxel_mm=4.0, purity=0.7) == 0.0
    with pytest.raises(ValueError, match="integer multiple"):
        mixed_voxel_fraction(synthetic(3), voxel_mm=2.5)


def test_most_4mm_brain_voxels_mix_tissues(templates):
    assert 0.5 < mixed_voxel_fraction(templates, 4.0) < 1.0
