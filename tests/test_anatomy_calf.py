"""Procedural calves: reproducibility, anatomy, tubes and population variability."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from conftest import sha256, table_hash
from nacode.anatomy.calf import BONES, MUSCLES, TUBE_GAP_MM, TUBE_RADIUS_MM, calf_subject
from nacode.anatomy.texture import misregister
from nacode.anatomy.tissues import LITERATURE, TUBE_CONCENTRATIONS

SEEDS = range(30)


@pytest.fixture(scope="module")
def population():
    return [calf_subject(seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def calf(population):
    return population[0]


def centroid_mm(subject, *names):
    """Centroid ``(y, x)`` in mm of the named tissues."""
    rows, cols = np.nonzero(subject.mask(*names))
    ny, nx = subject.shape
    return ((rows.mean() - ny // 2) * subject.voxel_mm[0],
            (cols.mean() - nx // 2) * subject.voxel_mm[1])


def body_of(subject):
    tubes = np.isin(subject.labels, [t.label for t in subject.tubes])
    return ndimage.binary_fill_holes((subject.labels > 0) & ~tubes)


def test_same_seed_is_bit_identical():
    a, b = calf_subject(7), calf_subject(7)
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.proton, b.proton)
    assert a.tissues == b.tissues
    assert a.tubes == b.tubes
    assert a.extra["leg_size_mm"] == b.extra["leg_size_mm"]


def test_different_seeds_give_different_subjects(population):
    a, b = population[0], population[1]
    assert not np.array_equal(a.labels, b.labels)
    assert a.tissues[a.label_of("muscle_anterior")] != b.tissues[b.label_of("muscle_anterior")]
    assert a.tubes != b.tubes


def test_grid_labels_and_tissue_table(calf):
    assert calf.kind == "calf" and calf.seed == 0
    assert calf.shape == (320, 320) and calf.labels.dtype == np.int16
    assert calf.voxel_mm == pytest.approx((0.5625, 0.5625))
    assert calf.fov_mm == pytest.approx((180.0, 180.0))
    assert calf.proton.dtype == np.float32
    calf.validate()
    assert set(np.unique(calf.labels)) <= set(calf.tissues)
    names = {t.name for t in calf.tissues.values()}
    expected = {"air", "skin", "fat", "vessel", *MUSCLES, *BONES}
    assert expected | {f"tube_{c:g}mM" for c in TUBE_CONCENTRATIONS} == names
    for name in names:  # every tissue is present on the grid
        assert calf.mask(name).any(), name


def test_smaller_grid_works():
    small = calf_subject(3, matrix=160)
    assert small.shape == (160, 160) and small.voxel_mm == pytest.approx((1.125, 1.125))
    assert small.mask(*MUSCLES).any()


@pytest.mark.parametrize("kwargs", [{"matrix": 0}, {"matrix": 100.5}, {"fov_mm": -1.0},
                                    {"fov_mm": float("nan")}, {"fov_mm": 100.0}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        calf_subject(0, **kwargs)


def test_tubes_inside_fov_clear_of_the_leg_and_at_their_concentration(population):
    for subject in population[:10]:
        assert [t.concentration for t in subject.tubes] == list(TUBE_CONCENTRATIONS)
        n = subject.shape[0]
        voxel = subject.voxel_mm[0]
        outside = ndimage.distance_transform_edt(~body_of(subject), sampling=subject.voxel_mm)
        centres = []
        for tube in subject.tubes:
            assert tube.radius_mm == TUBE_RADIUS_MM
            inside = subject.labels == tube.label
            rows, cols = np.nonzero(inside)
            assert inside.sum() * voxel**2 == pytest.approx(np.pi * TUBE_RADIUS_MM**2, rel=0.05)
            margin = int(TUBE_GAP_MM / voxel)
            assert rows.min() >= margin and rows.max() < n - margin
            assert cols.min() >= margin and cols.max() < n - margin
            assert outside[inside].min() >= TUBE_GAP_MM
            row, col = (round(c / voxel + n // 2) for c in tube.centre_mm)
            assert subject.labels[row, col] == tube.label
            assert subject.tsc[row, col] == pytest.approx(tube.concentration)
            centres.append(tube.centre_mm)
        gaps = [np.hypot(*np.subtract(p, q)) for i, p in enumerate(centres)
                for q in centres[i + 1:]]
        assert min(gaps) >= 2 * TUBE_RADIUS_MM + TUBE_GAP_MM


def test_compartments_are_single_regions_in_anatomical_places(population):
    for subject in population[:10]:
        assert len(MUSCLES) >= 3
        for name in MUSCLES:
            _, count = ndimage.label(subject.mask(name))
            assert count == 1, (subject.seed, name)
        medial = 1.0 if subject.extra["side"] == "right" else -1.0  # image x of medial
        anterior = centroid_mm(subject, "muscle_anterior")
        lateral = centroid_mm(subject, "muscle_lateral")
        deep = centroid_mm(subject, "muscle_deep_posterior")
        superficial = centroid_mm(subject, "muscle_superficial_posterior")
        tibia, fibula = centroid_mm(subject, "tibia_cortex"), centroid_mm(subject, "fibula_cortex")
        assert anterior[0] < deep[0] < superficial[0]  # rows grow posteriorly
        assert medial * (lateral[1] - anterior[1]) < 0  # lateral compartment lies laterally
        assert tibia[0] < fibula[0] and medial * (tibia[1] - fibula[1]) > 0
        # septa: the compartments never touch each other directly
        dilated = ndimage.binary_dilation(subject.mask("muscle_anterior"))
        assert not (dilated & subject.mask(*MUSCLES[1:])).any()


def test_compartment_tsc_shares_the_subject_muscle_value(population):
    for subject in population:
        values = [subject.tissues[subject.label_of(name)].tsc for name in MUSCLES]
        assert np.ptp(values) < 4.0  # offsets with SD 0.5 mM around one draw


def test_bones_have_cortex_around_marrow(population):
    for subject in population[:10]:
        areas = {}
        for bone in ("tibia", "fibula"):
            cortex, marrow = subject.mask(f"{bone}_cortex"), subject.mask(f"{bone}_marrow")
            assert ndimage.label(cortex)[1] == 1 and ndimage.label(marrow)[1] == 1
            # marrow is enclosed: its neighbours are marrow or cortex, two cortex voxels deep
            ring = ndimage.binary_dilation(marrow, iterations=2) & ~marrow
            assert cortex[ring].all()
            areas[bone] = cortex.sum() + marrow.sum()
        assert areas["tibia"] > 2 * areas["fibula"]
        assert 2.0 <= subject.extra["tibia"]["cortex_mm"] <= 5.0
        assert 2.0 <= subject.extra["fibula"]["cortex_mm"] <= 5.0


def test_vessels_are_small_discs_and_the_saphenous_vein_lies_in_fat(population):
    for subject in population[:10]:
        parts, count = ndimage.label(subject.mask("vessel"))
        assert count >= 4
        area = np.bincount(parts.ravel())[1:] * np.prod(subject.voxel_mm)
        diameter = 2 * np.sqrt(area / np.pi)
        assert diameter.min() >= 1.8 and diameter.max() <= 5.2
        names = {v["name"] for v in subject.extra["vessels"]}
        assert {"anterior_tibial", "posterior_tibial", "peroneal", "great_saphenous"} <= names
        vein = next(v for v in subject.extra["vessels"] if v["name"] == "great_saphenous")
        n, voxel = subject.shape[0], subject.voxel_mm[0]
        row, col = (round(c / voxel + n // 2) for c in vein["centre_mm"])
        disc = subject.labels == subject.labels[row, col]
        around = ndimage.binary_dilation(disc & (parts == parts[row, col])) & ~disc
        assert subject.labels[around].tolist() == [subject.label_of("fat")] * around.sum()


def test_skin_and_fat_layers(population):
    for subject in population[:10]:
        body = body_of(subject)
        outer = body & ~ndimage.binary_erosion(body, iterations=2)  # two outermost voxels
        assert subject.mask("skin")[outer].all()
        skin_near = ndimage.binary_dilation(subject.mask("skin"), iterations=2)
        assert not (skin_near & subject.mask(*MUSCLES)).any()  # fat lies between
        assert 1.5 <= subject.extra["skin_thickness_mm"] <= 2.5
        low, high = subject.extra["fat_thickness_range_mm"]
        assert 3.0 <= low <= subject.extra["fat_thickness_mm"] <= high <= 15.0


def test_proton_image_contrast_and_bias(calf):
    p = calf.proton
    fat, muscle = p[calf.mask("fat")].mean(), p[calf.mask(*MUSCLES)].mean()
    cortex = p[calf.mask("tibia_cortex")].mean()
    assert fat > 2 * muscle > 2 * cortex
    bias = calf.extra["bias"]
    assert bias.shape == calf.shape and bias.dtype == np.float32
    assert 0.9 <= bias.min() < bias.max() <= 1.1
    expected = np.zeros(calf.shape, dtype=np.float32)
    for label, tissue in calf.tissues.items():
        expected[calf.labels == label] = tissue.proton
    flat = calf_subject(0, texture=False)
    assert np.array_equal(flat.extra["bias"], bias)
    assert np.allclose(flat.proton, expected * bias, rtol=1e-6, atol=0)
    # textured: the 1H image's own texture, then the misregistration, then the bias
    shift = calf.extra["misregistration_mm"]
    moved = misregister(expected.astype(np.float64) * calf.extra["proton_texture"], shift,
                        calf.voxel_mm)
    assert np.allclose(p, moved * bias, rtol=1e-6, atol=1e-7)


#: sha256 of labels, proton and the tissue table of calf_subject(seed) computed with the code
#: before texture existed (commit 26966df).
FLAT_HASHES = {
    0: ("9ac35dcff85c0cc0b2dc23bb096159457b40d6715694d662ebaf6a8c1ce57c62",
        "327c8b4600f04f0c1775aa5a63479d42648cb4956e33fc864dcbd5674ec4897e",
        "42d147a5c2ea6bbda9bedbe635557d5dc91b9eb399db8e50ab5cb28fda117b54"),
    7: ("41b1efd41e6b55195f03e24f1663fd6be69d111244cc30abbe14548ff8e7cb68",
        "ba56761dfc4f8b6bf808c9159e006e05bdccd3aac15e4f8eed27c65ffbc4304d",
        "2bd2d9561cfc8b59babac2cce07e2f13817668c2a49618e70db0f0540d8dd040"),
}


@pytest.mark.parametrize("seed", sorted(FLAT_HASHES))
def test_texture_false_reproduces_the_label_constant_calf(seed, population):
    flat = calf_subject(seed, texture=False)
    assert (sha256(flat.labels), sha256(flat.proton), table_hash(flat)) == FLAT_HASHES[seed]
    assert flat.tsc_texture is None and flat.extra["misregistration_mm"] == (0.0, 0.0)
    textured = population[seed]
    assert np.array_equal(textured.labels, flat.labels) and textured.tissues == flat.tissues
    assert textured.tubes == flat.tubes


def test_calf_texture_mean_one_per_tissue_the_tables_sd_and_flat_tubes(population):
    from nacode.anatomy.calf import BONE_TYPES
    from nacode.anatomy.texture import TEXTURE, texture_type

    pooled = {"muscle": [], "fat": [], "skin": []}
    for subject in population[:10]:
        texture = subject.tsc_texture
        assert texture.dtype == np.float32 and texture.min() > 0
        for label, tissue in subject.tissues.items():
            values = texture[subject.labels == label].astype(np.float64)
            if tissue.name == "air" or tissue.name.startswith("tube") or not values.size:
                assert np.all(values == 1.0), tissue.name
                continue
            assert values.mean() == pytest.approx(1.0, abs=1e-5), tissue.name
            kind = texture_type(BONE_TYPES.get(tissue.name, tissue.name))
            if kind in pooled:
                pooled[kind].append(values)
        # the four compartments share muscle's field: the texture is continuous across them
        a = subject.mask("muscle_anterior")
        assert subject.tsc[a].mean() == pytest.approx(
            subject.tissues[subject.label_of("muscle_anterior")].tsc, rel=1e-5)
    for kind, values in pooled.items():
        assert np.concatenate(values).std() == pytest.approx(TEXTURE[kind][0], rel=0.3), kind


def test_calf_1h_texture_is_its_own_and_the_shift_is_at_most_2_mm(population):
    shifts = np.array([s.extra["misregistration_mm"] for s in population])
    magnitude = np.hypot(*shifts.T)
    assert magnitude.max() <= 2.0 and magnitude.std() > 0.2
    for subject in population[:5]:
        muscle = subject.mask(*MUSCLES)
        r = np.corrcoef(subject.tsc_texture[muscle], subject.extra["proton_texture"][muscle])
        assert abs(r[0, 1]) < 0.3  # independent fields, not the sodium texture again


def test_population_matches_the_literature_and_varies(population):
    muscle = [np.mean([s.tissues[s.label_of(n)].tsc for n in MUSCLES]) for s in population]
    skin = [s.tissues[s.label_of("skin")].tsc for s in population]
    assert np.mean(muscle) == pytest.approx(LITERATURE["muscle"].tsc, abs=1.5)
    assert np.mean(skin) == pytest.approx(LITERATURE["skin"].tsc, abs=2.0)
    assert np.std(muscle) > 1.0
    ap = np.array([s.extra["leg_size_mm"][0] for s in population])
    lr = np.array([s.extra["leg_size_mm"][1] for s in population])
    fat = np.array([s.extra["fat_thickness_mm"] for s in population])
    assert 94.0 <= lr.min() and lr.max() <= 136.0 and lr.std() > 5.0
    assert 84.0 <= ap.min() and ap.max() <= 126.0 and ap.std() > 4.0
    assert fat.std() > 1.0
    assert {s.extra["side"] for s in population} == {"left", "right"}
