"""Procedural breasts: reproducibility, anatomy, tumours (visible and sodium-only) and tubes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nacode.anatomy.breast import (
    LESION_PROTON,
    TUBE_GAP_MM,
    TUBE_RADIUS_MM,
    breast_subject,
)
from nacode.anatomy.tissues import LITERATURE, TUBE_CONCENTRATIONS

TISSUES = {"air", "skin", "fat", "fibroglandular", "muscle", "heart", "cortical_bone", "marrow"}


@pytest.fixture(scope="module")
def healthy():
    return breast_subject(0)


@pytest.fixture(scope="module")
def with_lesions():
    return breast_subject(0, n_tumours=3, sodium_only=True)


@pytest.fixture(scope="module")
def population():
    return [breast_subject(seed, n_tumours=1) for seed in range(20)]


def body_of(subject):
    tubes = np.isin(subject.labels, [t.label for t in subject.tubes])
    return ndimage.binary_fill_holes((subject.labels > 0) & ~tubes)


def centroid_row(subject, name):
    return np.nonzero(subject.mask(name))[0].mean()


def index_of(subject, centre_mm):
    n, voxel = subject.shape[0], subject.voxel_mm[0]
    return tuple(round(c / voxel + n // 2) for c in centre_mm)


def contrast(subject, lesion):
    """1H contrast of a lesion against the fibroglandular rim around it, bias removed."""
    inside = subject.labels == lesion["label"]
    rim = ndimage.binary_dilation(inside, iterations=2) & ~inside
    flat = subject.proton / subject.extra["bias"]
    return abs(flat[inside].mean() - flat[rim].mean()) / flat[rim].mean()


def test_same_seed_is_bit_identical(with_lesions):
    again = breast_subject(0, n_tumours=3, sodium_only=True)
    assert np.array_equal(again.labels, with_lesions.labels)
    assert np.array_equal(again.proton, with_lesions.proton)
    assert again.tissues == with_lesions.tissues
    assert again.tubes == with_lesions.tubes
    assert again.extra["lesions"] == with_lesions.extra["lesions"]


def test_different_seeds_give_different_subjects(population):
    a, b = population[0], population[1]
    assert not np.array_equal(a.labels, b.labels)
    assert a.tissues[3] != b.tissues[3]
    assert a.extra["breast_size_mm"] != b.extra["breast_size_mm"]


def test_healthy_grid_and_tissue_table(healthy):
    assert healthy.kind == "breast" and healthy.seed == 0
    assert healthy.shape == (384, 384) and healthy.labels.dtype == np.int16
    assert healthy.voxel_mm == pytest.approx((320 / 384, 320 / 384))
    assert healthy.proton.dtype == np.float32
    healthy.validate()
    assert set(np.unique(healthy.labels)) <= set(healthy.tissues)
    names = {t.name for t in healthy.tissues.values()}
    assert names == TISSUES | {f"tube_{c:g}mM" for c in TUBE_CONCENTRATIONS}
    assert not any(name.startswith("tumour") for name in names)
    assert healthy.extra["lesions"] == []
    for name in TISSUES - {"air"}:
        assert healthy.mask(name).any(), name


def test_anatomy_layers_from_nipple_to_spine(healthy):
    body = body_of(healthy)
    lungs = body & (healthy.labels == 0)
    assert lungs.sum() * np.prod(healthy.voxel_mm) > 100 * 100  # > 1 dm² of air inside
    rows = {name: centroid_row(healthy, name) for name in ("fibroglandular", "muscle", "heart")}
    assert rows["fibroglandular"] < rows["heart"]  # breasts anterior, heart posterior
    # both breasts: glands on either side of the midline, above the chest
    cols = np.nonzero(healthy.mask("fibroglandular"))[1]
    mid = (healthy.shape[1] - 1) / 2
    assert (cols < mid).any() and (cols > mid).any()
    # skin covers the body, at least two voxels deep
    outer = body & ~ndimage.binary_erosion(body, iterations=2)
    assert healthy.mask("skin")[outer].all()
    assert 1.5 <= healthy.extra["skin_thickness_mm"] <= 2.0
    assert not (ndimage.binary_dilation(healthy.mask("skin")) & healthy.mask("heart")).any()


def test_proton_image(healthy):
    p = healthy.proton
    fat, glands = p[healthy.mask("fat")].mean(), p[healthy.mask("fibroglandular")].mean()
    muscle = p[healthy.mask("muscle")].mean()
    assert fat > glands > muscle
    bias = healthy.extra["bias"]
    assert 0.9 <= bias.min() < bias.max() <= 1.1


def test_tubes_inside_fov_clear_of_the_body_and_at_their_concentration(population):
    for subject in population[:10]:
        assert [t.concentration for t in subject.tubes] == list(TUBE_CONCENTRATIONS)
        n, voxel = subject.shape[0], subject.voxel_mm[0]
        outside = ndimage.distance_transform_edt(~body_of(subject), sampling=subject.voxel_mm)
        heart_row = centroid_row(subject, "heart")
        for tube in subject.tubes:
            assert tube.radius_mm == TUBE_RADIUS_MM
            inside = subject.labels == tube.label
            rows, cols = np.nonzero(inside)
            margin = int(TUBE_GAP_MM / voxel)
            assert rows.min() >= margin and rows.max() < n - margin
            assert cols.min() >= margin and cols.max() < n - margin
            assert outside[inside].min() >= TUBE_GAP_MM
            row, col = index_of(subject, tube.centre_mm)
            assert subject.tsc[row, col] == pytest.approx(tube.concentration)
            assert row < heart_row  # beside the breasts, anterior of the thorax


def test_lesions_are_described_and_have_two_to_three_times_the_glandular_tsc(with_lesions):
    fgt = with_lesions.tissues[with_lesions.label_of("fibroglandular")]
    lesions = with_lesions.extra["lesions"]
    assert [lesion["name"] for lesion in lesions] == ["tumour_1", "tumour_2", "tumour_3"]
    assert [lesion["kind"] for lesion in lesions] == ["visible", "visible", "sodium_only"]
    for lesion in lesions:
        tissue = with_lesions.tissues[lesion["label"]]
        assert tissue.name == lesion["name"]
        assert 2.0 <= tissue.tsc / fgt.tsc <= 3.0
        assert lesion["tsc"] == tissue.tsc
        assert 8.0 <= lesion["diameter_mm"] <= 25.0
        inside = with_lesions.labels == lesion["label"]
        rows, cols = np.nonzero(inside)
        assert max(np.ptp(rows) + 1, np.ptp(cols) + 1) * with_lesions.voxel_mm[0] <= 25.0
        assert inside[index_of(with_lesions, lesion["centre_mm"])]
        rim = ndimage.binary_dilation(inside) & ~inside  # embedded in glandular tissue
        assert (with_lesions.labels[rim] == fgt_label(with_lesions)).all()


def fgt_label(subject):
    return subject.label_of("fibroglandular")


def test_sodium_only_lesion_is_invisible_in_1h_and_visible_ones_are_not(with_lesions):
    *visible, hidden = with_lesions.extra["lesions"]
    fgt = with_lesions.tissues[fgt_label(with_lesions)]
    assert with_lesions.tissues[hidden["label"]].proton == fgt.proton
    assert contrast(with_lesions, hidden) < 1e-6
    for lesion in visible:
        assert with_lesions.tissues[lesion["label"]].proton == LESION_PROTON
        assert contrast(with_lesions, lesion) > 0.2
    # the 1H image is exactly the one of a subject whose hidden lesion were glandular tissue
    relabelled = with_lesions.labels.copy()
    relabelled[relabelled == hidden["label"]] = fgt_label(with_lesions)
    table = np.zeros(max(with_lesions.tissues) + 1, dtype=np.float32)
    for label, tissue in with_lesions.tissues.items():
        table[label] = tissue.proton
    expected = (table[relabelled] * with_lesions.extra["bias"]).astype(np.float32)
    assert np.array_equal(expected, with_lesions.proton)


def test_tumours_do_not_change_the_anatomy_elsewhere(healthy, with_lesions):
    def names(subject):
        lookup = np.array([subject.tissues[k].name for k in range(max(subject.tissues) + 1)])
        return lookup[subject.labels]

    assert [(t.centre_mm, t.concentration) for t in healthy.tubes] == \
        [(t.centre_mm, t.concentration) for t in with_lesions.tubes]
    lesions = np.isin(with_lesions.labels, [lesion["label"] for lesion in
                                            with_lesions.extra["lesions"]])
    near = ndimage.binary_dilation(lesions, iterations=4)
    assert np.array_equal(names(healthy)[~near], names(with_lesions)[~near])
    assert np.array_equal(healthy.proton[~near], with_lesions.proton[~near])
    plain = breast_subject(0, n_tumours=3)
    assert np.array_equal(plain.labels, with_lesions.labels)
    assert plain.extra["lesions"][-1]["kind"] == "visible"


@pytest.mark.parametrize("kwargs", [{"n_tumours": -1}, {"n_tumours": 1.5},
                                    {"n_tumours": True}, {"sodium_only": True},
                                    {"n_tumours": 0, "sodium_only": True}, {"matrix": 0},
                                    {"fov_mm": 0.0}, {"fov_mm": 150.0}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        breast_subject(0, **kwargs)


def test_population_varies_around_the_literature(population):
    glands = [s.tissues[fgt_label(s)].tsc for s in population]
    assert np.mean(glands) == pytest.approx(LITERATURE["fibroglandular"].tsc, abs=3.0)
    sizes = np.array([s.extra["breast_size_mm"] for s in population])  # (20, 2, 2)
    assert sizes[:, :, 1].std() > 5.0  # projection from the chest wall
    fraction = np.array([s.extra["fgt_fraction"] for s in population])
    assert 0.0 < fraction.min() and fraction.max() < 1.0 and fraction.std() > 0.03
    for subject in population:
        (lesion,) = subject.extra["lesions"]
        ratio = lesion["tsc"] / subject.tissues[fgt_label(subject)].tsc
        assert 2.0 <= ratio <= 3.0
