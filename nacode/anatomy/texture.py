"""Within-tissue texture and 1H misregistration: no tissue is a flat, perfectly aligned patch.

A label map with one TSC per tissue makes every sodium edge a label edge, and a 1H image
drawn from the same labels shares every one of them; a method given that 1H image as a prior
(directional TV, DIP-Fusion) then holds an oracle. This module supplies what breaks it:

- :func:`tsc_texture`, a smooth multiplicative field per tissue type, ``1 + sd · f`` with
  ``f`` a standardised Gaussian random field of correlation length ``ℓ`` (covariance
  ``exp(−r² / 2ℓ²)``), independent between tissue types and rescaled so that its mean over
  each tissue's voxels is exactly 1 (the tissue's mean TSC, the number a study reports, is
  unchanged);
- :func:`misregister` and :func:`random_shift_mm`, a sub-voxel translation of the 1H image
  against the sodium one, as between two scans of a subject who moved.

Where the sizes come from — honestly: no measurement of within-tissue sodium texture at the
fine-grid scale is used here. The relative SDs (5–15 %) and correlation lengths (2–10 mm) of
:data:`TEXTURE` are modelling assumptions chosen inside that range: more heterogeneous and
finer-grained for glandular tissue and tumours (lobules, ducts, stroma, necrosis at the mm
scale), coarser for fat lobules and muscle fascicles, thin-scale for skin (a 1.5–2 mm layer),
low for blood (well mixed) and bone. The one supporting figure is the calf paper's own spread
(``shared/papers/002_*``, Tables 4 and 5): in 10 healthy volunteers at 150 averages, muscle aTSC
was 21.5 ± 3.0 mM and skin 18.8 ± 5.1 mM (median ± interquartile range of the per-volunteer ROI
means), i.e. IQR/median ≈ 14 % and 27 %. That spread includes noise and between-subject
variation (and ROI means average voxel-level texture out), so it is an upper bound on the scale
of variation, not a measurement of texture; our 8 % (muscle) and 10 % (skin) stay below it.
For the brain the anchor is the between-subject SD of :data:`nacode.anatomy.tissues.TSC_SD`
(GM 7.5 %, WM 7.8 %, CSF 3.6 % of the mean); the within-tissue SDs (GM 7 %, WM 6 %, CSF 5 %,
the table's floor) are of that order, finer-grained in GM (cortical ribbon, 4 mm) than in WM.
:data:`PROTON_TEXTURE` (3–5 %, other lengths) is the 1H image's own, independent
heterogeneity, equally an assumption.

Fields are drawn on the whole grid, one per tissue type, from a stream derived from the caller's
``rng`` and the type's name, so a type's field does not depend on which other tissues are present.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from nacode.anatomy.subject import Tissue

Spec = tuple[float, float] | None

#: Sodium texture per tissue type: (relative SD, correlation length in mm); ``None`` = none.
#: Tissue names map to a type by exact name or by prefix (``tumour_1`` → ``tumour``,
#: ``tube_25mM`` → ``tube``, ``muscle_soleus`` → ``muscle``).
TEXTURE: dict[str, Spec] = {
    "fibroglandular": (0.12, 3.0),  # lobules, ducts and stroma interleave at the mm scale
    "fat": (0.08, 6.0),  # fat lobules of several mm, low TSC, moderate variation
    "skin": (0.10, 2.0),  # a 1.5–2 mm layer: variation at the scale of its thickness
    "muscle": (0.08, 8.0),  # fascicles: long-range, fairly uniform (calf IQR/median 14 %)
    "tumour": (0.15, 3.0),  # cellularity, oedema and necrosis: the most heterogeneous
    "heart": (0.05, 6.0),  # blood pool: well mixed
    "vessel": (0.05, 6.0),
    "marrow": (0.08, 4.0),  # trabecular spaces
    "cortical_bone": (0.05, 3.0),
    "GM": (0.07, 4.0),  # cortical layers and regions; between-subject SD 3/40 mM = 7.5 %
    "WM": (0.06, 6.0),  # tracts: coarser (between-subject SD 2.5/32 mM = 7.8 %)
    "CSF": (0.05, 8.0),  # free fluid, well mixed: the table's floor (between-subject 3.6 %)
    "air": None,
    "tube": None,  # NaCl in agar gel: homogeneous by construction
}

#: The 1H image's own texture: milder (3–5 %) and with other correlation lengths than
#: :data:`TEXTURE`, drawn from an independent stream (never the sodium field).
PROTON_TEXTURE: dict[str, Spec] = {
    "fibroglandular": (0.05, 5.0), "fat": (0.03, 4.0), "skin": (0.04, 3.0),
    "muscle": (0.04, 5.0), "tumour": (0.05, 5.0), "heart": (0.03, 4.0), "vessel": (0.03, 4.0),
    "marrow": (0.04, 6.0), "cortical_bone": (0.03, 5.0), "air": None, "tube": None,
}

#: Lowest value of the multiplicative field before the mean is restored.
FLOOR = 0.3


def texture_type(name: str, table: Mapping[str, Spec] = TEXTURE) -> str:
    """The key of ``table`` that tissue ``name`` belongs to (exact name, else longest prefix)."""
    if name in table:
        return name
    matches = [key for key in table if name.startswith(key + "_")]
    if not matches:
        raise ValueError(f"tissue {name!r} has no texture entry: expected a name or a "
                         f"'<type>_…' prefix among {sorted(table)}; add it to the table")
    return max(matches, key=len)


def gaussian_field(shape: tuple[int, ...], rng: np.random.Generator, length_mm: float,
                   voxel_mm: tuple[float, ...]) -> np.ndarray:
    """Standardised Gaussian random field, covariance ``exp(−r² / 2ℓ²)``, ``ℓ = length_mm``.

    White noise smoothed by a Gaussian of SD ``ℓ / √2`` (per axis in voxels: ``ℓ / √2 / d``),
    periodic boundaries, then shifted and scaled to zero mean and unit SD over the grid.

    Returns
    -------
    ndarray of float64, shape ``shape``
    """
    sigma = [length_mm / np.sqrt(2.0) / d for d in voxel_mm]
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / field.std()


def tsc_texture(labels: np.ndarray, tissues: Mapping[int, Tissue], voxel_mm: tuple[float, ...],
                rng: np.random.Generator, table: Mapping[str, Spec] = TEXTURE,
                groups: Mapping[str, str] | None = None) -> np.ndarray:
    """Multiplicative within-tissue texture, mean exactly 1 over each tissue's voxels.

    Parameters
    ----------
    labels : ndarray of int, shape (Ny, Nx) or (Nx, Ny, Nz)
        Label map on the fine grid.
    tissues : mapping of int to Tissue
        The subject's tissue table; names select the table entry (:func:`texture_type`).
    voxel_mm : tuple of float
        Voxel size in mm per axis.
    rng : numpy.random.Generator
        Source of the fields (one draw of a root seed; each type's field comes from a stream
        of that root and the type's name).
    table : mapping of str to (float, float) or None
        Relative SD and correlation length (mm) per type; ``None`` leaves a type untextured.
    groups : mapping of str to str, optional
        Tissues that share another tissue's texture: ``{"septum": "fat"}`` gives the septum's
        voxels fat's field *and* fat's normalisation, so the product is continuous across them
        (their own mean is then ≈ 1, not exactly 1). Both names must be in ``tissues``.

    Returns
    -------
    ndarray of float32, shape of ``labels``
        ``(1 + sd · f)`` clipped to ≥ :data:`FLOOR`, divided by its mean over the tissue's
        voxels; 1 on untextured tissues and labels absent from ``tissues``. Always > 0.
    """
    names = {label: tissue.name for label, tissue in tissues.items()}
    groups = dict(groups or {})
    known = set(names.values())
    for name, target in groups.items():
        if name not in known or target not in known:
            raise ValueError(f"texture group {name!r} → {target!r}: both must be tissues of "
                             f"this subject, which has {sorted(known)}")
        if target in groups:
            raise ValueError(f"texture group {name!r} → {target!r}: the target shares "
                             f"another group itself; point {name!r} at {groups[target]!r}")
    root = int(rng.integers(2**63))
    fields: dict[str, np.ndarray] = {}

    def field(kind: str) -> np.ndarray:
        if kind not in fields:
            sd, length = table[kind]
            stream = np.random.default_rng([root, zlib.crc32(kind.encode())])
            raw = 1.0 + sd * gaussian_field(labels.shape, stream, length, voxel_mm)
            fields[kind] = np.maximum(raw, FLOOR)
        return fields[kind]

    out = np.ones(labels.shape, dtype=np.float64)
    norms: dict[str, tuple[str, float | None]] = {}  # tissue → (type, mean of its field)
    for label, name in sorted(names.items()):  # tissues with their own field first
        inside = labels == label
        if name in groups or not (inside.any() or name in groups.values()):
            continue
        kind = texture_type(name, table)
        if table[kind] is None:
            continue
        norms[name] = (kind, None)
        if inside.any():
            values = field(kind)[inside]
            norms[name] = (kind, float(values.mean()))
            out[inside] = values / norms[name][1]
    for label, name in sorted(names.items()):  # then those sharing a neighbour's
        inside = labels == label
        if name not in groups or groups[name] not in norms or not inside.any():
            continue
        kind, mean = norms[groups[name]]
        values = field(kind)[inside]
        out[inside] = values / (values.mean() if mean is None else mean)
    return out.astype(np.float32)


def misregister(image: np.ndarray, shift_mm: tuple[float, ...], voxel_mm: tuple[float, ...],
                *, order: int = 1) -> np.ndarray:
    """``image`` translated by ``shift_mm`` (content moves by +shift along each axis).

    Parameters
    ----------
    image : ndarray, shape (Ny, Nx) or (Nx, Ny, Nz)
    shift_mm : tuple of float
        Translation in mm per axis (sub-voxel allowed).
    voxel_mm : tuple of float
        Voxel size in mm per axis.
    order : int
        Spline order of :func:`scipy.ndimage.shift` (1: linear, keeps the value range; 3: cubic).

    Returns
    -------
    ndarray, shape and dtype of ``image``
        Edges are extended with the nearest value (``mode="nearest"``).
    """
    if len(shift_mm) != image.ndim or len(voxel_mm) != image.ndim:
        raise ValueError(f"shift {shift_mm} mm and voxel {voxel_mm} mm need one value per "
                         f"axis of the {image.ndim}D image")
    shift = [s / d for s, d in zip(shift_mm, voxel_mm, strict=True)]
    return ndimage.shift(image, shift, order=order, mode="nearest").astype(image.dtype)


def random_shift_mm(rng: np.random.Generator, max_mm: float = 2.0, ndim: int = 2
                    ) -> tuple[float, ...]:
    """A random translation: uniform direction, magnitude uniform in ``[0, max_mm]`` mm.

    Returns
    -------
    tuple of float
        One component per axis, in mm (``(dy, dx)`` in 2D).
    """
    if not (np.isfinite(max_mm) and max_mm >= 0):
        raise ValueError(f"max_mm must be a finite length ≥ 0 mm, got {max_mm!r}")
    direction = rng.standard_normal(ndim)
    direction /= np.linalg.norm(direction)
    magnitude = rng.uniform(0.0, max_mm)
    return tuple(float(c) for c in magnitude * direction)
