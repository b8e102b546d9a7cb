"""Procedural breasts: reproducibility, anatomy, tumours (visible and sodium-only), tubes, and
the features that deny a 1H prior its oracle (texture, strands, septum, misregistration)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from conftest import sha256, table_hash
from nacode.anatomy.breast import (
    LESION_PROTON,
    MISREGISTRATION_MM,
    SEPTUM_PROTON,
    STRANDS,
    TUBE_GAP_MM,
    TUBE_RADIUS_MM,
    breast_subject,
)
from nacode.anatomy.subject import lookup
from nacode.anatomy.texture import TEXTURE, misregister, texture_type
from nacode.anatomy.tissues import LITERATURE, TUBE_CONCENTRATIONS
from nacode.physics.acquire import signal_image

TISSUES = {"air", "skin", "fat", "fibroglandular", "muscle", "heart", "cortical_bone", "marrow"}


@pytest.fixture(scope="module")
def healthy():
    return breast_subject(0)


@pytest.fixture(scope="module")
def with_lesions():
    return breast_subject(0, n_tumours=3, sodium_only=True)


@pytest.fixture(scope="module")
def flat_healthy():
    return breast_subject(0, texture=False)


@pytest.fixture(scope="module")
def flat_lesions():
    return breast_subject(0, n_tumours=3, sodium_only=True, texture=False)


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
    assert np.array_equal(again.tsc_texture, with_lesions.tsc_texture)
    assert np.array_equal(again.extra["proton_texture"], with_lesions.extra["proton_texture"])
    for key in ("septum", "strands", "misregistration_mm"):
        assert again.extra[key] == with_lesions.extra[key]


def test_different_seeds_give_different_subjects(population):
    a, b = population[0], population[1]
    assert not np.array_equal(a.labels, b.labels)
    assert a.tissues[3] != b.tissues[3]
    assert a.extra["breast_size_mm"] != b.extra["breast_size_mm"]
    fat_a, fat_b = a.mask("fat"), b.mask("fat")
    both = fat_a & fat_b
    assert not np.allclose(a.tsc_texture[both], b.tsc_texture[both], rtol=1e-3)
    assert a.extra["misregistration_mm"] != b.extra["misregistration_mm"]


def test_healthy_grid_and_tissue_table(healthy):
    assert healthy.kind == "breast" and healthy.seed == 0
    assert healthy.shape == (384, 384) and healthy.labels.dtype == np.int16
    assert healthy.voxel_mm == pytest.approx((320 / 384, 320 / 384))
    assert healthy.proton.dtype == np.float32
    healthy.validate()
    assert set(np.unique(healthy.labels)) <= set(healthy.tissues)
    names = {t.name for t in healthy.tissues.values()}
    assert names == TISSUES | {f"tube_{c:g}mM" for c in TUBE_CONCENTRATIONS} | {"septum"}
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


def test_sodium_only_lesion_is_invisible_in_1h_and_visible_ones_are_not(flat_lesions):
    subject = flat_lesions
    *visible, hidden = subject.extra["lesions"]
    fgt = subject.tissues[fgt_label(subject)]
    assert subject.tissues[hidden["label"]].proton == fgt.proton
    assert contrast(subject, hidden) < 1e-6
    for lesion in visible:
        assert subject.tissues[lesion["label"]].proton == LESION_PROTON
        assert contrast(subject, lesion) > 0.2
    # the 1H image is exactly the one of a subject whose hidden lesion were glandular tissue
    relabelled = subject.labels.copy()
    relabelled[relabelled == hidden["label"]] = fgt_label(subject)
    expected = (lookup(relabelled, subject.tissues, "proton")
                * subject.extra["bias"]).astype(np.float32)
    assert np.array_equal(expected, subject.proton)


def test_sodium_only_lesion_stays_invisible_through_the_1h_texture(with_lesions):
    """Textured, misregistered 1H: still exactly the image with the lesion made glandular."""
    subject = with_lesions
    *visible, hidden = subject.extra["lesions"]
    assert subject.tissues[hidden["label"]].proton == \
        subject.tissues[fgt_label(subject)].proton
    relabelled = subject.labels.copy()
    relabelled[relabelled == hidden["label"]] = fgt_label(subject)
    texture = subject.extra["proton_texture"]
    registered = lookup(relabelled, subject.tissues, "proton") * texture
    expected = (misregister(registered, subject.extra["misregistration_mm"], subject.voxel_mm)
                * subject.extra["bias"]).astype(np.float32)
    assert np.array_equal(expected, subject.proton)
    inside = subject.labels == hidden["label"]  # the 1H texture runs on through the lesion
    rim = ndimage.binary_dilation(inside, iterations=3) & ~inside
    assert abs(np.log(texture[inside].mean() / texture[rim].mean())) < 0.05
    for lesion in visible:  # visible lesions stay visible in the registered 1H intensity
        flat = lookup(subject.labels, subject.tissues, "proton") * texture
        inside = subject.labels == lesion["label"]
        rim = ndimage.binary_dilation(inside, iterations=2) & ~inside
        assert 1 - flat[inside].mean() / flat[rim].mean() > 0.2


def names_of(subject):
    table = np.array([subject.tissues[k].name for k in range(max(subject.tissues) + 1)])
    return table[subject.labels]


def test_tumours_do_not_change_the_anatomy_elsewhere(flat_healthy, flat_lesions):
    healthy, with_lesions = flat_healthy, flat_lesions
    assert [(t.centre_mm, t.concentration) for t in healthy.tubes] == \
        [(t.centre_mm, t.concentration) for t in with_lesions.tubes]
    lesions = np.isin(with_lesions.labels, [lesion["label"] for lesion in
                                            with_lesions.extra["lesions"]])
    near = ndimage.binary_dilation(lesions, iterations=4)
    assert np.array_equal(names_of(healthy)[~near], names_of(with_lesions)[~near])
    assert np.array_equal(healthy.proton[~near], with_lesions.proton[~near])
    plain = breast_subject(0, n_tumours=3, texture=False)
    assert np.array_equal(plain.labels, with_lesions.labels)
    assert plain.extra["lesions"][-1]["kind"] == "visible"


def test_tumours_do_not_move_the_textured_features(healthy, with_lesions):
    lesions = np.isin(with_lesions.labels, [lesion["label"] for lesion in
                                            with_lesions.extra["lesions"]])
    near = ndimage.binary_dilation(lesions, iterations=4)
    assert np.array_equal(names_of(healthy)[~near], names_of(with_lesions)[~near])
    assert healthy.extra["misregistration_mm"] == with_lesions.extra["misregistration_mm"]
    assert healthy.extra["septum"]["width_mm"] == with_lesions.extra["septum"]["width_mm"]
    # textures: the same fields; only each tissue's mean normalisation moves a little
    far = ~ndimage.binary_dilation(lesions, iterations=8) & (healthy.proton > 0.05)
    np.testing.assert_allclose(with_lesions.proton[far], healthy.proton[far], rtol=2e-3)
    np.testing.assert_allclose(with_lesions.tsc_texture[~near], healthy.tsc_texture[~near],
                               rtol=1e-2)


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


# --- what removes the 1H prior's oracle ----------------------------------------------------

#: sha256 of labels, proton and the tissue table of breast_subject(seed, n_tumours,
#: sodium_only) computed with the code before texture existed (commit 3b00fab).
FLAT_HASHES = {
    (0, 0, False): ("200a814364c50ecb779923396723a277703551ee0b4e04d531e58ee93985435a",
                    "38f650f07819976b696647bece0034de75b3cf36ba0e5a7da5c1252c4ce2236f",
                    "e80a1f10007a1a39bc0d4821f19eff30bb88af22f02207db5fddfee8d1cb19f7"),
    (0, 3, True): ("1cb6fefc280765a3de63f95007dc50b1b599e2e6d13883c0beaa16d15641a8ad",
                   "4215f945f79be8c976eea4be79b71b473ecbeb6ad5f6c7c916879667db12c4a4",
                   "9c02430459b7f6dd5d76d6f3a234d8859687464d1147fabe9d7ff1608c985a7a"),
    (7, 1, True): ("9beae81a60f6b5f20347678f320dde544cb2236a8bb29960fb1254314cedaf37",
                   "9cc5005cbd4f0a00ec91318204aa6df88ed6ef82e9188c22f349cab16c10336e",
                   "09374c36eef2a70679c3bbb726302362ec4ade11165ebfb4499a74ac174a83a6"),
}


@pytest.mark.parametrize("args", sorted(FLAT_HASHES))
def test_texture_false_reproduces_the_label_constant_subject(args):
    seed, n, hidden = args
    subject = breast_subject(seed, n_tumours=n, sodium_only=hidden, texture=False)
    assert (sha256(subject.labels), sha256(subject.proton), table_hash(subject)) \
        == FLAT_HASHES[args]
    assert subject.tsc_texture is None and subject.extra["septum"] is None
    assert subject.extra["strands"] == [] and subject.extra["misregistration_mm"] == (0, 0)


def test_texture_changes_only_fat_voxels_into_strands_and_septum(healthy, flat_healthy):
    changed = healthy.labels != flat_healthy.labels
    assert np.all(flat_healthy.labels[changed] == flat_healthy.label_of("fat"))
    septum, strands = healthy.mask("septum"), healthy.extra["strand_mask"]
    assert np.array_equal(changed, septum | strands) and not (septum & strands).any()
    assert np.all(healthy.labels[strands] == fgt_label(healthy))
    assert healthy.tubes == flat_healthy.tubes


def test_sodium_texture_has_mean_one_and_the_tables_sd_per_tissue(healthy):
    texture = healthy.tsc_texture
    assert texture.dtype == np.float32 and texture.shape == healthy.shape
    assert texture.min() > 0
    for label, tissue in healthy.tissues.items():
        inside = healthy.labels == label
        values = texture[inside].astype(np.float64)
        if tissue.name.startswith("tube") or tissue.name == "air":
            assert np.all(values == 1.0), tissue.name  # tubes untextured
            continue
        if tissue.name == "septum":  # shares fat's field: continuous, mean ≈ 1
            assert values.mean() == pytest.approx(1.0, abs=0.1)
            continue
        assert values.mean() == pytest.approx(1.0, abs=1e-5), tissue.name
        sd = TEXTURE[texture_type(tissue.name)][0]
        if inside.sum() > 2000:
            assert values.std() == pytest.approx(sd, rel=0.3), tissue.name
    # the tissue's mean TSC, the number a study reports, is unchanged
    fat = healthy.mask("fat")
    assert healthy.tsc[fat].mean() == pytest.approx(healthy.tissues[2].tsc, rel=1e-5)
    assert np.array_equal(healthy.tsc, lookup(healthy.labels, healthy.tissues, "tsc") * texture)


def test_strands_are_thinner_than_an_acquisition_voxel(population):
    for subject in population:
        strands = subject.extra["strand_mask"]
        records = subject.extra["strands"]
        assert 3 <= len(records) <= STRANDS[1] and strands.sum() > 50
        assert all(0.8 <= r["width_mm"] <= 2.0 for r in records)
        depth = ndimage.distance_transform_edt(strands, sampling=subject.voxel_mm)
        assert depth.max() <= 1.5  # ≤ 2 fine voxels across; the quick profile's voxel is 5 mm
        assert np.all(subject.labels[strands] == fgt_label(subject))
        assert (strands & body_of(subject)).sum() == strands.sum()


def septum_ring(subject):
    septum = subject.mask("septum")
    ring = ndimage.binary_dilation(septum, iterations=6) \
        & ~ndimage.binary_dilation(septum, iterations=3)
    return septum, ring & subject.mask("fat")


def test_septum_is_in_1h_only(population):
    for subject in population:
        record = subject.extra["septum"]
        septum, ring = septum_ring(subject)
        assert record["name"] == "septum" and record["label"] == subject.label_of("septum")
        assert 1.0 <= record["width_mm"] <= 1.7 and record["length_mm"] >= 15.0
        assert septum.sum() * np.prod(subject.voxel_mm) >= 15.0
        fat, tissue = subject.tissues[subject.label_of("fat")], subject.tissues[record["label"]]
        assert replace(tissue, name="fat", proton=fat.proton) == fat
        assert tissue.proton == SEPTUM_PROTON
        # sodium: no feature at all — identical to the subject with the septum made fat
        relabelled = subject.labels.copy()
        relabelled[septum] = subject.label_of("fat")
        as_fat = replace(subject, labels=relabelled)
        assert np.array_equal(signal_image(subject), signal_image(as_fat))
        tsc = subject.tsc.astype(np.float64)
        assert abs(1 - tsc[septum].mean() / tsc[ring].mean()) < 0.05
        gradient = np.hypot(*np.gradient(tsc, *subject.voxel_mm))
        core = ndimage.binary_erosion(septum | subject.mask("fat"), np.ones((5, 5), bool))
        fat_core = core & ~ndimage.binary_dilation(septum, np.ones((5, 5), bool))
        assert gradient[septum & core].mean() <= 2.0 * gradient[fat_core].mean()
        # 1H: a clear line (bias removed; the septum mask moved with the misregistration)
        flat = subject.proton / subject.extra["bias"]
        shift = subject.extra["misregistration_mm"]
        moved = misregister(septum.astype(np.float32), shift, subject.voxel_mm) > 0.5
        assert 1 - flat[moved].mean() / flat[ring].mean() > 0.3


def test_misregistration_is_at_most_2_mm_and_moves_the_1h_image(population):
    shifts = np.array([s.extra["misregistration_mm"] for s in population])
    magnitude = np.hypot(*shifts.T)
    assert magnitude.max() <= MISREGISTRATION_MM and magnitude.std() > 0.2
    subject = population[int(np.argmax(magnitude))]
    shift = np.array(subject.extra["misregistration_mm"])
    registered = lookup(subject.labels, subject.tissues, "proton") \
        * subject.extra["proton_texture"]
    expected = (misregister(registered, tuple(shift), subject.voxel_mm)
                * subject.extra["bias"]).astype(np.float32)
    assert np.array_equal(expected, subject.proton)
    # cross-correlation of the (bias-free) 1H image with the registered one peaks at the shift
    moved = subject.proton / subject.extra["bias"]
    a, b = moved - moved.mean(), registered - registered.mean()
    xcorr = np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))).real
    peak = np.array(np.unravel_index(np.argmax(xcorr), xcorr.shape))
    refined = []
    for axis in range(2):  # parabolic sub-voxel refinement along each axis
        before, after = peak.copy(), peak.copy()
        before[axis] -= 1
        after[axis] += 1
        c0, cm, cp = xcorr[tuple(peak)], xcorr[tuple(before % 384)], xcorr[tuple(after % 384)]
        offset = 0.5 * (cm - cp) / (cm - 2 * c0 + cp)
        lag = (peak[axis] + 192) % 384 - 192
        refined.append((lag + offset) * subject.voxel_mm[axis])
    print("recorded", shift, "mm; cross-correlation peak", np.round(refined, 3), "mm")
    assert np.allclose(refined, shift, atol=0.25)
    assert np.hypot(*shift) > 1.0  # the test subject's shift is large enough to measure
