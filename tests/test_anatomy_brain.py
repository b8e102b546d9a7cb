"""Virtual brains: reproducibility, mild but real deformation, tissues, tubes and the grid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from conftest import sha256, table_hash
from nacode.anatomy.brain import brain_subject
from nacode.anatomy.mni152 import load_mni152

SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def subjects():
    return {seed: brain_subject(seed) for seed in SEEDS}


@pytest.fixture(scope="module")
def template_volumes():
    """Voxel counts of the template's brain mask and hard labels (most probable tissue)."""
    templates = load_mni152(2)
    probabilities = np.stack([templates.gm, templates.wm, templates.csf])
    labels = np.argmax(probabilities, axis=0)[templates.mask]
    counts = {name: int((labels == i).sum()) for i, name in enumerate(("GM", "WM", "CSF"))}
    return {"brain": int(templates.mask.sum()), **counts}


def test_same_seed_is_bit_identical_and_seeds_differ(subjects):
    again = brain_subject(0)
    first = subjects[0]
    assert np.array_equal(again.labels, first.labels)
    assert np.array_equal(again.proton, first.proton)
    assert again.tissues == first.tissues
    assert again.tubes == first.tubes
    other = subjects[1]
    assert other.tissues != first.tissues
    assert other.extra["scaling"] != first.extra["scaling"]


def test_deformation_is_real_but_mild(subjects, template_volumes):
    # both brains live on the template grid, padded: crop the padding to compare them
    shape = load_mni152(2).shape
    crops = [s.labels[tuple(slice(lo, lo + n) for (lo, _), n in
                            zip(s.extra["padding"], shape, strict=True))]
             for s in (subjects[0], subjects[1])]
    brain = ((crops[0] > 0) & (crops[0] <= 3)) | ((crops[1] > 0) & (crops[1] <= 3))
    differ = (crops[0] != crops[1])[brain].mean()
    assert differ > 0.05
    for subject in subjects.values():
        for name in ("GM", "WM", "CSF"):
            count, template_count = int(subject.mask(name).sum()), template_volumes[name]
            assert 0.7 * template_count <= count <= 1.3 * template_count, (name, count)
        # the brain volume follows the drawn scaling
        ratio = subject.extra["brain_mask"].sum() / template_volumes["brain"]
        assert ratio == pytest.approx(np.prod(subject.extra["scaling"]), rel=0.03)
        assert all(0.92 <= s <= 1.08 for s in subject.extra["scaling"])
        assert all(abs(r) <= 4.0 for r in subject.extra["rotation_deg"])
        assert 2.0 <= subject.extra["max_displacement_mm"] <= 4.0


def test_subject_is_valid_with_sensible_tissues(subjects):
    means = {name: [] for name in ("GM", "WM", "CSF")}
    for subject in subjects.values():
        subject.validate()
        assert subject.kind == "brain"
        assert subject.voxel_mm == (2.0, 2.0, 2.0)
        assert subject.labels.dtype == np.int16 and subject.proton.dtype == np.float32
        assert 0.0 <= subject.proton.min() and subject.proton.max() <= 1.0
        for name in means:
            inside = subject.mask(name)
            value = subject.tissues[subject.label_of(name)].tsc
            # one tissue value per subject, times a texture of mean 1 over the tissue
            assert np.allclose(subject.tsc[inside], value * subject.tsc_texture[inside],
                               rtol=1e-6)
            assert subject.tsc[inside].mean() == pytest.approx(value, rel=1e-5)
            means[name].append(float(value))
    assert 30 <= np.mean(means["GM"]) <= 50
    assert 25 <= np.mean(means["WM"]) <= 40
    assert 120 <= np.mean(means["CSF"]) <= 160
    assert all(gm > wm for gm, wm in zip(means["GM"], means["WM"], strict=True))


def test_labels_exactly_fill_the_brain_mask(subjects):
    for subject in subjects.values():
        brain = subject.extra["brain_mask"]
        assert brain.dtype == bool and brain.shape == subject.shape
        assert np.array_equal(subject.mask("GM", "WM", "CSF"), brain)
        probabilities = subject.extra["probabilities"]
        assert set(probabilities) == {"GM", "WM", "CSF"}
        stacked = np.stack([probabilities[name] for name in ("GM", "WM", "CSF")])
        assert stacked.dtype == np.float32 and stacked.min() >= 0 and stacked.max() <= 1
        assert np.all(stacked[:, ~brain] == 0)
        # the label is the most probable tissue
        winner = np.argmax(stacked[:, brain], axis=0) + 1
        assert np.array_equal(subject.labels[brain], winner)


def test_tubes_beside_the_head_inside_the_grid(subjects):
    for subject in subjects.values():
        tubes = subject.tubes
        assert len(tubes) >= 4
        xs = [tube.centre_mm[0] for tube in tubes]
        assert min(xs) < 0 < max(xs)
        distance = ndimage.distance_transform_edt(~subject.extra["brain_mask"],
                                                  sampling=subject.voxel_mm)
        half_fov = np.array(subject.fov_mm) / 2
        length = subject.extra["tube_length_mm"]
        assert length >= 60
        for tube in tubes:
            inside = subject.labels == tube.label
            assert distance[inside].min() >= 6.0
            assert np.all(subject.tsc[inside] == tube.concentration)
            assert subject.tissues[tube.label].tsc == tube.concentration
            expected = np.pi * tube.radius_mm**2 * length / np.prod(subject.voxel_mm)
            assert inside.sum() == pytest.approx(expected, rel=0.15)  # not cut by the grid
            centre = np.abs(np.array(tube.centre_mm))
            extent = np.array([tube.radius_mm, tube.radius_mm, length / 2])
            assert np.all(centre + extent <= half_fov - 4.0)
            core = ndimage.binary_erosion(inside, iterations=2)  # 4 mm: past the ≤ 2 mm 1H shift
            assert np.allclose(subject.proton[core], subject.tissues[tube.label].proton)


def test_tube_centres_match_their_voxels(subjects):
    subject = subjects[2]
    for tube in subject.tubes:
        index = np.argwhere(subject.labels == tube.label).mean(axis=0)
        centre_mm = (index - np.array(subject.shape) // 2) * np.array(subject.voxel_mm)
        assert np.allclose(centre_mm, tube.centre_mm, atol=1.5)


def test_grid_is_one_fixed_cube_divisible_by_the_acquisition_block(subjects):
    templates = load_mni152(2)
    for subject in subjects.values():
        assert subject.shape == (120, 120, 120)  # 240 mm at 2 mm, for every subject
        assert subject.fov_mm == (240.0, 240.0, 240.0)
        affine = subject.extra["affine"]
        lows = np.array([lo for lo, _ in subject.extra["padding"]])
        assert np.allclose(affine[:3, :3], templates.affine[:3, :3])
        assert np.allclose(affine[:3, 3] + 2.0 * lows, templates.affine[:3, 3])
    coarse = brain_subject(0, acquisition_mm=8.0)
    assert all(n % 4 == 0 for n in coarse.shape)


@pytest.mark.parametrize("voxel_mm", [0, 3, 1.5, True])
def test_unsupported_voxel_size_is_refused(voxel_mm):
    with pytest.raises(ValueError, match=r"voxel_mm must be one of \(1, 2\)"):
        brain_subject(0, voxel_mm=voxel_mm)


def test_bad_acquisition_size_is_refused():
    with pytest.raises(ValueError, match="acquisition_mm must be a positive"):
        brain_subject(0, acquisition_mm=0.0)


#: sha256 of labels, proton and the tissue table of brain_subject(0) computed with the code
#: before texture existed (commit 26966df).
FLAT_HASHES = ("4d4530de21ec95c4cb35b1ac7591ce4cd79a7493931977af14a6a92532006d8c",
               "f9532cb21a52ecf483608af9f0b39252352e119c19bf2b04ada6007d3318faa3",
               "10db690022a1d87835189c6bfae19dc327f609d63c5dada8c1522f443428b3ba")


def test_texture_false_reproduces_the_label_constant_brain_and_texture_keeps_anatomy(subjects):
    flat = brain_subject(0, texture=False)
    assert (sha256(flat.labels), sha256(flat.proton), table_hash(flat)) == FLAT_HASHES
    assert flat.tsc_texture is None and flat.extra["misregistration_mm"] == (0.0, 0.0, 0.0)
    textured = subjects[0]
    assert np.array_equal(textured.labels, flat.labels) and textured.tissues == flat.tissues
    assert textured.tubes == flat.tubes


def test_brain_texture_has_the_tables_sd_and_leaves_the_tubes_flat(subjects):
    from nacode.anatomy.texture import TEXTURE

    for subject in subjects.values():
        texture = subject.tsc_texture
        assert texture.dtype == np.float32 and texture.shape == subject.shape
        for name in ("GM", "WM", "CSF"):
            values = texture[subject.mask(name)].astype(np.float64)
            assert values.mean() == pytest.approx(1.0, abs=1e-5), name
            assert values.std() == pytest.approx(TEXTURE[name][0], rel=0.3), name
        tubes = np.isin(subject.labels, [t.label for t in subject.tubes])
        assert np.all(texture[tubes] == 1.0) and np.all(texture[subject.labels == 0] == 1.0)


def test_brain_1h_is_the_template_translated_by_at_most_2_mm(subjects):
    from nacode.anatomy.texture import misregister

    flat = brain_subject(0, texture=False)
    shifts = np.array([s.extra["misregistration_mm"] for s in subjects.values()])
    assert np.all(np.linalg.norm(shifts, axis=1) <= 2.0) and shifts.std() > 0.1
    shift = subjects[0].extra["misregistration_mm"]
    assert np.array_equal(subjects[0].proton, misregister(flat.proton, shift, flat.voxel_mm))
    assert not np.array_equal(subjects[0].proton, flat.proton)
