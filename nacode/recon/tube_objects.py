"""The objects of a sodium image and whether each looks like a calibration tube.

Steps 1–4 of :mod:`nacode.recon.tube_detect`: :func:`candidates` smooths the image, measures
the air (:func:`background`), cuts the foreground into one watershed basin per object
(shallow valleys merged), takes each object at half its height and judges its shape and
surroundings against the thresholds below; :mod:`nacode.recon.tube_detect` chooses among
them. Arrays are 2D ``(H, W)`` or 3D, voxel units throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SMOOTH = 1.0  # Gaussian SD, voxels
FOREGROUND = 2.0  # foreground threshold, noise SDs of the smoothed image above background
DYNAMIC = 1.2  # least height of a seed above the saddle to a higher object, noise SDs
MIN_VALLEY = 0.25  # a valley shallower than this, of a basin's height, merges it
MIN_PEAK = 4.0  # least peak of a tube over the background, noise SDs
MIN_VOXELS = {2: 9, 3: 27}  # least size of a tube (before erosion)
MAX_FRACTION = 0.03  # largest cross-section of a tube as a fraction of the image's
MAX_EDGE = 0.1  # largest fraction of a tube's voxels on the image's edge
RING = 3  # shell around an object that must be air, voxels
RING_LEVEL = 0.25  # its median at most this far from the background to the object's plateau
MIN_FILL = 0.8  # fraction of an object inside its equal-area disc
MAX_ASPECT = 1.8  # longest over shortest principal axis of a tube's cross-section
MIN_ELONGATION = 1.5  # a 3D tube's length over its diameter (unless cut by the volume)


@dataclass(frozen=True)
class Candidate:
    """One object the detector judged.

    Attributes
    ----------
    box : tuple of slice
        Where :attr:`region` lies in the image.
    region : ndarray of bool
        The object at half its height, within ``box``.
    peak, mean : float
        Its highest smoothed value and its mean unsmoothed signal (image units).
    size : int
        Voxels.
    score : float
        Its median smoothed contrast over the background in noise SDs, times the square
        root of its size: how unlikely noise is to have made it.
    reason : str
        Empty for a tube, else why it is not one (e.g. ``"not ringed by air"``).
    axis : int or None
        3D: the array axis it runs along (None in 2D or when not judged that far).
    """

    box: tuple
    region: np.ndarray
    peak: float
    mean: float
    size: int
    score: float
    reason: str
    axis: int | None = None

    @property
    def is_tube(self) -> bool:
        return not self.reason

    def mask(self, shape: tuple[int, ...]) -> np.ndarray:
        """The region as a boolean array of the image's ``shape``."""
        out = np.zeros(shape, bool)
        out[self.box] = self.region
        return out


def background(values: np.ndarray) -> tuple[float, float]:
    """Level and noise SD of the background: its mode and the spread below it.

    The background is taken to be the most common value (the half-sample mode of the lower
    three quarters of ``values``: air fills much of a field of view), and its SD the
    root-mean-square distance below that mode — objects only ever lie above the background,
    so the values below its mode are background alone.

    Parameters
    ----------
    values : ndarray
        Any shape (flattened), e.g. a smoothed magnitude image.

    Returns
    -------
    level, sd : float
        In the units of ``values``; ``sd`` is at least 1e-6 of the value range, so that a
        background of exact zeros (a masked image) still gives a usable scale.
    """
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    x = v[: max(3 * v.size // 4, 1)]
    while x.size > 3:  # half-sample mode: the densest half, halved again and again
        half = (x.size + 1) // 2
        start = int(np.argmin(x[half - 1:] - x[:x.size - half + 1]))
        x = x[start:start + half]
    level = float(x.mean())
    below = v[v < level] - level
    sd = float(np.sqrt(np.mean(below**2))) if below.size else 0.0
    return level, max(sd, 1e-6 * float(v[-1] - v[0]), 1e-300)


def _fill(region: np.ndarray) -> float:
    """Fraction of a 2D region inside the disc of its area centred at its centroid."""
    points = np.argwhere(region)
    if points.size == 0:
        return 0.0
    d2 = ((points - points.mean(axis=0)) ** 2).sum(axis=1)
    return float((d2 <= len(points) / np.pi + 0.5).mean())


def _aspect(region: np.ndarray) -> float:
    """Longest over shortest principal axis of a 2D region (1 for a disc)."""
    points = np.argwhere(region).astype(np.float64)
    points -= points.mean(axis=0)
    low, high = np.linalg.eigvalsh(points.T @ points / max(len(points), 1))
    return float(np.sqrt(high / max(low, 1e-12)))


def _cylinder(region: np.ndarray) -> tuple[float, int]:
    """Best disc fill of a 3D region slice by slice across one array axis, and that axis."""
    best = (0.0, 0)
    for axis in range(3):
        moved = np.moveaxis(region, axis, 0)
        fill = sum(_fill(s) * s.sum() for s in moved if s.any()) / max(region.sum(), 1)
        best = max(best, (fill, axis))
    return best


def _judge(region: np.ndarray, s: np.ndarray, level: float, plateau: float,
           edges: list[tuple[bool, bool]], full: tuple[int, ...]) -> tuple[str, int | None]:
    """Why ``region`` (a crop with a ``RING``-voxel border where the image allows) is not a
    tube (empty if it looks like one), and its axis (3D; None in 2D); ``edges[a]`` says
    whether the crop's first and last planes along axis ``a`` are the image's."""
    ndim, size = region.ndim, int(region.sum())
    if size < MIN_VOXELS[ndim]:
        return f"small ({size} voxels)", None
    if ndim == 2:
        fill, axis, across, length = _fill(region), None, (0, 1), 1
        aspect = _aspect(region)
    else:
        fill, axis = _cylinder(region)
        across = tuple(a for a in range(3) if a != axis)
        aspect = _aspect(region.any(axis=axis))
        extent = np.flatnonzero(np.moveaxis(region, axis, 0).any(axis=(1, 2)))
        length = int(extent[-1] - extent[0] + 1)
    if size / length > MAX_FRACTION * np.prod([full[a] for a in across]):
        return f"large ({size} voxels)", axis
    on_edge = sum(np.take(region, end, axis=a).sum() for a in across
                  for end, is_edge in zip((0, -1), edges[a], strict=True) if is_edge)
    if on_edge > MAX_EDGE * size:
        return "cut by the edge", axis
    ball = ndimage.generate_binary_structure(ndim, 1)
    inner = ndimage.binary_dilation(region, ball)
    ring = ndimage.binary_dilation(inner, ball, iterations=RING - 1) & ~inner
    if np.median(s[ring]) > level + RING_LEVEL * (plateau - level):
        return "not ringed by air", axis
    if fill < MIN_FILL or aspect > MAX_ASPECT:
        return f"not disc-shaped (fill {fill:.2f}, aspect {aspect:.1f})", axis
    if ndim == 3:
        diameter = 2 * np.sqrt(size / length / np.pi)
        through = edges[axis][0] and edges[axis][1] and extent[0] == 0 and (
            extent[-1] == region.shape[axis] - 1)
        if length < MIN_ELONGATION * diameter and not through:
            return f"not a cylinder (length {length}, diameter {diameter:.1f} voxels)", axis
    return "", axis


def _passes(basins: np.ndarray, s: np.ndarray) -> dict[tuple[int, int], float]:
    """For each pair of touching basins ``(a, b)``, ``a < b``, the highest ``min(s)`` over
    the face-neighbour voxel pairs across their border: where one crosses from a to b."""
    out: dict[tuple[int, int], float] = {}
    for axis in range(basins.ndim):
        a, v = np.moveaxis(basins, axis, 0), np.moveaxis(s, axis, 0)
        la, lb = a[:-1].ravel(), a[1:].ravel()
        keep = (la != lb) & (la > 0) & (lb > 0)
        if not keep.any():
            continue
        low, high = np.minimum(la[keep], lb[keep]), np.maximum(la[keep], lb[keep])
        value = np.minimum(v[:-1].ravel()[keep], v[1:].ravel()[keep])
        order = np.lexsort((value, high, low))  # the last of each pair holds its highest
        low, high, value = low[order], high[order], value[order]
        last = np.r_[(low[1:] != low[:-1]) | (high[1:] != high[:-1]), True]
        for x, y, t in zip(low[last], high[last], value[last], strict=True):
            key = (int(x), int(y))
            out[key] = max(out.get(key, -np.inf), float(t))
    return out


def _merge(basins: np.ndarray, s: np.ndarray, level: float) -> np.ndarray:
    """Merge each basin, lowest peak first, into the higher neighbour it reaches over the
    highest pass when that valley is shallower than ``MIN_VALLEY`` of its height."""
    count = int(basins.max())
    peaks = np.full(count + 1, -np.inf)
    np.maximum.at(peaks, basins.ravel(), s.ravel())
    neighbours: dict[int, dict[int, float]] = {k: {} for k in range(count + 1)}
    for (a, b), value in _passes(basins, s).items():
        neighbours[a][b] = neighbours[b][a] = value
    owner = np.arange(count + 1)
    for k in sorted(range(1, count + 1), key=lambda k: peaks[k]):
        higher = {q: v for q, v in neighbours[k].items() if peaks[q] > peaks[k]}
        if not higher:
            continue
        q, value = max(higher.items(), key=lambda item: item[1])
        if peaks[k] - value >= MIN_VALLEY * (peaks[k] - level):
            continue
        owner[k] = q
        for r, v in neighbours[k].items():  # q inherits k's borders
            neighbours[r].pop(k, None)
            if r != q:
                neighbours[q][r] = neighbours[r][q] = max(v, neighbours[q].get(r, -np.inf))
        neighbours[k] = {}
    for k in range(count + 1):  # follow each chain of merges to its surviving basin
        root = k
        while owner[root] != root:
            root = owner[root]
        owner[k] = root
    return owner[basins]


def candidates(image: np.ndarray, *, smooth: float = SMOOTH) -> list[Candidate]:
    """Every object of ``image`` at half its height, judged as a tube or not.

    Parameters
    ----------
    image : ndarray, shape (H, W) or 3D
        Magnitude image (any units).
    smooth : float
        Gaussian SD in voxels.

    Returns
    -------
    list of Candidate
        In decreasing order of peak height.
    """
    return analyse(np.asarray(image, dtype=np.float64), smooth)[0]


def analyse(image: np.ndarray, smooth: float = SMOOTH) -> tuple[list[Candidate], np.ndarray]:
    """:func:`candidates` of a float64 image, and its foreground: the smoothed image
    ``FOREGROUND`` SDs above the air (bool, the image's shape)."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    s = ndimage.gaussian_filter(image, smooth, mode="nearest")
    level, sd = background(s)
    foreground = s > level + FOREGROUND * sd
    seeds, count = ndimage.label(h_maxima(s, DYNAMIC * sd) & foreground)
    if count == 0:
        return [], foreground
    basins = _merge(watershed(-s, seeds, mask=foreground), s, level)
    found = []
    for index, box in enumerate(ndimage.find_objects(basins), start=1):
        if box is None:
            continue
        box = tuple(slice(max(b.start - RING - 1, 0), min(b.stop + RING + 1, n))
                    for b, n in zip(box, image.shape, strict=True))
        basin, sub = basins[box] == index, s[box]
        peak = float(sub[basin].max())
        if peak < level + MIN_PEAK * sd:
            continue  # noise: not judged, not listed
        seed = np.flatnonzero(basin & (sub == peak))[0]
        region = _above(basin, sub, level + 0.5 * (peak - level), seed)
        core = ndimage.binary_erosion(region)
        plateau = float(np.median(sub[core])) if core.any() else peak
        region = _above(basin, sub, level + 0.5 * (plateau - level), seed)
        size = int(region.sum())
        score = (float(np.median(sub[region])) - level) / sd * np.sqrt(size)
        edges = [(b.start == 0, b.stop == n) for b, n in zip(box, image.shape, strict=True)]
        reason, axis = _judge(region, sub, level, plateau, edges, image.shape)
        found.append(Candidate(box, region, peak, float(image[box][region].mean()), size,
                               score, reason, axis))
    return sorted(found, key=lambda c: -c.peak), foreground


def _above(basin: np.ndarray, s: np.ndarray, threshold: float, seed: int) -> np.ndarray:
    """The connected part of ``basin`` above ``threshold`` that holds voxel ``seed``."""
    above, _ = ndimage.label(basin & (s >= threshold))
    return above == above.flat[seed]
