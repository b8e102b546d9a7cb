"""Virtual breasts: a procedural axial slice of a prone woman, optionally with tumours.

Both breasts hang anteriorly (up in the image) from the chest wall. Each is a perturbed,
slightly conical ellipse covered by skin and subcutaneous fat; its inner region holds
fibroglandular tissue, a thresholded smooth random field that is denser near the chest and
whose volume fraction (the breast density) varies per subject. Behind the breasts lie the
retromammary fat, the pectoralis (``"muscle"``, continuous with the thoracic wall and the back
muscles) and the thorax: lungs (air, label 0), the heart, mediastinal fat and a vertebral body.

Tumours are lobulated blobs inside fibroglandular tissue (which is made to surround them),
with 2–3 times the subject's fibroglandular TSC. A visible tumour is darker than
fibroglandular tissue in 1H; a *sodium-only* tumour has exactly the fibroglandular 1H intensity,
so it can only be found in the sodium image — the case DIP-Fusion's anatomical prior must not
erase. Anatomy, lesions and tubes use independent random streams spawned from the seed, so a
seed gives the same breasts with or without tumours.

Conventions: arrays are 2D, indexed ``(y, x)``, row 0 anterior and column 0 the subject's right
(radiological display). Voxel ``i`` of ``N`` is centred at ``(i - N // 2) * voxel`` mm from
the grid centre, the origin of every ``centre_mm = (y, x)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nacode.anatomy import _draw
from nacode.anatomy.subject import AIR, Subject, Tissue, lookup
from nacode.anatomy.tissues import TUBE_CONCENTRATIONS, draw

SKIN, FAT, FIBROGLANDULAR, MUSCLE, HEART, CORTEX, MARROW = range(1, 8)
SKIN_MM = (1.5, 2.0)
LESION_DIAMETER_MM = (10.0, 17.0)  # nominal; lobulation keeps the extent within 8–25 mm
LESION_TSC_FACTOR = (2.0, 3.0)  # lesion TSC over the subject's fibroglandular TSC
LESION_PROTON = 0.3  # 1H intensity of a visible lesion (fibroglandular: 0.45)
LESION_RIM_MM = 2.5  # fibroglandular tissue made to surround each lesion
TUBE_RADIUS_MM = 8.0
TUBE_GAP_MM = 3.0


def _tissues(rng: np.random.Generator) -> dict[int, Tissue]:
    """The subject's tissue table, labels 0–7."""
    return {0: AIR, SKIN: draw("skin", rng), FAT: draw("fat", rng),
            FIBROGLANDULAR: draw("fibroglandular", rng), MUSCLE: draw("muscle", rng),
            HEART: draw("vessel", rng, rename="heart"), CORTEX: draw("cortical_bone", rng),
            MARROW: draw("marrow", rng)}


def _anatomy(rng: np.random.Generator, y: np.ndarray, x: np.ndarray,
             voxel: tuple[float, float]) -> tuple[np.ndarray, dict]:
    """Label map (no lesions, no tubes) and geometry of one subject."""
    shape = (y.shape[0], x.shape[1])
    half_a, half_b = rng.uniform(112.0, 135.0), rng.uniform(72.0, 92.0)  # thorax semi-axes
    height = rng.uniform(35.0, 95.0)  # how far the breasts project from the chest
    half_w = rng.uniform(42.0, 58.0)  # half the breast base width
    offset_x = half_w + rng.uniform(6.0, 20.0)  # breast centre from the midline
    sink = rng.uniform(0.0, 10.0)  # the breast ellipse's centre lies this far inside the chest
    tilts = np.deg2rad(rng.uniform(0.0, 12.0, size=2))
    surface = half_b * np.sqrt(1.0 - (offset_x / half_a) ** 2)
    top = surface - sink + (height + sink) * np.cos(tilts).max()
    y0 = (top - half_b) / 2  # centres the body's antero-posterior extent
    thorax_profile = _draw.fourier_profile(rng, orders=(2, 3), amplitude=0.04)
    r, edge = _draw.star_radius(x, y - y0, half_a, half_b, thorax_profile)
    thorax = r <= edge

    breasts, sizes = np.zeros(shape, dtype=bool), []
    for k, side in enumerate((-1.0, 1.0)):  # image left (subject's right), then right
        h, w = height * rng.uniform(0.93, 1.07), half_w * rng.uniform(0.95, 1.05)
        centre = (y0 - surface + sink, side * offset_x)
        u, v = _draw.rotate(y, x, centre, side * tilts[k])
        v = -v  # v: towards the nipple
        taper = np.maximum(1.0 - rng.uniform(0.0, 0.25) * v / (h + sink), 0.3)
        profile = _draw.fourier_profile(rng, orders=(2, 3), amplitude=0.05)
        r, edge = _draw.star_radius(u / taper, v, w, h + sink, profile)
        breasts |= r <= edge
        sizes.append((float(2 * w), float(h)))
    sigma = 4.0 / np.array(voxel)
    body = ndimage.gaussian_filter((thorax | breasts).astype(float), sigma) > 0.5
    body = ndimage.binary_fill_holes(body)
    if body[[0, 1, -2, -1], :].any() or body[:, [0, 1, -2, -1]].any():
        fov = shape[1] * voxel[1]
        raise ValueError(f"the body does not fit a {fov:g} mm field of view: use ≥ 300 mm")
    depth = _draw.depth_mm(body, voxel)

    # thoracic wall: fat then muscle, thin anteriorly (pectoralis), thick at the back
    sine = (y - y0) / np.maximum(np.hypot(x * half_b / half_a, y - y0), 1e-9)
    front, back = np.clip(-sine, 0.0, 1.0) ** 2, np.clip(sine, 0.0, 1.0) ** 2

    def layer(lo: tuple[float, float], side: tuple[float, float],
              hi: tuple[float, float]) -> np.ndarray:
        f, s, b = rng.uniform(*lo), rng.uniform(*side), rng.uniform(*hi)
        return s + (f - s) * front + (b - s) * back

    fat_wall = layer((3.0, 6.0), (6.0, 16.0), (8.0, 20.0))
    muscle_wall = layer((8.0, 15.0), (6.0, 10.0), (25.0, 40.0))
    wall = _draw.depth_mm(thorax, voxel)
    muscle = thorax & (wall >= fat_wall) & (wall < fat_wall + muscle_wall)
    cavity = thorax & (wall >= fat_wall + muscle_wall)

    # fibroglandular tissue in the inner breast, denser near the chest
    skin_mm = _draw.shell(rng.uniform(*SKIN_MM), voxel)
    inner = breasts & ~thorax & (depth >= skin_mm + rng.uniform(4.0, 10.0))
    chest = ndimage.distance_transform_edt(~thorax, sampling=voxel)
    field = _draw.smooth_noise(shape, rng, rng.uniform(2.0, 4.0), voxel)
    field += rng.uniform(0.8, 1.5) * (1.0 - np.clip(chest / height, 0.0, 1.0))
    density = rng.uniform(0.15, 0.6)
    glands = inner & (field > np.quantile(field[inner], 1.0 - density))
    glands = ndimage.binary_closing(ndimage.binary_opening(glands), iterations=1) & inner

    labels = np.zeros(shape, dtype=np.int16)
    labels[body] = FAT
    labels[glands] = FIBROGLANDULAR
    labels[muscle] = MUSCLE
    labels[cavity] = 0  # lungs
    centre_col = int(np.abs(x[0]).argmin())
    rows = np.flatnonzero(cavity[:, centre_col])
    cav_top, cav_bottom = y[rows.min(), 0], y[rows.max(), 0]
    mid = rng.uniform(6.0, 10.0)
    labels[cavity & (np.abs(x) < mid) & (y > cav_top)] = FAT  # mediastinum
    ha, hb = rng.uniform(40.0, 52.0), rng.uniform(30.0, 40.0)
    heart_centre = (cav_top + hb * rng.uniform(0.8, 1.0), rng.uniform(10.0, 30.0))
    u, v = _draw.rotate(y, x, heart_centre, -np.deg2rad(rng.uniform(25.0, 45.0)))
    r, edge = _draw.star_radius(u, v, ha, hb)
    labels[cavity & (r <= edge)] = HEART
    r_v = rng.uniform(13.0, 17.0)
    vertebra = _draw.disc(y, x, (cav_bottom - 0.3 * r_v, 0.0), r_v)
    labels[vertebra] = CORTEX
    labels[_draw.depth_mm(vertebra, voxel) >= _draw.shell(2.0, voxel)] = MARROW
    labels[body & (depth < skin_mm)] = SKIN
    breast_tissue = breasts & ~thorax & body & (depth >= skin_mm)
    top_row = np.flatnonzero(body.any(axis=1)).min()
    geometry = {"body": body, "inner": inner, "band_y": (y[top_row, 0], y0 - half_b),
                "breast_size_mm": tuple(sizes), "fgt_density": float(density),
                "fgt_fraction": float(glands.sum() / max(breast_tissue.sum(), 1)),
                "skin_thickness_mm": float(skin_mm)}
    return labels, geometry


def _add_lesions(labels: np.ndarray, tissues: dict[int, Tissue], rng: np.random.Generator,
                 y: np.ndarray, x: np.ndarray, voxel: tuple[float, float], inner: np.ndarray,
                 n: int, sodium_only: bool) -> list[dict]:
    """Paint ``n`` lobulated lesions into fibroglandular tissue; return their descriptions."""
    fgt = tissues[FIBROGLANDULAR]
    room = _draw.depth_mm(inner, voxel)
    lesions: list[dict] = []
    taken = np.zeros(labels.shape, dtype=bool)
    for i in range(1, n + 1):
        diameter = rng.uniform(*LESION_DIAMETER_MM)
        profile = _draw.fourier_profile(rng, orders=(2, 3, 4, 5), amplitude=0.35)
        reach = 1.0 + 0.35 * sum(1.0 / k for k in (2, 3, 4, 5))  # largest radius / nominal
        clear = ndimage.distance_transform_edt(~taken, sampling=voxel)
        while True:
            radius = diameter / 2 * reach
            ok = (room >= radius + LESION_RIM_MM + 1.0) & (clear >= radius + LESION_RIM_MM + 1.0)
            candidates = np.flatnonzero(ok & (labels == FIBROGLANDULAR))
            if not candidates.size:  # centre in fat: the rim still surrounds it with glands
                candidates = np.flatnonzero(ok)
            if candidates.size or diameter <= 8.5:
                break
            diameter = max(0.85 * diameter, 8.5)
        if not candidates.size:
            raise ValueError(f"no room for tumour {i} of {n} in this subject's fibroglandular "
                             f"tissue: ask for fewer tumours or use another seed")
        row, col = np.unravel_index(candidates[rng.integers(candidates.size)], labels.shape)
        centre = (float(y[row, 0]), float(x[0, col]))
        half = int(np.ceil((radius + LESION_RIM_MM) / min(voxel))) + 2
        window = np.s_[max(row - half, 0):row + half + 1, max(col - half, 0):col + half + 1]
        blob = np.zeros(labels.shape, dtype=bool)
        r, edge = _draw.star_radius(x[:, window[1]] - centre[1], y[window[0]] - centre[0],
                                    diameter / 2, diameter / 2, profile)
        blob[window] = r <= edge
        rim = np.zeros_like(blob)
        rim[window] = ndimage.distance_transform_edt(~blob[window], sampling=voxel) <= LESION_RIM_MM
        labels[rim & ~blob & ~taken] = FIBROGLANDULAR
        label = max(tissues) + 1
        hidden = sodium_only and i == n
        factor = rng.uniform(*LESION_TSC_FACTOR)
        tissues[label] = draw("tumour", rng, rename=f"tumour_{i}", tsc=factor * fgt.tsc,
                              proton=fgt.proton if hidden else LESION_PROTON)
        labels[blob] = label
        taken |= blob
        lesions.append({"label": label, "name": f"tumour_{i}",
                        "kind": "sodium_only" if hidden else "visible", "centre_mm": centre,
                        "diameter_mm": float(2 * np.sqrt(blob.sum() * np.prod(voxel) / np.pi)),
                        "tsc": tissues[label].tsc, "tsc_ratio": float(factor)})
    return lesions


def breast_subject(seed: int, *, n_tumours: int = 0, sodium_only: bool = False,
                   matrix: int = 384, fov_mm: float = 320.0) -> Subject:
    """A virtual prone breast slice: both breasts, chest wall, thorax, tumours and tubes.

    Parameters
    ----------
    seed : int
        Fully determines the subject; anatomy does not depend on ``n_tumours``.
    n_tumours : int
        Number of lesions (≥ 0), labelled ``"tumour_1"``, ``"tumour_2"``, …
    sodium_only : bool
        Make the last lesion invisible in 1H (its 1H intensity equals fibroglandular tissue's
        exactly). Needs ``n_tumours ≥ 1``.
    matrix : int
        Grid size (``matrix × matrix``); the default 384 over 320 mm gives 0.833 mm voxels.
    fov_mm : float
        Square field of view in mm.

    Returns
    -------
    Subject
        ``kind="breast"``, ``labels`` int16 of shape ``(matrix, matrix)``: 0 air and lungs,
        1 ``"skin"``, 2 ``"fat"``, 3 ``"fibroglandular"``, 4 ``"muscle"``, 5 ``"heart"``,
        6 ``"cortical_bone"`` and 7 ``"marrow"`` (vertebra), then one label per lesion, then
        five tubes (``"tube_<c>mM"``, radius 8 mm, ≥ 3 mm from the body, the edge and each
        other, anterior of the chest). ``proton`` is float32, the tissues' 1H intensities
        times a smooth bias within ±10 %. ``extra`` holds ``"lesions"`` (list of dicts:
        ``label``, ``name``, ``kind`` ``"visible"`` or ``"sodium_only"``, ``centre_mm = (y,
        x)``, ``diameter_mm`` (area-equivalent), ``tsc`` in mM, ``tsc_ratio`` to
        fibroglandular), ``"bias"`` (float32, shape of ``labels``), ``"breast_size_mm"``
        (base width and projection of the image-left and image-right breast),
        ``"fgt_density"`` (target fibroglandular fraction of the inner breast),
        ``"fgt_fraction"`` (fibroglandular share of the breast tissue below the skin) and
        ``"skin_thickness_mm"``.

    Raises
    ------
    ValueError
        If ``n_tumours`` is not an integer ≥ 0, ``sodium_only`` is set without a tumour,
        ``matrix`` or ``fov_mm`` is not positive, the body does not fit the field of view, or
        the lesions or tubes find no room.
    """
    if isinstance(n_tumours, bool) or not isinstance(n_tumours, int | np.integer) \
            or n_tumours < 0:
        raise ValueError(f"n_tumours must be an integer ≥ 0, got {n_tumours!r}")
    if sodium_only and n_tumours < 1:
        raise ValueError("sodium_only=True makes the last tumour sodium-only: it needs "
                         f"n_tumours ≥ 1, got n_tumours={n_tumours}")
    if int(matrix) != matrix or matrix < 32:
        raise ValueError(f"matrix must be an integer ≥ 32 (voxels per side), got {matrix!r}")
    if not (np.isfinite(fov_mm) and fov_mm > 0):
        raise ValueError(f"fov_mm must be a positive field of view in mm, got {fov_mm!r}")
    anatomy_rng, lesion_rng, tube_rng = np.random.default_rng(seed).spawn(3)
    shape, voxel = (int(matrix), int(matrix)), (fov_mm / matrix, fov_mm / matrix)
    y, x = _draw.grid_mm(shape, voxel)
    tissues = _tissues(anatomy_rng)
    labels, geometry = _anatomy(anatomy_rng, y, x, voxel)
    body = geometry.pop("body")
    bias = _draw.bias_field(shape, anatomy_rng)
    top, chest = geometry.pop("band_y")  # tubes lie between the nipples' and the chest's level
    top = min(top + TUBE_RADIUS_MM, chest - 4 * TUBE_RADIUS_MM)
    lesions = _add_lesions(labels, tissues, lesion_rng, y, x, voxel, geometry.pop("inner"),
                           int(n_tumours), bool(sodium_only))
    tubes = _draw.add_tubes(labels, tissues, tube_rng, body, voxel, TUBE_CONCENTRATIONS,
                            TUBE_RADIUS_MM, gap_mm=TUBE_GAP_MM,
                            allowed=np.broadcast_to((y >= top) & (y <= chest), shape))
    proton = (lookup(labels, tissues, "proton") * bias).astype(np.float32)
    extra = {"lesions": lesions, "bias": bias, **geometry}
    return Subject(kind="breast", seed=seed, labels=labels, tissues=tissues, proton=proton,
                   voxel_mm=voxel, tubes=tubes, extra=extra)
