"""Virtual calves: a procedural mid-calf cross-section with reference tubes.

The leg outline is an ellipse whose radius carries a smooth low-order Fourier perturbation and
which narrows anteriorly (the shin). Inside it lie skin, subcutaneous fat whose thickness varies
smoothly around the leg, and four muscle compartments — anterior, lateral, deep posterior and
superficial posterior (gastrocnemius–soleus) — separated by thin fat septa: the interosseous
membrane between tibia and fibula, the anterior and posterior intermuscular septa from the
fibula and the transverse septum behind the deep flexors. The tibia (rounded triangle, crest
anterior, just under the skin anteromedially) and the fibula (posterolateral) have a cortex and
marrow. Vessels: anterior tibial, posterior tibial and peroneal bundles near the bones, great
and small saphenous veins in the fat. Five tubes of known sodium concentration lie around the
leg, as in the calf paper.

With ``texture=True`` (the default) no tissue is a flat patch and the 1H image is no oracle for a
1H-guided method: the sodium TSC varies within each tissue
(:func:`~nacode.anatomy.texture.tsc_texture`, the four muscle compartments sharing muscle's
field), the 1H image has its own independent texture and is translated by 0–2 mm against the
sodium one (:func:`~nacode.anatomy.texture.misregister`). These come from streams of their own
(children of the seed), so ``texture=False`` reproduces the label-constant subject bit for bit.

Conventions: arrays are 2D, indexed ``(y, x)``, row 0 anterior and column 0 the subject's right
(radiological display); a right leg therefore has its medial side towards larger ``x``. Voxel
``i`` of ``N`` is centred at ``(i - N // 2) * voxel`` mm from the grid centre, the origin of
:attr:`~nacode.anatomy.subject.Tube.centre_mm` ``= (y, x)``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from nacode.anatomy import _draw
from nacode.anatomy.subject import AIR, Subject, Tissue, lookup
from nacode.anatomy.texture import (
    PROTON_TEXTURE,
    TEXTURE,
    misregister,
    random_shift_mm,
    tsc_texture,
)
from nacode.anatomy.tissues import TUBE_CONCENTRATIONS, draw

#: Muscle compartments, in label order: ``subject.mask(*MUSCLES)`` is all muscle.
MUSCLES = ("muscle_anterior", "muscle_lateral", "muscle_deep_posterior",
           "muscle_superficial_posterior")
BONES = ("tibia_cortex", "tibia_marrow", "fibula_cortex", "fibula_marrow")
LEG_WIDTH_MM = (95.0, 135.0)  # left–right extent of the leg
LEG_DEPTH_MM = (85.0, 125.0)  # antero-posterior extent
SKIN_MM = (1.5, 2.5)
FAT_MM = (3.0, 15.0)  # local subcutaneous fat thickness is clipped to this range
TUBE_RADIUS_MM = 9.0
TUBE_GAP_MM = 4.0  # least distance of a tube to the skin, the FOV edge and other tubes
SEPTUM_VOXELS = 2
MISREGISTRATION_MM = 2.0  # largest 1H-to-sodium translation (texture=True)
#: The bones' texture types (the texture tables name tissue kinds, not these labels).
BONE_TYPES = {"tibia_cortex": "cortical_bone", "fibula_cortex": "cortical_bone",
              "tibia_marrow": "marrow", "fibula_marrow": "marrow"}
SKIN, FAT, MUSCLE0 = 1, 2, 3
TIBIA_CORTEX, TIBIA_MARROW, FIBULA_CORTEX, FIBULA_MARROW, VESSEL = 7, 8, 9, 10, 11


def _outline(rng: np.random.Generator) -> tuple[float, float, float, _draw.Profile]:
    """Semi-axes ``a`` (medial), ``b`` (anterior), taper and profile of the leg outline."""
    width = rng.uniform(*LEG_WIDTH_MM)
    depth = float(np.clip(width * rng.uniform(0.8, 0.97), *LEG_DEPTH_MM))
    taper = rng.uniform(0.05, 0.15)
    profile = _draw.fourier_profile(rng, orders=(2, 3, 4), amplitude=0.06)
    theta = np.linspace(0.0, 2 * np.pi, 2048, endpoint=False)
    rho = profile(theta)
    b = depth / np.ptp(rho * np.sin(theta))
    m = rho * np.cos(theta) * (1.0 - taper * rho * np.sin(theta))
    return width / np.ptp(m), b, taper, profile


def _star(m: np.ndarray, p: np.ndarray, centre: tuple[float, float], radius: float,
          lobes: float, angle: float) -> np.ndarray:
    """Rounded triangle about ``centre = (m, p)``: radius ``r (1 + lobes cos 3(φ - angle))``."""
    dm, dp = m - centre[0], p - centre[1]
    phi = np.arctan2(dp, dm)
    return np.hypot(dm, dp) <= radius * (1.0 + lobes * np.cos(3.0 * (phi - angle)))


def _place_bone(m: np.ndarray, p: np.ndarray, depth: np.ndarray, need: np.ndarray,
                centre: np.ndarray, radius: float, lobes: float,
                angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Bone mask, pushed towards the leg centre until its voxels are ``need`` mm deep."""
    for _ in range(8):
        bone = _star(m, p, (centre[0], centre[1]), radius, lobes, angle)
        deficit = float(np.max(need[bone] - depth[bone]))
        if deficit <= 0.0:
            break
        centre = centre - (deficit + 0.3) * centre / np.hypot(*centre)
    return bone, centre


def _compartments(m: np.ndarray, p: np.ndarray, muscle: np.ndarray, rng: np.random.Generator,
                  tib: np.ndarray, fib: np.ndarray, r_t: float, r_f: float,
                  angle_t: float) -> np.ndarray:
    """Compartment index per voxel (0 none, 1–4 in :data:`MUSCLES` order, -1 medial fat)."""
    dm, dp = m - fib[0], p - fib[1]
    alpha = np.mod(np.arctan2(dp, dm), 2 * np.pi)
    front, back = np.deg2rad(rng.uniform(115, 135)), np.deg2rad(rng.uniform(225, 245))
    lateral = (alpha >= front) & (alpha <= back)
    axis = (fib - tib) / np.hypot(*(fib - tib))
    normal = np.array([-axis[1], axis[0]]) * np.sign(axis[0])  # points anterior (p > 0)
    anterior = (m - tib[0]) * normal[0] + (p - tib[1]) * normal[1] > 0
    start = fib + np.array([r_f * rng.uniform(0.0, 0.4), -(r_f + rng.uniform(3.0, 6.0))])
    end = tib + np.array([r_t * rng.uniform(0.6, 0.9), -r_t * rng.uniform(0.7, 0.9) - 3.0])
    chord = end - start
    length = np.hypot(*chord)
    along = ((m - start[0]) * chord[0] + (p - start[1]) * chord[1]) / length**2
    across = ((p - start[1]) * chord[0] - (m - start[0]) * chord[1]) / length  # + anterior
    bow = rng.uniform(8.0, 14.0)
    deep = across > -4.0 * bow * along * (1.0 - along)
    index = np.where(anterior, 1, np.where(deep, 3, 4))
    index = np.where(lateral, 2, index)
    border = angle_t - 2 * np.pi / 3  # the tibia's medial border, where the soleus starts
    medial = (m > tib[0]) & ((p - tib[1]) * np.cos(border) > (m - tib[0]) * np.sin(border))
    index = np.where(medial & ~lateral, -1, index)
    return np.where(muscle, index, 0)


def _septa(index: np.ndarray) -> np.ndarray:
    """Voxels on the boundary between two different compartments (a 2-voxel band)."""
    size = SEPTUM_VOXELS + 1
    high = ndimage.maximum_filter(np.where(index > 0, index, 0), size=size)
    low = ndimage.minimum_filter(np.where(index > 0, index, 99), size=size)
    return (index > 0) & ((high != index) | (low != index))


def _vessel_in_fat(m: np.ndarray, p: np.ndarray, depth: np.ndarray, psi: float,
                   target: float) -> np.ndarray:
    """``(m, p)`` of the outermost point on the ray at angle ``psi`` with depth ≥ ``target``."""
    r = np.arange(0.0, 100.0, 0.2)
    pm, pp = r * np.cos(psi), r * np.sin(psi)
    iy = np.abs(p[:, 0][:, None] - pp[None, :]).argmin(axis=0)
    ix = np.abs(m[0, :][:, None] - pm[None, :]).argmin(axis=0)
    deep = np.flatnonzero(depth[iy, ix] >= target)
    k = deep.max() if deep.size else 0
    return np.array([pm[k], pp[k]])


def _with_bones(table: dict) -> dict:
    """A texture table extended by the calf's bone names (:data:`BONE_TYPES`)."""
    return {**table, **{name: table[kind] for name, kind in BONE_TYPES.items()}}


def calf_subject(seed: int, *, matrix: int = 320, fov_mm: float = 180.0,
                 texture: bool = True) -> Subject:
    """A virtual mid-calf cross-section with four muscle compartments, bones and tubes.

    Parameters
    ----------
    seed : int
        Fully determines the subject: its tissue TSC draws, anatomy, bias field and tubes.
    matrix : int
        Grid size; the grid is ``matrix × matrix`` fine voxels. The default 320 over 180 mm
        gives 0.5625 mm voxels, 4 times finer than the calf study's 80 × 80 acquisition.
    fov_mm : float
        Square field of view in mm.
    texture : bool
        Sodium texture within each tissue, an independent 1H texture and a 0–2 mm 1H
        misregistration (see the module docstring). ``False`` gives the label-constant subject
        of earlier versions (same labels, tissues and ``proton``, ``tsc_texture=None``).

    Returns
    -------
    Subject
        ``kind="calf"``, ``labels`` int16 of shape ``(matrix, matrix)``: 0 air, 1 ``"skin"``,
        2 ``"fat"``, 3–6 :data:`MUSCLES`, 7–10 :data:`BONES` (``"tibia_cortex"``,
        ``"tibia_marrow"``, ``"fibula_cortex"``, ``"fibula_marrow"``), 11 ``"vessel"``, then
        12–16 the tubes (``"tube_<c>mM"``, radius 9 mm, ≥ 4 mm from the skin, the edge and
        each other). ``proton`` is float32, the tissues' 1H intensities times a smooth bias
        within ±10 %. ``extra`` holds ``"side"`` (``"right"`` or ``"left"`` leg),
        ``"leg_size_mm"`` (antero-posterior, left–right extent), ``"skin_thickness_mm"``,
        ``"fat_thickness_mm"`` (mean around the leg) and ``"fat_thickness_range_mm"``,
        ``"bias"`` (float32, shape of ``labels``), ``"vessels"`` (list of dicts with
        ``name``, ``centre_mm = (y, x)``, ``radius_mm``) and ``"tibia"``, ``"fibula"``
        (dicts with ``centre_mm``, ``radius_mm``, ``cortex_mm``), ``"misregistration_mm"``
        (``(dy, dx)`` of the 1H image, zeros without texture) and, with texture,
        ``"proton_texture"`` (float32, the 1H image's own texture before the shift).
        ``tsc_texture`` is float32, mean 1 in each tissue (``None`` without texture).

    Raises
    ------
    ValueError
        If ``matrix`` is not an integer ≥ 32, ``fov_mm`` is not positive, or the leg or the
        tubes do not fit the field of view.
    """
    if int(matrix) != matrix or matrix < 32:
        raise ValueError(f"matrix must be an integer ≥ 32 (voxels per side), got {matrix!r}")
    if not (np.isfinite(fov_mm) and fov_mm > 0):
        raise ValueError(f"fov_mm must be a positive field of view in mm, got {fov_mm!r}")
    rng = np.random.default_rng(seed)
    shape, voxel = (int(matrix), int(matrix)), (fov_mm / matrix, fov_mm / matrix)
    muscle = draw("muscle", rng)
    tissues: dict[int, Tissue] = {0: AIR, SKIN: draw("skin", rng), FAT: draw("fat", rng)}
    for i, name in enumerate(MUSCLES):
        offset = 0.5 * rng.standard_normal()
        tissues[MUSCLE0 + i] = draw("muscle", rng, rename=name,
                                    tsc=max(muscle.tsc + offset, 0.0))
    cortex, marrow = draw("cortical_bone", rng), draw("marrow", rng)
    for label, tissue, name in zip((TIBIA_CORTEX, TIBIA_MARROW, FIBULA_CORTEX, FIBULA_MARROW),
                                   (cortex, marrow, cortex, marrow), BONES, strict=True):
        tissues[label] = replace(tissue, name=name)
    tissues[VESSEL] = draw("vessel", rng)

    # leg frame: m towards the medial side, p anterior, both in mm from the leg centre
    side = 1.0 if rng.random() < 0.5 else -1.0  # +1: right leg (medial = larger x)
    centre = rng.uniform(-3.0, 3.0, size=2)  # (y, x) of the leg centre
    y, x = _draw.grid_mm(shape, voxel)
    m, p = side * (x - centre[1]), -(y - centre[0])
    a, b, taper, profile = _outline(rng)
    warp = np.maximum(1.0 - taper * p / b, 0.3)
    r, edge = _draw.star_radius(m / warp, p, a, b, profile)
    body = r <= edge
    if body[[0, -1], :].any() or body[:, [0, -1]].any():
        raise ValueError(f"the leg does not fit a {fov_mm} mm field of view: use ≥ 160 mm")
    psi = np.arctan2(p, m)

    skin = _draw.shell(rng.uniform(*SKIN_MM), voxel)
    fat_profile = _draw.fourier_profile(rng, orders=(1, 2, 3), amplitude=0.4)
    fat_mean = rng.uniform(3.5, 10.0)
    veins = {"great_saphenous": (np.deg2rad(rng.uniform(-45, -10)), rng.uniform(1.5, 2.5)),
             "small_saphenous": (np.deg2rad(rng.uniform(-100, -80)), rng.uniform(1.0, 1.75))}

    def fat_mm(angle: np.ndarray) -> np.ndarray:
        thickness = np.clip(fat_mean * fat_profile(angle), *FAT_MM)
        for vein_angle, radius in veins.values():  # room for the veins in the fat
            gap = np.angle(np.exp(1j * (angle - vein_angle)))
            bump = np.cos(np.clip(gap / 0.35, -1, 1) * np.pi / 2) ** 2
            thickness = np.maximum(thickness, (2 * radius + 1.5) * bump)
        return thickness

    depth = _draw.depth_mm(body, voxel)
    fat_local = fat_mm(psi)
    in_muscle = body & (depth >= skin + fat_local)

    # bones: tibia crest a few mm under the anterior skin, fibula posterolateral in muscle
    r_t, lobes_t = a * rng.uniform(0.18, 0.22), rng.uniform(0.1, 0.16)
    angle_t = np.pi / 2 + rng.uniform(-0.15, 0.15)
    m_t = a * rng.uniform(0.15, 0.3)
    column = np.abs(m[0] - m_t).argmin()
    front = p[body[:, column], 0].max()
    tib = np.array([m_t, front - skin - rng.uniform(2.0, 5.0) - r_t * (1 + lobes_t)])
    tibia, tib = _place_bone(m, p, depth, np.full(shape, skin + 2.0), tib, r_t, lobes_t,
                             angle_t)
    r_f, lobes_f = a * rng.uniform(0.1, 0.125), rng.uniform(0.04, 0.1)
    fib = np.array([-a * rng.uniform(0.32, 0.45), tib[1] - b * rng.uniform(0.4, 0.55)])
    fibula, fib = _place_bone(m, p, depth, skin + fat_local + 3.0, fib, r_f, lobes_f,
                              rng.uniform(0, 2 * np.pi))
    thickness = {"tibia": rng.uniform(3.0, 5.0), "fibula": rng.uniform(2.0, 2.8)}

    index = _compartments(m, p, in_muscle, rng, tib, fib, r_t, r_f, angle_t)
    for k in range(1, len(MUSCLES) + 1):
        stray = (index == k) & ~_draw.largest_component(index == k)
        index[stray] = -1
    labels = np.zeros(shape, dtype=np.int16)
    labels[body] = FAT
    labels[index > 0] = MUSCLE0 - 1 + index[index > 0]
    labels[_septa(index)] = FAT
    labels[body & (depth < skin)] = SKIN
    bones = {}
    for name, bone, c, radius, cortex_label in (("tibia", tibia, tib, r_t, TIBIA_CORTEX),
                                               ("fibula", fibula, fib, r_f, FIBULA_CORTEX)):
        inner = _draw.depth_mm(bone, voxel) >= _draw.shell(thickness[name], voxel)
        labels[bone] = cortex_label
        labels[inner] = cortex_label + 1
        bones[name] = {"centre_mm": (float(centre[0] - c[1]), float(centre[1] + side * c[0])),
                       "radius_mm": float(radius), "cortex_mm": float(thickness[name])}

    # vessels: (m, p) centres and radii
    axis = (fib - tib) / np.hypot(*(fib - tib))
    normal = np.array([-axis[1], axis[0]]) * np.sign(axis[0])
    vessels = {
        "anterior_tibial": (tib + 0.45 * (fib - tib) + normal * 3.0, rng.uniform(1.0, 1.5)),
        "posterior_tibial": (tib + np.array([-0.2 * r_t, -(r_t + rng.uniform(4.5, 6.5))]),
                             rng.uniform(1.25, 2.0)),
        "peroneal": (fib + np.array([0.6 * r_f, -(r_f + rng.uniform(3.0, 4.5))]),
                     rng.uniform(1.0, 1.5)),
    }
    for name, (vein_angle, radius) in veins.items():
        target = skin + fat_mm(np.array(vein_angle)) / 2
        vessels[name] = (_vessel_in_fat(m, p, depth, vein_angle, float(target)), radius)
    records = []
    for name, (c, radius) in vessels.items():
        labels[_draw.disc(p, m, (c[1], c[0]), radius)] = VESSEL
        records.append({"name": name, "radius_mm": float(radius),
                        "centre_mm": (float(centre[0] - c[1]), float(centre[1] + side * c[0]))})

    for label in range(MUSCLE0, MUSCLE0 + len(MUSCLES)):  # one region each, ≥ 2 voxels thick
        region = labels == label
        labels[region & ~_draw.largest_component(ndimage.binary_opening(region))] = FAT
    tubes = _draw.add_tubes(labels, tissues, rng, body, voxel, TUBE_CONCENTRATIONS,
                            TUBE_RADIUS_MM, gap_mm=TUBE_GAP_MM)
    bias = _draw.bias_field(shape, rng)
    registered = lookup(labels, tissues, "proton")
    sodium_texture, shift, proton_texture = None, (0.0, 0.0), None
    if texture:  # streams of their own, so the anatomy above is the same with and without
        sodium_rng, proton_rng, shift_rng = [
            np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(3)]
        sodium_texture = tsc_texture(labels, tissues, voxel, sodium_rng,
                                     table=_with_bones(TEXTURE))
        proton_texture = tsc_texture(labels, tissues, voxel, proton_rng,
                                     table=_with_bones(PROTON_TEXTURE))
        shift = random_shift_mm(shift_rng, MISREGISTRATION_MM)
        registered = misregister(registered * proton_texture, shift, voxel)
    proton = (registered * bias).astype(np.float32)
    angles = np.linspace(-np.pi, np.pi, 720, endpoint=False)
    fat_all = fat_mm(angles)
    rows, cols = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
    extra = {
        "side": "right" if side > 0 else "left",
        "leg_size_mm": (float(np.ptp(rows) + 1) * voxel[0], float(np.ptp(cols) + 1) * voxel[1]),
        "skin_thickness_mm": float(skin),
        "fat_thickness_mm": float(fat_all.mean()),
        "fat_thickness_range_mm": (float(fat_all.min()), float(fat_all.max())),
        "bias": bias, "vessels": records, **bones, "misregistration_mm": shift,
    }
    if texture:
        extra["proton_texture"] = proton_texture
    return Subject(kind="calf", seed=seed, labels=labels, tissues=tissues, proton=proton,
                   voxel_mm=voxel, tubes=tubes, extra=extra, tsc_texture=sodium_texture)
