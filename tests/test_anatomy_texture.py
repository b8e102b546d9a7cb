"""Within-tissue TSC texture, 1H misregistration, and the Subject/acquisition support for them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nacode.anatomy.subject import AIR, Subject, Tissue, Tube, lookup
from nacode.anatomy.texture import (
    PROTON_TEXTURE,
    TEXTURE,
    misregister,
    random_shift_mm,
    texture_type,
    tsc_texture,
)
from nacode.anatomy.tissues import LITERATURE, tube
from nacode.physics import dapr, trajectory
from nacode.physics.acquire import acquire, signal_image

VOXEL = (1.0, 1.0)


def tissues_of(*names: str) -> dict[int, Tissue]:
    """A table with air at 0 and ``names`` at 1, 2, … (tubes and lesions by prefix)."""
    table = {0: AIR}
    for label, name in enumerate(names, start=1):
        if name.startswith("tube_"):
            table[label] = tube(float(name[5:-2]))
        else:
            kind = name.split("_")[0] if name.startswith("tumour") else name
            table[label] = replace(LITERATURE.get(kind, LITERATURE["fat"]), name=name)
    return table


def halves(n: int = 256) -> np.ndarray:
    """Left half fat (1), right half muscle (2), a 20 mm tube (3) and a tumour block (4)."""
    labels = np.ones((n, n), np.int16)
    labels[:, n // 2:] = 2
    yy, xx = np.mgrid[:n, :n]
    labels[np.hypot(yy - 40, xx - 40) < 20] = 3
    labels[150:200, 150:200] = 4
    return labels


def autocorrelation_length(field: np.ndarray) -> float:
    """Lag (voxels) where the periodic autocorrelation along x first drops below e^{-1/2}."""
    z = field - field.mean()
    spectrum = np.abs(np.fft.fft(z, axis=1)) ** 2
    acf = np.fft.ifft(spectrum, axis=1).real.mean(axis=0)
    acf = acf / acf[0]
    below = int(np.flatnonzero(acf < np.exp(-0.5))[0])
    # linear interpolation between the last lag above and the first below the threshold
    a, b = acf[below - 1], acf[below]
    return below - 1 + (a - np.exp(-0.5)) / (a - b)


def test_table_stays_inside_the_stated_ranges():
    for name, spec in TEXTURE.items():
        if spec is not None:
            sd, length = spec
            assert 0.05 <= sd <= 0.15 and 2.0 <= length <= 10.0, name
    for name, spec in PROTON_TEXTURE.items():
        if spec is not None:
            assert 0.03 <= spec[0] <= 0.05, name
    assert TEXTURE["tube"] is None and TEXTURE["air"] is None
    assert texture_type("tumour_2") == "tumour" and texture_type("tube_25mM") == "tube"
    assert texture_type("muscle_soleus") == "muscle" and texture_type("cortical_bone") \
        == "cortical_bone"
    with pytest.raises(ValueError, match="no texture entry"):
        texture_type("brainstem")


def test_mean_is_one_and_sd_is_the_tables_within_each_tissue():
    labels = halves()
    tissues = tissues_of("fat", "muscle", "tube_25mM", "tumour_1")
    texture = tsc_texture(labels, tissues, VOXEL, np.random.default_rng(0))
    assert texture.dtype == np.float32 and texture.shape == labels.shape
    for label, kind in ((1, "fat"), (2, "muscle"), (4, "tumour")):
        values = texture[labels == label].astype(np.float64)
        assert values.mean() == pytest.approx(1.0, abs=1e-6), kind
        assert values.std() == pytest.approx(TEXTURE[kind][0], rel=0.3), kind
    assert np.all(texture[labels == 3] == 1.0)  # tubes untextured


def test_air_and_unlisted_labels_are_one_and_the_field_is_positive():
    labels = halves()
    labels[:10] = 0
    table = {"fat": (1.0, 3.0), "muscle": (0.1, 3.0), "tube": None, "tumour": (0.1, 3.0),
             "air": None}
    texture = tsc_texture(labels, tissues_of("fat", "muscle", "tube_25mM", "tumour_1"),
                          VOXEL, np.random.default_rng(1), table=table)
    assert np.all(texture[:10] == 1.0)
    fat = texture[labels == 1]
    # 1 + 1.0·f falls below the floor often: clipped there (a plateau), never ≤ 0
    assert fat.min() > 0 and np.isclose(fat, fat.min(), rtol=1e-6).sum() > 100


@pytest.mark.parametrize("kind", ["skin", "fibroglandular", "fat", "muscle"])
def test_correlation_length_matches_the_table(kind):
    labels = np.ones((256, 256), np.int16)
    texture = tsc_texture(labels, tissues_of(kind), VOXEL, np.random.default_rng(2))
    measured = autocorrelation_length(texture.astype(np.float64)) * VOXEL[1]
    length = TEXTURE[kind][1]
    print(f"{kind}: correlation length {measured:.2f} mm (table {length} mm)")
    assert length / 2 <= measured <= 2 * length
    assert measured == pytest.approx(length, rel=0.25)  # covariance exp(−r²/2ℓ²) at r = ℓ


def test_types_are_independent_and_a_field_ignores_the_other_tissues():
    n = 256
    rng = np.random.default_rng
    all_fat = tsc_texture(np.ones((n, n), np.int16), tissues_of("fat"), VOXEL, rng(3))
    all_muscle = tsc_texture(np.ones((n, n), np.int16), tissues_of("muscle"), VOXEL, rng(3))
    both = tsc_texture(halves(), tissues_of("fat", "muscle", "tube_25mM", "tumour_1"),
                       VOXEL, rng(3))
    fat = halves() == 1
    ratio = both[fat] / all_fat[fat]  # same field, only the normalisation differs
    assert np.ptp(ratio) < 1e-5
    r = np.corrcoef(all_fat.ravel(), all_muscle.ravel())[0, 1]
    assert abs(r) < 0.1


def test_seeding_is_explicit():
    labels, tissues = halves(), tissues_of("fat", "muscle", "tube_25mM", "tumour_1")
    a = tsc_texture(labels, tissues, VOXEL, np.random.default_rng(4))
    b = tsc_texture(labels, tissues, VOXEL, np.random.default_rng(4))
    c = tsc_texture(labels, tissues, VOXEL, np.random.default_rng(5))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_a_group_shares_its_neighbours_field_and_normalisation():
    labels = np.ones((128, 128), np.int16)
    labels[60:62, 10:110] = 2  # a two-voxel septum through fat
    tissues = {0: AIR, 1: LITERATURE["fat"], 2: replace(LITERATURE["fat"], name="septum")}
    shared = tsc_texture(labels, tissues, VOXEL, np.random.default_rng(6),
                         groups={"septum": "fat"})
    as_fat = tsc_texture(np.ones_like(labels), tissues, VOXEL, np.random.default_rng(6))
    fat = labels == 1
    assert shared[fat].astype(np.float64).mean() == pytest.approx(1.0, abs=1e-6)
    # the product is one continuous field: the septum is not there at all, up to the mean
    ratio = shared / as_fat
    assert np.ptp(ratio) < 1e-5
    with pytest.raises(ValueError, match="septum"):  # the septum is absent here
        tsc_texture(np.ones_like(labels), {0: AIR, 1: LITERATURE["fat"]}, VOXEL,
                    np.random.default_rng(6), groups={"septum": "fat"})


def test_misregister_translates_by_sub_voxel_amounts():
    image = np.zeros((64, 64), np.float32)
    image[20:30, 20:40] = 1.0
    assert np.array_equal(misregister(image, (0.0, 0.0), (0.5, 0.5)), image)
    moved = misregister(image, (1.0, -2.0), (0.5, 0.5))  # 2 voxels down, 4 left
    assert moved.dtype == np.float32
    assert np.array_equal(moved, np.roll(image, (2, -4), axis=(0, 1)))
    half = misregister(image, (0.25, 0.0), (0.5, 0.5))  # half a voxel: linear mix
    assert half[20, 30] == pytest.approx(0.5) and half[30, 30] == pytest.approx(0.5)
    com = np.array(np.nonzero(half)).astype(float)
    weights = half[half > 0]
    assert (com * weights).sum(axis=1)[0] / weights.sum() == pytest.approx(24.5 + 0.5)
    with pytest.raises(ValueError, match="one value per axis"):
        misregister(image, (1.0,), (0.5, 0.5))


def test_random_shift_is_uniform_in_direction_and_magnitude():
    rng = np.random.default_rng(7)
    shifts = np.array([random_shift_mm(rng, 2.0) for _ in range(4000)])
    magnitude = np.hypot(*shifts.T)
    assert magnitude.max() <= 2.0 and magnitude.mean() == pytest.approx(1.0, abs=0.05)
    angle = np.arctan2(*shifts.T)
    counts = np.histogram(angle, bins=8, range=(-np.pi, np.pi))[0]
    assert counts.min() > 0.8 * counts.mean()
    assert len(random_shift_mm(rng, 1.0, ndim=3)) == 3
    with pytest.raises(ValueError, match="max_mm"):
        random_shift_mm(rng, -1.0)


# --- Subject and acquisition -------------------------------------------------------------

def disc_subject(matrix: int = 80, fov: float = 180.0, texture=None) -> Subject:
    pos = (np.arange(matrix) - matrix // 2) * fov / matrix
    y, x = np.meshgrid(pos, pos, indexing="ij")
    labels = np.zeros((matrix, matrix), np.int16)
    labels[np.hypot(y, x) < 30] = 1
    labels[np.hypot(y - 60, x - 60) < 10] = 2
    tissues = {0: AIR, 1: LITERATURE["muscle"], 2: tube(100.0)}
    return Subject("test", 0, labels, tissues, labels.astype(np.float32) * 0.5,
                   (fov / matrix,) * 2, (Tube(2, 100.0, (60.0, 60.0), 10.0),),
                   tsc_texture=texture)


def test_subject_tsc_is_the_lookup_times_the_texture():
    plain = disc_subject()
    texture = tsc_texture(plain.labels, plain.tissues, plain.voxel_mm, np.random.default_rng(8))
    textured = replace(plain, tsc_texture=texture)
    expected = lookup(plain.labels, plain.tissues, "tsc") * texture
    assert textured.tsc.dtype == np.float32
    assert np.array_equal(textured.tsc, expected)
    assert not np.array_equal(textured.tsc, plain.tsc)
    muscle = plain.labels == 1
    assert textured.tsc[muscle].mean() == pytest.approx(plain.tsc[muscle].mean(), rel=1e-5)
    assert np.array_equal(textured.t2_fast, plain.t2_fast)  # relaxation stays per label


def test_a_uniform_texture_of_two_doubles_the_signal_and_the_k_space():
    plain = disc_subject()
    doubled = replace(plain, tsc_texture=np.full(plain.shape, 2.0, np.float32))
    assert np.array_equal(signal_image(doubled), 2.0 * signal_image(plain))
    traj = trajectory.spiral(n_interleaves=20, matrix=40, fov_mm=180.0)
    assert np.array_equal(acquire(doubled, traj), 2.0 * acquire(plain, traj))
    maps = np.stack([np.ones(plain.shape), np.linspace(0.5, 1.5, plain.labels.size)
                     .reshape(plain.shape)]).astype(np.complex128)
    assert np.array_equal(acquire(doubled, traj, coil_maps=maps),
                          2.0 * acquire(plain, traj, coil_maps=maps))


def test_the_3d_radial_model_honours_the_texture():
    labels = np.zeros((16, 16, 16), np.int16)
    labels[4:12, 5:11, 6:10] = 1
    plain = Subject(kind="brain", seed=0, labels=labels, tissues={0: AIR, 1: LITERATURE["GM"]},
                    proton=np.zeros(labels.shape, np.float32), voxel_mm=(2.0,) * 3)
    doubled = replace(plain, tsc_texture=np.full(labels.shape, 2.0))
    assert np.array_equal(dapr.acquire_kspace(doubled, (8, 8, 8)),
                          2.0 * dapr.acquire_kspace(plain, (8, 8, 8)))


def test_no_texture_is_exactly_the_label_lookup():
    plain = disc_subject()
    assert plain.tsc_texture is None
    assert np.array_equal(plain.tsc, lookup(plain.labels, plain.tissues, "tsc"))
    traj = trajectory.spiral(n_interleaves=20, matrix=40, fov_mm=180.0)
    curves_image = signal_image(plain)
    ones = replace(plain, tsc_texture=np.ones(plain.shape))
    assert np.array_equal(signal_image(ones), curves_image)
    assert np.array_equal(acquire(ones, traj), acquire(plain, traj))


@pytest.mark.parametrize("texture, message", [
    (np.ones((10, 10)), "shape"),
    (np.where(np.eye(80, dtype=bool), np.nan, 1.0), "NaN"),
    (np.zeros((80, 80)), "> 0"),
    (-np.ones((80, 80)), "> 0"),
])
def test_bad_textures_are_rejected_in_one_line(texture, message):
    with pytest.raises(ValueError, match=message) as error:
        disc_subject(texture=texture)
    assert "\n" not in str(error.value)


def test_primers_texture_table_lists_every_textured_type_with_its_sizes():
    from nacode.anatomy.tissues import TSC_SD
    from nacode.studies.primer import texture_table

    table = texture_table().set_index("type")
    assert set(table.index) == {k for k, v in TEXTURE.items() if v is not None}
    for kind, (sd, length) in ((k, v) for k, v in TEXTURE.items() if v is not None):
        assert table.loc[kind, "sodium_sd_pct"] == pytest.approx(100 * sd)
        assert table.loc[kind, "sodium_length_mm"] == length
    assert np.isnan(table.loc["GM", "proton_sd_pct"])  # the brain's 1H is the T1 template
    assert table.loc["GM", "between_subject_sd_pct"] == pytest.approx(
        100 * TSC_SD["GM"] / LITERATURE["GM"].tsc)
