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

With ``texture=True`` (the default) the 1H image stops being an oracle for a 1H-guided method
(directional TV, DIP-Fusion), which would otherwise find every sodium edge on a 1H edge:
the sodium TSC varies within each tissue (:func:`~nacode.anatomy.texture.tsc_texture`); up to
15 Cooper's-ligament-like fibroglandular strands, 0.8–1.6 mm wide (below the 2.5–5 mm
acquisition voxel), cross the breast fat from the chest towards the skin, ending where they
meet another (in both images); a 1–1.7 mm ``"septum"`` runs 3–5 cm through the fat of one
breast, dark in 1H but with fat's sodium properties and texture exactly, so it has no sodium
feature at all; and the 1H image has its own independent texture and is translated by 0–2 mm
against the sodium truth. These features use streams of their own (children 3–7 of the
seed), so ``texture=False`` reproduces the label-constant subject bit for bit.

Conventions: arrays are 2D, indexed ``(y, x)``, row 0 anterior and column 0 the subject's right
(radiological display). Voxel ``i`` of ``N`` is centred at ``(i - N // 2) * voxel`` mm from
the grid centre, the origin of every ``centre_mm = (y, x)``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from nacode.anatomy import _draw
from nacode.anatomy.subject import AIR, Subject, Tissue, lookup
from nacode.anatomy.texture import PROTON_TEXTURE, misregister, random_shift_mm, tsc_texture
from nacode.anatomy.tissues import TUBE_CONCENTRATIONS, draw

SKIN, FAT, FIBROGLANDULAR, MUSCLE, HEART, CORTEX, MARROW = range(1, 8)
SKIN_MM = (1.5, 2.0)
LESION_DIAMETER_MM = (10.0, 17.0)  # nominal; lobulation keeps the extent within 8–25 mm
LESION_TSC_FACTOR = (2.0, 3.0)  # lesion TSC over the subject's fibroglandular TSC
LESION_PROTON = 0.3  # 1H intensity of a visible lesion (fibroglandular: 0.45)
LESION_RIM_MM = 2.5  # fibroglandular tissue made to surround each lesion
TUBE_RADIUS_MM = 8.0
TUBE_GAP_MM = 3.0
STRANDS = (6, 15)  # fibroglandular strands per subject (both breasts together)
STRAND_WIDTH_MM = (0.8, 1.6)  # 1–2 fine voxels at 0.833 mm; an acquisition voxel is ≥ 2.5 mm
STRAND_GAP_MM = 2.5  # a strand stops this far from an earlier one (they join, never merge)
STRAND_KEEP_OUT_MM = 5.0  # strands stay this far from the septum (one quick-profile voxel)
SEPTUM_WIDTH_MM = (1.0, 1.7)
SEPTUM_LENGTH_MM = (30.0, 50.0)
SEPTUM_PROTON = 0.3  # 1H intensity of the septum (fat: 1.0); its sodium is fat's exactly
SEPTUM_CLEARANCE_MM = 2.0  # fat wanted on either side of the septum when placing it
MISREGISTRATION_MM = 2.0  # largest 1H-to-sodium translation
STEP_MM = 0.25  # sampling of the strand and septum curves


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
                "breasts": breast_tissue, "chest_mm": chest,
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


def _septum_curve(rng: np.random.Generator, base: np.ndarray, breasts: np.ndarray,
                  y: np.ndarray, x: np.ndarray, voxel: tuple[float, float],
                  candidates: int = 64) -> tuple[np.ndarray, float]:
    """Samples ``(n, 2)`` mm of a gentle arc through the breast fat, and the septum's width.

    ``candidates`` random arcs (length, direction, curvature ≤ 1/50 mm⁻¹) centred in breast
    fat are scored by the share of their samples that keep :data:`SEPTUM_CLEARANCE_MM` of fat
    on both sides in the lesion-free map ``base``; the best is kept.
    """
    width = rng.uniform(*SEPTUM_WIDTH_MM)
    room = ndimage.distance_transform_edt((base == FAT) & breasts, sampling=voxel)
    need = width / 2 + SEPTUM_CLEARANCE_MM
    pool = np.flatnonzero(room >= min(need, 0.8 * room.max()))
    rows, cols = np.unravel_index(pool[rng.integers(pool.size, size=candidates)], base.shape)
    paths = _draw.arcs(np.column_stack([y[rows, 0], x[0, cols]]),
                       rng.uniform(0.0, np.pi, candidates),
                       rng.uniform(*SEPTUM_LENGTH_MM, candidates),
                       rng.uniform(-1.0 / 50.0, 1.0 / 50.0, candidates),
                       int(np.ceil(SEPTUM_LENGTH_MM[1] / STEP_MM)) + 1)
    score = (_draw.values_at(room, paths, voxel) >= need).mean(axis=1)
    return paths[int(np.argmax(score))], float(width)


def _strand_curves(rng: np.random.Generator, breasts: np.ndarray, chest: np.ndarray,
                   y: np.ndarray, x: np.ndarray, voxel: tuple[float, float]
                   ) -> list[np.ndarray]:
    """Sampled paths ``(n_i, 2)`` mm of Cooper's-ligament-like strands, chest → nipple/skin.

    Each path starts in the breast within 15 mm of the chest wall and follows the gradient of
    the distance from the chest, turned by a constant tilt (≤ 17°) and a slow sinusoidal
    wobble (≤ 17°, wavelength 15–40 mm), until it leaves the breast below the skin. Their
    number is drawn in :data:`STRANDS`; the caller ends a path where it meets an earlier one.
    """
    n = int(rng.integers(STRANDS[0], STRANDS[1] + 1))
    pool = np.flatnonzero(breasts & (chest <= 15.0))
    if pool.size == 0:
        pool = np.flatnonzero(breasts)
    rows, cols = np.unravel_index(pool[rng.integers(pool.size, size=n)], breasts.shape)
    tilt, wobble = rng.uniform(-0.3, 0.3, n), rng.uniform(0.0, 0.3, n)
    wavelength, phase = rng.uniform(15.0, 40.0, n), rng.uniform(0.0, 2 * np.pi, n)

    def turn(s_mm: float) -> np.ndarray:
        return tilt + wobble * np.sin(2 * np.pi * s_mm / wavelength + phase)

    return _draw.flow_paths(np.column_stack([y[rows, 0], x[0, cols]]),
                            np.gradient(chest, *voxel), breasts, voxel, turn=turn,
                            step_mm=STEP_MM, max_mm=150.0)


def _add_septum_and_strands(labels: np.ndarray, tissues: dict[int, Tissue],
                            rngs: tuple[np.random.Generator, np.random.Generator],
                            base: np.ndarray, breasts: np.ndarray, chest: np.ndarray,
                            y: np.ndarray, x: np.ndarray, voxel: tuple[float, float]
                            ) -> tuple[dict, list[dict], np.ndarray]:
    """Paint the 1H-only septum, then the thin strands, into the fat of ``labels``.

    Both are placed from the lesion-free map ``base`` and painted only where ``labels`` is
    still fat, so the tumours change them only where they overlap.
    """
    septum_rng, strand_rng = rngs
    path, width = _septum_curve(septum_rng, base, breasts, y, x, voxel)
    septum = _draw.curve_mask(path, width / 2, labels.shape, voxel) & (labels == FAT) & breasts
    label = max(tissues) + 1
    tissues[label] = replace(tissues[FAT], name="septum", proton=SEPTUM_PROTON)
    labels[septum] = label
    painted = _draw.values_at(septum, path, voxel) > 0
    record = {"label": label, "name": "septum", "width_mm": width,
              "length_mm": float(painted.sum() * np.linalg.norm(path[1] - path[0])),
              "centre_mm": (float(path[len(path) // 2, 0]), float(path[len(path) // 2, 1])),
              "proton": SEPTUM_PROTON}
    keep_out = ndimage.distance_transform_edt(~septum, sampling=voxel) <= STRAND_KEEP_OUT_MM
    allowed = (labels == FAT) & breasts & ~keep_out
    strand_mask, strands, kept = np.zeros(labels.shape, dtype=bool), [], []
    for curve in _strand_curves(strand_rng, breasts, chest, y, x, voxel):
        strand_width = strand_rng.uniform(*STRAND_WIDTH_MM)
        if kept:  # a strand ends where it meets an earlier one, so none is ever widened
            distance, _ = cKDTree(np.concatenate(kept)).query(curve)
            close = np.flatnonzero(distance < STRAND_GAP_MM)
            curve = curve[:close[0]] if close.size else curve
        if len(curve) * STEP_MM < 2.0:
            continue
        kept.append(curve)
        strand_mask |= _draw.curve_mask(curve, strand_width / 2, labels.shape, voxel) & allowed
        strands.append({"width_mm": float(strand_width),
                        "length_mm": float(STEP_MM * (len(curve) - 1)),
                        "start_mm": (float(curve[0, 0]), float(curve[0, 1]))})
    labels[strand_mask] = FIBROGLANDULAR
    return record, strands, strand_mask


def breast_subject(seed: int, *, n_tumours: int = 0, sodium_only: bool = False,
                   matrix: int = 384, fov_mm: float = 320.0, texture: bool = True) -> Subject:
    """A virtual prone breast slice: both breasts, chest wall, thorax, tumours and tubes.

    Parameters
    ----------
    seed : int
        Fully determines the subject; anatomy does not depend on ``n_tumours``.
    n_tumours : int
        Number of lesions (≥ 0), labelled ``"tumour_1"``, ``"tumour_2"``, …
    sodium_only : bool
        Make the last lesion invisible in 1H (its 1H intensity equals fibroglandular tissue's
        exactly, and in the 1H texture it shares fibroglandular tissue's field). Needs
        ``n_tumours ≥ 1``.
    matrix : int
        Grid size (``matrix × matrix``); the default 384 over 320 mm gives 0.833 mm voxels.
    fov_mm : float
        Square field of view in mm.
    texture : bool
        Add what removes the 1H prior's oracle (see the module docstring): sodium texture,
        sub-voxel fibroglandular strands, a 1H-only septum, an independent 1H texture and a
        0–2 mm 1H misregistration. ``False`` gives exactly the label-constant subject of
        earlier versions (same labels, tissues and ``proton``, ``tsc_texture=None``).

    Returns
    -------
    Subject
        ``kind="breast"``, ``labels`` int16 of shape ``(matrix, matrix)``: 0 air and lungs,
        1 ``"skin"``, 2 ``"fat"``, 3 ``"fibroglandular"``, 4 ``"muscle"``, 5 ``"heart"``,
        6 ``"cortical_bone"`` and 7 ``"marrow"`` (vertebra), then one label per lesion, then
        five tubes (``"tube_<c>mM"``, radius 8 mm, ≥ 3 mm from the body, the edge and each
        other, anterior of the chest), then (``texture=True``) ``"septum"``. ``proton`` is
        float32: the tissues' 1H intensities (times the 1H texture, then translated by the
        misregistration, when ``texture=True``) times a smooth bias within ±10 % (the bias
        is in the scanner frame: it is not translated). ``tsc_texture`` is float32 (mean 1
        per tissue) or ``None``. ``extra`` holds ``"lesions"`` (list of dicts: ``label``,
        ``name``, ``kind`` ``"visible"`` or ``"sodium_only"``, ``centre_mm = (y, x)``,
        ``diameter_mm`` (area-equivalent), ``tsc`` in mM (the lesion's mean), ``tsc_ratio``
        to fibroglandular), ``"bias"`` (float32, shape of ``labels``), ``"breast_size_mm"``
        (base width and projection of the image-left and image-right breast),
        ``"fgt_density"`` (target fibroglandular fraction of the inner breast),
        ``"fgt_fraction"`` (fibroglandular share of the breast tissue below the skin, before
        strands), ``"skin_thickness_mm"``, ``"septum"`` (dict: ``label``, ``name`` — the mask
        name for :meth:`Subject.mask` —, ``width_mm``, painted ``length_mm``, ``centre_mm``,
        ``proton``; ``None`` without texture), ``"strands"`` (list of dicts: ``width_mm``,
        ``length_mm`` of the path, ``start_mm``; empty without texture) and
        ``"misregistration_mm"`` (``(dy, dx)`` translation of the 1H image, ``(0, 0)``
        without texture); with texture also ``"strand_mask"`` (bool, the voxels the strands
        turned from fat to fibroglandular) and ``"proton_texture"`` (float32, the 1H texture
        in the sodium frame, before the translation).

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
    body, breasts, chest = geometry.pop("body"), geometry.pop("breasts"), geometry.pop("chest_mm")
    base = labels.copy() if texture else labels
    bias = _draw.bias_field(shape, anatomy_rng)
    top, chest_y = geometry.pop("band_y")  # tubes lie between the nipples' and the chest's level
    top = min(top + TUBE_RADIUS_MM, chest_y - 4 * TUBE_RADIUS_MM)
    lesions = _add_lesions(labels, tissues, lesion_rng, y, x, voxel, geometry.pop("inner"),
                           int(n_tumours), bool(sodium_only))
    tubes = _draw.add_tubes(labels, tissues, tube_rng, body, voxel, TUBE_CONCENTRATIONS,
                            TUBE_RADIUS_MM, gap_mm=TUBE_GAP_MM,
                            allowed=np.broadcast_to((y >= top) & (y <= chest_y), shape))
    extra = {"lesions": lesions, "bias": bias, **geometry, "septum": None, "strands": [],
             "misregistration_mm": (0.0, 0.0)}
    if not texture:
        proton = (lookup(labels, tissues, "proton") * bias).astype(np.float32)
        return Subject(kind="breast", seed=seed, labels=labels, tissues=tissues,
                       proton=proton, voxel_mm=voxel, tubes=tubes, extra=extra)
    # streams of their own (children 3–7 of the seed), so the features above are unchanged
    septum_rng, strand_rng, sodium_rng, proton_rng, shift_rng = [
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(8)[3:]]
    septum, strands, strand_mask = _add_septum_and_strands(
        labels, tissues, (septum_rng, strand_rng), base, breasts, chest, y, x, voxel)
    sodium_texture = tsc_texture(labels, tissues, voxel, sodium_rng, groups={"septum": "fat"})
    shared = {"septum": "fat"}
    if sodium_only:  # the hidden lesion must not show through the 1H texture either
        shared[lesions[-1]["name"]] = "fibroglandular"
    proton_texture = tsc_texture(labels, tissues, voxel, proton_rng, table=PROTON_TEXTURE,
                                 groups=shared)
    shift = random_shift_mm(shift_rng, MISREGISTRATION_MM)
    registered = lookup(labels, tissues, "proton") * proton_texture
    proton = (misregister(registered, shift, voxel) * bias).astype(np.float32)
    extra.update(septum=septum, strands=strands, misregistration_mm=shift,
                 strand_mask=strand_mask, proton_texture=proton_texture)
    return Subject(kind="breast", seed=seed, labels=labels, tissues=tissues, proton=proton,
                   voxel_mm=voxel, tubes=tubes, extra=extra, tsc_texture=sodium_texture)
