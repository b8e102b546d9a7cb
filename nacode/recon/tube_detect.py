"""Find the calibration tubes of a sodium image: uniform discs (2D) or cylinders (3D) in air.

:func:`detect_tubes` needs neither the tubes' size nor their place. Steps 1–4 are
:func:`nacode.recon.tube_objects.candidates` (whose module holds their thresholds):

1. **Smooth; measure the air.** A Gaussian of ``smooth`` voxels; the background level is the
   mode of the smoothed image and its noise SD the spread below the mode (:func:`background`).
2. **One basin per object.** Regional maxima ``DYNAMIC`` SDs high seed a watershed of the
   foreground (``FOREGROUND`` SDs above the air); a basin whose valley to a higher neighbour
   is shallower than ``MIN_VALLEY`` of its height joins it (noise on a tube's plateau, the
   pieces of the body), so a faint tube beside a bright one or the body keeps its own.
3. **Each object at half its height** between the air and its plateau, where a blurred wall
   crosses: a 10 mM tube is delineated as well as a 100 mM one.
4. **Tube-shaped objects** peak ``MIN_PEAK`` SDs above the air, are neither small
   (``MIN_VOXELS``) nor large (``MAX_FRACTION``), not cut by the image's edge (``MAX_EDGE``;
   3D: across their axis), ringed by air (median of a ``RING``-voxel shell within
   ``RING_LEVEL`` of the air) and round: ``MIN_FILL`` of the object in the disc of its area,
   principal axes within ``MAX_ASPECT``, slice by slice across the array axis that fits
   best in 3D, where a tube is also ``MIN_ELONGATION`` times longer than wide unless it runs
   through the volume.
5. **Choose, shrink, order** (:func:`choose`). Tubes stand out of their surroundings
   (:func:`significance`, a matched contrast in noise SDs: ``MIN_SIGNIFICANCE_OWN`` on
   their own footprint), come as a set of similar sizes (``SIZE_RANGE``; the set with most
   ``STRONG`` members) along one axis, and reach ``MIN_SIGNIFICANCE`` on the typical
   tube's footprint.
   Unless exactly ``n`` remain, detection fails (it never drops a tube-like object to make
   the count). Each tube is eroded by ``margin`` voxels to stay inside its wall, and
   numbered by mean signal, lowest first: the order of ascending concentration.

Arrays are 2D ``(H, W)`` or 3D (any axis order; tubes run along one array axis); voxel units
throughout.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve

from nacode.recon.tube_objects import RING, SMOOTH, Candidate, analyse

MIN_SIGNIFICANCE_OWN = 5.0  # least contrast of a candidate on its own footprint, noise SDs
STRONG = 10.0  # a set of tubes is chosen by its members this significant (then its size)
SIZE_RANGE = (0.5, 2.0)  # sizes of one set of tubes, relative to each other
MIN_SIGNIFICANCE = 5.5  # least matched contrast of a tube with its surroundings, noise SDs
MIN_ROI = (5, 0.2)  # least ROI of a tube after the margin: voxels, fraction of the typical
NULL_SAMPLES = 400  # places in the air where that contrast's noise is measured


class TubeDetectionError(ValueError):
    """Automatic detection did not find the expected number of tubes."""


def _contrast(image: np.ndarray, centres: np.ndarray, disc: np.ndarray, ring: np.ndarray
              ) -> np.ndarray:
    """Mean of ``image`` over ``disc`` minus its median over ``ring`` (voxel offsets, clipped
    to the image) at each of ``centres`` (shape (m, ndim), voxel indices)."""
    shape = np.array(image.shape)
    out = np.empty(len(centres))
    for i, centre in enumerate(centres):
        a, b = (np.clip(centre + offsets, 0, shape - 1) for offsets in (disc, ring))
        out[i] = image[tuple(a.T)].mean() - np.median(image[tuple(b.T)])
    return out


def significance(image: np.ndarray, tubes: list[Candidate], foreground: np.ndarray,
                 typical: Candidate) -> list[float]:
    """How far each tube stands out of its surroundings, matched to the typical tube's shape.

    At each tube's centroid the image is averaged over the footprint of the ``typical``
    tube (the whole tube is integrated: a matched filter), less the median over a shell
    ``RING`` voxels wide one voxel outside it (air around a tube; the body around a bump
    inside it). The same contrast at up to ``NULL_SAMPLES`` places in the air — whose
    footprint meets no part of ``foreground`` as large as half the typical tube (smaller
    parts are noise) — gives its spread under noise alone, with the image's own noise
    correlations.

    Returns
    -------
    list of float
        ``(tube's contrast − mean over air) / SD over air`` per tube; the tubes' ``score``
        when the air is too small to measure (fewer than 30 places).
    """
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(typical.region))
    kernel = np.pad(typical.region[box], RING + 1)
    ball = ndimage.generate_binary_structure(kernel.ndim, 1)
    inner = ndimage.binary_dilation(kernel, ball)
    shell = ndimage.binary_dilation(inner, ball, iterations=RING) & ~inner
    middle = np.array(kernel.shape) // 2
    disc, ring = np.argwhere(kernel) - middle, np.argwhere(shell) - middle
    parts, _ = ndimage.label(foreground)
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    solid = (sizes >= 0.5 * typical.size)[parts].astype(np.float64)  # smaller parts: noise
    footprint = np.flip(inner | shell).astype(np.float64)  # flipped: a correlation
    touched = fftconvolve(solid, footprint, mode="same") > 0.5
    places = np.argwhere(~touched)  # footprints meeting no object (beyond the edge: air)
    if len(places) < 30:
        return [c.score for c in tubes]
    places = places[np.linspace(0, len(places) - 1, min(NULL_SAMPLES, len(places))).astype(int)]
    null = _contrast(image, places, disc, ring)
    if null.std() == 0:
        return [c.score for c in tubes]
    centres = np.array([np.rint(np.argwhere(c.region).mean(axis=0)).astype(int)
                        + [b.start for b in c.box] for c in tubes])
    return list((_contrast(image, centres, disc, ring) - null.mean()) / null.std())


def choose(found: list[Candidate], n: int | None, image: np.ndarray | None = None,
           foreground: np.ndarray | None = None) -> list[Candidate]:
    """The tubes among the candidates (step 5 of the module notes), most significant first.

    Parameters
    ----------
    found : list of Candidate
    n : int or None
        Tubes expected; None keeps every tube-like candidate that passes (at least one).
    image, foreground : ndarray, optional
        The image and its foreground (from the analysis): every tube must then stand
        ``MIN_SIGNIFICANCE`` out of its surroundings by :func:`significance`.

    Raises
    ------
    TubeDetectionError
        Saying how many tube-like objects were found when that is not ``n`` (or none).
    """
    tubes = [c for c in found if c.is_tube]
    own = {id(c): c.score for c in tubes}  # without the image: the score stands in
    if image is not None and foreground is not None:  # each on its own footprint
        own = {id(c): significance(image, [c], foreground, c)[0] for c in tubes}
        tubes = [c for c in tubes if own[id(c)] >= MIN_SIGNIFICANCE_OWN]
    if tubes:  # the set of like-sized tubes with most strong members, along one axis
        sets = [[d for d in tubes if SIZE_RANGE[0] <= d.size / c.size <= SIZE_RANGE[1]]
                for c in tubes]
        tubes = max(sets, key=lambda group: (sum(own[id(d)] >= STRONG for d in group),
                                             len(group), sum(own[id(d)] for d in group)))
        axes = [c.axis for c in tubes]
        tubes = [c for c in tubes if c.axis == max(set(axes), key=axes.count)]
    if image is not None and foreground is not None and tubes:
        typical = sorted(tubes, key=lambda c: c.size)[len(tubes) // 2]
        tubes = [c for c, z in zip(tubes, significance(image, tubes, foreground, typical),
                                   strict=True) if z >= MIN_SIGNIFICANCE]
    if len(tubes) != n and (n is not None or not tubes):
        expected = f", expected {n}" if n is not None else ""
        raise TubeDetectionError(f"found {len(tubes)} tube(s){expected}")
    return tubes


def detect_tubes(image: np.ndarray, n: int | None, *, margin: int = 1,
                 smooth: float = SMOOTH) -> np.ndarray:
    """Label image of the ``n`` tubes of ``image``, numbered by mean signal (lowest = 1).

    Parameters
    ----------
    image : ndarray, shape (H, W) or 3D
        Magnitude image; singleton axes are ignored.
    n : int or None
        Number of tubes expected (≥ 1); None takes every tube found (at least one).
    margin : int
        Erosion of each tube, in voxels, so that its ROI stays inside the tube wall.
    smooth : float
        Gaussian SD of the detection, voxels.

    Returns
    -------
    ndarray of int16, shape of ``image``
        0 outside the tubes, ``k`` inside the ROI of the tube with the ``k``-th lowest mean.

    Raises
    ------
    TubeDetectionError
        If not exactly ``n`` tubes (or none) are found, or one tube's ROI is smaller than
        ``MIN_ROI`` (voxels, or a fraction of the typical ROI; e.g. it vanishes under the
        margin).
    """
    image = np.asarray(image, dtype=np.float64)
    squeezed = image.reshape([d for d in image.shape if d > 1])
    if squeezed.ndim not in (2, 3):
        raise ValueError(f"tube detection needs a 2D or 3D image, got shape {image.shape}")
    found, foreground = analyse(squeezed, smooth)
    tubes = choose(found, n, squeezed, foreground)
    labels = np.zeros(squeezed.shape, np.int16)
    ball = ndimage.generate_binary_structure(squeezed.ndim, 1)
    for k, tube in enumerate(sorted(tubes, key=lambda c: c.mean), start=1):
        region = tube.mask(squeezed.shape)
        labels[ndimage.binary_erosion(region, ball, iterations=margin) if margin
               else region] = k
    sizes = np.bincount(labels.ravel(), minlength=len(tubes) + 1)[1:]
    for k, size in enumerate(sizes, start=1):  # one set of tubes leaves like-sized ROIs
        if size < max(MIN_ROI[0], MIN_ROI[1] * np.median(sizes)):
            raise TubeDetectionError(f"tube {k} leaves {size} voxel(s) inside a "
                                     f"{margin}-voxel margin, the typical tube "
                                     f"{np.median(sizes):g}")
    return labels.reshape(image.shape)
