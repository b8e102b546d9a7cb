"""Virtual brains: the MNI152 2009a anatomy, smoothly deformed per subject, with tubes.

Each subject is the MNI152 template (:func:`nacode.anatomy.mni152.load_mni152`) pulled through
one random, smooth coordinate map — a global anisotropic scaling, a small rotation and a
Gaussian-filtered displacement field, all about the brain's centre — so that 13 subjects share
real anatomy yet differ. Every fine voxel inside the warped brain mask gets the tissue (GM, WM
or CSF) with the largest warped probability: fine voxels are pure and partial volume only
arises when an acquisition averages them. Calibration tubes (agar, known sodium) stand along
z on both sides of the head, as in the brain paper.

With ``texture=True`` (the default) the sodium TSC also varies within GM, WM and CSF
(:func:`~nacode.anatomy.texture.tsc_texture`, on the fine grid, before the acquisition's partial
volume), and the 1H image — the warped T1 template, whose contrast and texture are its own — is
translated by 0–2 mm against the sodium one, as between two scans of a subject who moved. Both
come from streams of their own (children of the seed): ``texture=False`` gives the same anatomy.

Conventions: arrays are indexed ``(x, y, z)`` in RAS+ voxel order like the templates, on a
cubic grid of :data:`FOV_MM` per side for every subject; voxel ``i`` of an axis with ``N``
(even) voxels is centred at ``(i - N / 2) * voxel_mm`` mm from the grid centre — the origin of
the centred FFT/NUFFT and of :attr:`~nacode.anatomy.subject.Tube.centre_mm`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import ndimage

from nacode.anatomy.mni152 import MNI152, RESOLUTIONS_MM, load_mni152
from nacode.anatomy.subject import AIR, Subject, Tissue, Tube
from nacode.anatomy.texture import misregister, random_shift_mm, tsc_texture
from nacode.anatomy.tissues import draw, tube

BRAIN_TISSUES = ("GM", "WM", "CSF")
SCALING_RANGE = (0.92, 1.08)  # per-axis scaling of the subject relative to the template
ROTATION_MAX_DEG = 4.0  # per-axis rotation, uniform in ±this
CORRELATION_MM = (15.0, 20.0)  # correlation length of the displacement field
PEAK_DISPLACEMENT_MM = (2.0, 4.0)  # maximum |displacement| of the smooth field
FIELD_SPACING_MM = 4.0  # node spacing of the displacement field (independent of voxel_mm)
#: (side, concentration in mM, y offset from the brain centre in mm); side -1 = left (x < 0).
TUBE_LAYOUT = ((-1, 25.0, -22.0), (-1, 75.0, 22.0), (1, 50.0, -22.0), (1, 100.0, 22.0))
TUBE_RADIUS_MM = 7.0
TUBE_LENGTH_MM = 64.0
TUBE_GAP_MM = 6.0  # minimum distance between a tube and the brain mask
GRID_MARGIN_MM = 8.0  # minimum distance between a tube and the grid's edge
FOV_MM = 240.0  # side of the cubic grid of every subject (a 4 mm acquisition: 60³)
MISREGISTRATION_MM = 2.0  # largest 1H-to-sodium translation (texture=True)


@lru_cache(maxsize=2)
def _templates(voxel_mm: int) -> MNI152:
    """The templates at ``voxel_mm`` (cached, made read-only so no subject can alter them)."""
    templates = load_mni152(voxel_mm)
    linear = templates.affine[:3, :3]
    if not np.allclose(linear, np.diag(np.diag(linear))) or np.diag(linear).min() <= 0:
        raise ValueError("expected an axis-aligned RAS+ template affine, got "
                         f"{templates.affine.tolist()}")
    for array in (templates.t1, templates.gm, templates.wm, templates.csf, templates.mask):
        array.flags.writeable = False
    return templates


@lru_cache(maxsize=2)
def _geometry(voxel_mm: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brain centroid (world mm) and the voxel box outside which every template is 0.

    Returns
    -------
    centre, low, high : ndarray, shape (3,)
        Centroid of the brain mask in MNI mm; lowest and highest template voxel index (one
        voxel of margin) of the support of the T1, GM, WM and mask templates.
    """
    templates = _templates(voxel_mm)
    centroid = np.argwhere(templates.mask).mean(axis=0)
    centre = templates.affine[:3, :3] @ centroid + templates.affine[:3, 3]
    support = (templates.t1 > 0) | (templates.gm > 0) | (templates.wm > 0) | templates.mask
    inside = np.argwhere(support)
    return centre, inside.min(axis=0) - 1.0, inside.max(axis=0) + 1.0


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation matrix ``Rz @ Ry @ Rx`` for angles (degrees) about x, y and z."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _linear_weights(position: np.ndarray, n: int) -> np.ndarray:
    """Matrix, shape (len(position), n), of linear interpolation at fractional ``position``."""
    base = np.clip(np.floor(position).astype(int), 0, n - 2)
    frac = position - base
    weights = np.zeros((position.size, n))
    rows = np.arange(position.size)
    weights[rows, base] = 1.0 - frac
    weights[rows, base + 1] = frac
    return weights


def _source_coordinates(templates: MNI152, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Draw one subject's deformation and return, per output voxel, its template voxel.

    The subject maps a template point ``t`` (world mm) to ``c + R S (t - c)`` plus a smooth
    displacement; the pull-back used for resampling is
    ``t = c + S⁻¹ Rᵀ (w - c) + u(w)`` for every output point ``w``. The field ``u`` lives on a
    fixed 4 mm lattice in world coordinates, so a seed gives the same anatomy at 1 and 2 mm.

    Returns
    -------
    coords : ndarray, shape (3, X, Y, Z), float64
        Template voxel coordinates (fractional) of each output voxel.
    info : dict
        ``scaling``, ``rotation_deg`` (tuples of 3 floats), ``max_displacement_mm`` and
        ``correlation_mm`` (floats).
    """
    scaling = rng.uniform(*SCALING_RANGE, size=3)
    angles = rng.uniform(-ROTATION_MAX_DEG, ROTATION_MAX_DEG, size=3)
    correlation = float(rng.uniform(*CORRELATION_MM))
    peak = float(rng.uniform(*PEAK_DISPLACEMENT_MM))
    affine = templates.affine
    lo = affine[:3, 3] - 2 * FIELD_SPACING_MM
    extent = affine[:3, :3] @ (np.array(templates.shape) - 1.0)
    nodes = np.ceil(extent / FIELD_SPACING_MM).astype(int) + 5
    noise = rng.standard_normal((3, *nodes))
    sigma = correlation / 2.0 / FIELD_SPACING_MM
    field = np.stack([ndimage.gaussian_filter(n, sigma, mode="wrap") for n in noise])

    # u at the output voxels: separable linear interpolation of the lattice, axis by axis
    step = np.diag(affine)[:3]
    axes = [np.arange(n, dtype=float) for n in templates.shape]
    displacement = field
    for axis, index in enumerate(axes):
        weights = _linear_weights((affine[axis, 3] + step[axis] * index - lo[axis])
                                  / FIELD_SPACING_MM, nodes[axis])
        displacement = np.moveaxis(np.tensordot(weights, displacement, axes=(1, axis + 1)),
                                   0, axis + 1)

    # voxel-to-voxel pull-back: p ↦ A⁻¹ (c + S⁻¹ Rᵀ (A p + t - c) + u - t)
    centre = _geometry(int(templates.voxel_mm[0]))[0]
    pull = _rotation(angles).T / scaling[:, None]  # S⁻¹ Rᵀ (row i divided by s_i)
    linear = pull * step[None, :] / step[:, None]
    offset = (pull @ (affine[:3, 3] - centre) + centre - affine[:3, 3]) / step
    # scale so that the largest |u| over the template brain is the drawn peak
    norm = np.sqrt((displacement[:, templates.mask] ** 2).sum(axis=0)).max()
    coords = np.ascontiguousarray(displacement * (peak / norm / step)[:, None, None, None])
    for i in range(3):
        coords[i] += offset[i]
        for j, index in enumerate(axes):
            shape = [1, 1, 1]
            shape[j] = -1
            coords[i] += linear[i, j] * index.reshape(shape)
    info = {"scaling": tuple(float(s) for s in scaling),
            "rotation_deg": tuple(float(a) for a in angles),
            "max_displacement_mm": peak, "correlation_mm": correlation}
    return coords, info


def _place_tubes(mask: np.ndarray, world_axes: list[np.ndarray], centre: np.ndarray,
                 rng: np.random.Generator) -> list[tuple[float, np.ndarray]]:
    """World centres (mm) of the tubes, each ≥ ``TUBE_GAP_MM`` + one voxel from the mask."""
    step = float(world_axes[0][1] - world_axes[0][0])
    clearance = TUBE_GAP_MM + step + TUBE_RADIUS_MM
    tubes = []
    for side, concentration, dy in TUBE_LAYOUT:
        cy = centre[1] + dy + rng.uniform(-3.0, 3.0)
        cz = centre[2] + rng.uniform(-3.0, 3.0)
        near_y = np.abs(world_axes[1] - cy) <= TUBE_RADIUS_MM + TUBE_GAP_MM + step
        near_z = np.abs(world_axes[2] - cz) <= TUBE_LENGTH_MM / 2 + TUBE_GAP_MM + step
        slab = mask[:, near_y][:, :, near_z].any(axis=(1, 2))
        if not slab.any():  # no brain beside this tube: keep clear of the whole mask
            slab = mask.any(axis=(1, 2))
        xs = world_axes[0][slab]
        edge = xs.max() if side > 0 else xs.min()
        cx = edge + side * (clearance + rng.uniform(0.0, 3.0))
        tubes.append((concentration, np.array([cx, cy, cz])))
    return tubes


def _padding(shape: tuple[int, ...], world_axes: list[np.ndarray], step: float,
             tubes: list[tuple[float, np.ndarray]], factor: int) -> list[tuple[int, int]]:
    """Zero padding per axis so tubes fit with margin and the grid is :data:`FOV_MM` per side.

    Raises
    ------
    ValueError
        If the anatomy and tubes do not fit in the fixed field of view.
    """
    half = np.array([TUBE_RADIUS_MM, TUBE_RADIUS_MM, TUBE_LENGTH_MM / 2]) + GRID_MARGIN_MM
    centres = np.array([c for _, c in tubes])
    pads = []
    for axis, n in enumerate(shape):
        edge_lo = world_axes[axis][0] - step / 2
        edge_hi = world_axes[axis][-1] + step / 2
        lo = max(0, math.ceil((edge_lo - (centres[:, axis].min() - half[axis])) / step))
        hi = max(0, math.ceil((centres[:, axis].max() + half[axis] - edge_hi) / step))
        target = round(FOV_MM / step)
        if target % (2 * factor) or n + lo + hi > target:
            raise ValueError(f"the {FOV_MM:g} mm grid cannot hold this subject along axis "
                             f"{axis} ({n + lo + hi} voxels of {step:g} mm, or not a multiple "
                             f"of 2 x {factor})")
        extra = target - n - lo - hi
        before = min(max(extra // 2 - lo, 0), extra)  # centre the template where possible
        pads.append((lo + before, hi + extra - before))
    return pads


def brain_subject(seed: int, *, voxel_mm: int = 2, acquisition_mm: float = 4.0,
                  texture: bool = True) -> Subject:
    """A virtual brain: deformed MNI152 anatomy, GM/WM/CSF labels and calibration tubes.

    Parameters
    ----------
    seed : int
        Fully determines the subject (tissue TSC draws, deformation, tube jitter).
    voxel_mm : {1, 2}
        Isotropic fine-grid voxel size in mm (the MNI152 template grids).
    acquisition_mm : float
        Voxel size in mm of the acquisition to be simulated; every axis is padded to a multiple
        of ``round(acquisition_mm / voxel_mm)`` voxels so block averaging is exact.
    texture : bool
        Sodium texture within GM, WM and CSF and a 0–2 mm 1H misregistration (see the module
        docstring). ``False``: labels, tissues and ``proton`` of earlier versions,
        ``tsc_texture=None``.

    Returns
    -------
    Subject
        ``kind="brain"``. ``labels`` (int16, shape (X, Y, Z), RAS+): 0 ``"air"``, 1 ``"GM"``,
        2 ``"WM"``, 3 ``"CSF"``, then one label per tube (tissue ``tube_<c>mM``). ``proton``
        (float32, [0, 1]): the warped T1 template (skull-stripped brain) with the tubes at
        the tube tissue's intensity. ``tubes``: four cylinders along z, radius 7 mm, length
        64 mm, 25 and 75 mM left (x < 0), 50 and 100 mM right. ``extra`` holds
        ``"brain_mask"`` (bool, shape (X, Y, Z)), ``"probabilities"`` (dict ``"GM"``,
        ``"WM"``, ``"CSF"`` to float32 maps in [0, 1], zero outside the mask), ``"scaling"``
        and ``"rotation_deg"`` (3 floats each, about x, y, z), ``"max_displacement_mm"``,
        ``"correlation_mm"``, ``"tube_length_mm"``, ``"padding"`` (voxels added before and
        after, per axis), ``"affine"`` (4 × 4 voxel-to-MNI-mm of the padded grid) and
        ``"misregistration_mm"`` (the 1H image's translation, zeros without texture).
        ``tsc_texture``: float32, mean 1 in each of GM, WM and CSF (``None`` without texture).

    Raises
    ------
    ValueError
        If ``voxel_mm`` is not 1 or 2, or ``acquisition_mm`` is not a positive number.

    Notes
    -----
    The deformation draws, per axis, a scaling in [0.92, 1.08] and a rotation in ±4°, then a
    displacement field: white noise on a 4 mm lattice filtered with a Gaussian of σ = half the
    correlation length (15–20 mm), scaled so that its largest magnitude over the brain is
    2–4 mm. All of it is composed into one coordinate map and each template (T1, GM, WM,
    mask) is resampled once, linearly. The warped mask is thresholded at 0.5; inside it
    CSF = clip(1 − GM − WM, 0, 1), as in :func:`~nacode.anatomy.mni152.load_mni152`. The
    grid is the template's, zero-padded to a cube of 240 mm (the same for every subject) with
    the tubes at least 8 mm inside it; its side is a multiple of twice the acquisition block.
    Tubes keep at least 6 mm plus one voxel from the brain mask. Generation takes about 0.3 s
    at 2 mm and 3 s at 1 mm on one core once the templates are cached (loading them takes a
    few seconds).
    """
    if voxel_mm not in RESOLUTIONS_MM or isinstance(voxel_mm, bool):
        raise ValueError(f"voxel_mm must be one of {RESOLUTIONS_MM} (the MNI152 template "
                         f"grids, in mm), got {voxel_mm!r}")
    if not (np.isfinite(acquisition_mm) and acquisition_mm > 0):
        raise ValueError(f"acquisition_mm must be a positive voxel size in mm, "
                         f"got {acquisition_mm!r}")
    voxel_mm = int(voxel_mm)
    factor = max(1, round(acquisition_mm / voxel_mm))
    rng = np.random.default_rng(seed)
    brain_tissues = [draw(name, rng) for name in BRAIN_TISSUES]
    templates = _templates(voxel_mm)
    coords, info = _source_coordinates(templates, rng)

    _, low, high = _geometry(voxel_mm)
    near = np.all((coords >= low[:, None, None, None]) & (coords <= high[:, None, None, None]),
                  axis=0)  # elsewhere every template is exactly 0
    points = coords[:, near]
    del coords

    def warp(volume: np.ndarray) -> np.ndarray:
        out = np.zeros(near.shape, dtype=np.float32)
        out[near] = ndimage.map_coordinates(volume, points, order=1, mode="constant",
                                            output=np.float32)
        return out

    mask_prob = warp(templates.mask.astype(np.float32))
    mask = mask_prob >= 0.5
    gm, wm = warp(templates.gm) * mask, warp(templates.wm) * mask
    csf = np.clip(mask - gm - wm, 0.0, 1.0)  # the binary warped mask, as in load_mni152
    labels = np.where((gm >= wm) & (gm >= csf), 1, np.where(wm >= csf, 2, 3))
    labels = labels.astype(np.int16) * mask
    proton = np.clip(warp(templates.t1), 0.0, 1.0)

    affine = templates.affine
    world_axes = [affine[a, a] * np.arange(n) + affine[a, 3] for a, n in enumerate(mask.shape)]
    centre = _geometry(voxel_mm)[0]
    tubes = _place_tubes(mask, world_axes, centre, rng)
    pads = _padding(mask.shape, world_axes, float(voxel_mm), tubes, factor)
    labels, proton, mask, gm, wm, csf = (np.pad(a, pads) for a in
                                         (labels, proton, mask, gm, wm, csf))
    padded = affine.copy()
    padded[:3, 3] -= affine[:3, :3] @ np.array([lo for lo, _ in pads], dtype=float)
    world_axes = [padded[a, a] * np.arange(n) + padded[a, 3] for a, n in enumerate(mask.shape)]
    grid_centre = padded[:3, :3] @ (np.array(mask.shape) // 2) + padded[:3, 3]

    tissues: dict[int, Tissue] = {0: AIR, **dict(enumerate(brain_tissues, start=1))}
    tube_records = []
    for label, (concentration, world) in enumerate(tubes, start=len(tissues)):
        tissues[label] = tube(concentration)
        disc = ((world_axes[0][:, None] - world[0]) ** 2
                + (world_axes[1][None, :] - world[1]) ** 2) <= TUBE_RADIUS_MM**2
        rod = np.abs(world_axes[2] - world[2]) <= TUBE_LENGTH_MM / 2
        inside = disc[:, :, None] & rod[None, None, :]
        labels[inside] = label
        proton[inside] = tissues[label].proton
        tube_records.append(Tube(label=label, concentration=concentration,
                                 centre_mm=tuple(float(v) for v in world - grid_centre),
                                 radius_mm=TUBE_RADIUS_MM))

    voxel = (float(voxel_mm),) * 3
    sodium_texture, shift = None, (0.0, 0.0, 0.0)
    if texture:  # streams of their own, so the anatomy above is the same with and without
        sodium_rng, shift_rng = [np.random.default_rng(child)
                                 for child in np.random.SeedSequence(seed).spawn(2)]
        sodium_texture = tsc_texture(labels, tissues, voxel, sodium_rng)
        shift = random_shift_mm(shift_rng, MISREGISTRATION_MM, ndim=3)
        proton = misregister(proton, shift, voxel)
    extra = {"brain_mask": mask, "probabilities": {"GM": gm, "WM": wm, "CSF": csf},
             **info, "tube_length_mm": TUBE_LENGTH_MM, "padding": tuple(pads),
             "affine": padded, "misregistration_mm": shift}
    return Subject(kind="brain", seed=seed, labels=labels, tissues=tissues,
                   proton=proton.astype(np.float32), voxel_mm=voxel,
                   tubes=tuple(tube_records), extra=extra, tsc_texture=sodium_texture)
