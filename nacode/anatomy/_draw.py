"""Shared 2D drawing helpers of the procedural anatomies (calf, breast).

All functions work on 2D grids indexed ``(y, x)`` with row 0 anterior and column 0 the
subject's right. Voxel ``i`` of an axis with ``N`` voxels of size ``d`` mm is centred at
``(i - N // 2) * d`` mm from the grid centre (the centred FFT's origin), the origin of every
position in mm.
Shapes are ``(Ny, Nx)``; lengths are in mm, angles in radians.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from nacode.anatomy.subject import Tissue, Tube
from nacode.anatomy.tissues import tube

Profile = Callable[[np.ndarray], np.ndarray]


def grid_mm(shape: tuple[int, int], voxel_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Open grids of voxel-centre positions in mm; voxel ``i`` sits at ``(i − N // 2)`` voxels.

    The origin is index ``N // 2``, the origin of the centred FFT/NUFFT, so that positions
    on the fine grid and on the acquisition matrix agree.

    Returns
    -------
    y : ndarray, shape (Ny, 1)
        Row positions in mm (positive = posterior).
    x : ndarray, shape (1, Nx)
        Column positions in mm (positive = the subject's left).
    """
    (ny, nx), (dy, dx) = shape, voxel_mm
    y = (np.arange(ny) - ny // 2) * dy
    x = (np.arange(nx) - nx // 2) * dx
    return y[:, None], x[None, :]


def fourier_profile(rng: np.random.Generator, orders: Sequence[int],
                    amplitude: float) -> Profile:
    """A random smooth periodic profile ``1 + Σ_k a_k cos(k θ + φ_k)``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the amplitudes and phases.
    orders : sequence of int
        Harmonics ``k`` to include (low orders give a smooth outline).
    amplitude : float
        ``a_k`` is uniform in ``±amplitude / k`` (so higher harmonics are weaker).

    Returns
    -------
    callable
        Maps angles θ (radians, any shape) to the profile (same shape, ≈ 1).
    """
    ks = np.asarray(orders, dtype=float)
    amps = rng.uniform(-amplitude, amplitude, size=ks.size) / ks
    phases = rng.uniform(0.0, 2.0 * np.pi, size=ks.size)

    def profile(theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        out = np.ones_like(theta)
        for k, a, p in zip(ks, amps, phases, strict=True):
            out = out + a * np.cos(k * theta + p)
        return out

    return profile


def star_radius(u: np.ndarray, v: np.ndarray, a: float, b: float,
                profile: Profile | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Polar radius and boundary radius of a perturbed ellipse, per point.

    The outline is ``(a ρ(θ) cos θ, b ρ(θ) sin θ)`` for the parameter θ; it is star-shaped
    about the origin, so a point ``(u, v)`` is inside when its radius is below the outline's
    radius in the same direction.

    Parameters
    ----------
    u, v : ndarray
        Local coordinates in mm (broadcastable).
    a, b : float
        Semi-axes along ``u`` and ``v`` in mm.
    profile : callable, optional
        ρ(θ); ``None`` gives a plain ellipse.

    Returns
    -------
    r, boundary : ndarray
        Radius of each point and of the outline in its direction, in mm (broadcast shape).
    """
    psi = np.arctan2(v, u)
    theta = np.arctan2(a * np.sin(psi), b * np.cos(psi))
    boundary = np.hypot(a * np.cos(theta), b * np.sin(theta))
    if profile is not None:
        boundary = boundary * profile(theta)
    return np.hypot(u, v), boundary


def rotate(y: np.ndarray, x: np.ndarray, centre: tuple[float, float],
           angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Local coordinates ``(u, v)`` about ``centre = (y, x)`` mm, frame turned by ``angle``.

    ``u`` runs along the image x axis and ``v`` along the image y axis when ``angle = 0``.
    """
    dy, dx = y - centre[0], x - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    return c * dx + s * dy, -s * dx + c * dy


def disc(y: np.ndarray, x: np.ndarray, centre: tuple[float, float], radius: float) -> np.ndarray:
    """Boolean disc of ``radius`` mm about ``centre = (y, x)`` mm, shape (Ny, Nx)."""
    return (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius**2


def depth_mm(mask: np.ndarray, voxel_mm: tuple[float, float]) -> np.ndarray:
    """Depth of each voxel centre below the outline of ``mask``, in mm (0 outside).

    The Euclidean distance to the nearest outside voxel centre, minus half a voxel (the
    outline lies halfway between inside and outside centres).
    """
    depth = ndimage.distance_transform_edt(mask, sampling=voxel_mm) - 0.5 * min(voxel_mm)
    return np.where(mask, depth, 0.0)


def shell(thickness_mm: float, voxel_mm: tuple[float, float]) -> float:
    """``thickness_mm``, raised if needed so a layer is at least two voxels deep."""
    return max(float(thickness_mm), 1.5 * max(voxel_mm) + 1e-6)


def smooth_noise(shape: tuple[int, int], rng: np.random.Generator, sigma_mm: float,
                 voxel_mm: tuple[float, float]) -> np.ndarray:
    """Gaussian random field of unit standard deviation and correlation ``sigma_mm``."""
    sigma = [sigma_mm / d for d in voxel_mm]
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / field.std()


def bias_field(shape: tuple[int, int], rng: np.random.Generator,
               amplitude: float = 0.1) -> np.ndarray:
    """Smooth multiplicative 1H receive bias: a random quadratic, ``1 ± amplitude`` at most.

    Returns
    -------
    ndarray of float32, shape (Ny, Nx)
        Values in ``[1 - amplitude, 1 + amplitude]``; the peak deviation is drawn in
        ``[0.6, 1] × amplitude``.
    """
    y = np.linspace(-1.0, 1.0, shape[0])[:, None]
    x = np.linspace(-1.0, 1.0, shape[1])[None, :]
    c = rng.standard_normal(5)
    field = c[0] * x + c[1] * y + c[2] * x * x + c[3] * x * y + c[4] * y * y
    field = field - field.mean()
    field *= rng.uniform(0.6, 1.0) * amplitude / np.abs(field).max()
    return (1.0 + field).astype(np.float32)


def values_at(grid: np.ndarray, points_mm: np.ndarray, voxel_mm: tuple[float, float],
              fill: float = 0.0) -> np.ndarray:
    """Nearest-voxel values of a 2D ``grid`` at ``points_mm`` (shape (..., 2), ``(y, x)`` mm).

    Returns
    -------
    ndarray of float, shape ``points_mm.shape[:-1]``
        ``fill`` where a point falls outside the grid.
    """
    shape = np.array(grid.shape)
    index = np.rint(points_mm / np.asarray(voxel_mm) + shape // 2).astype(int)
    ok = np.all((index >= 0) & (index < shape), axis=-1)
    out = np.full(points_mm.shape[:-1], fill, dtype=float)
    out[ok] = grid[index[ok][:, 0], index[ok][:, 1]]
    return out


def arcs(centres_mm: np.ndarray, headings: np.ndarray, lengths_mm: np.ndarray,
         curvatures: np.ndarray, n: int) -> np.ndarray:
    """``K`` circular arcs sampled at ``n`` points each, centred on their middle sample.

    Parameters
    ----------
    centres_mm : ndarray, shape (K, 2)
        Middle point ``(y, x)`` of each arc, mm.
    headings : ndarray, shape (K,)
        Direction at the middle, radians from the x axis towards +y.
    lengths_mm, curvatures : ndarray, shape (K,)
        Arc length (mm) and curvature (1/mm; 0 is a straight segment).
    n : int
        Samples per arc (spacing ``length / (n − 1)``).

    Returns
    -------
    ndarray, shape (K, n, 2)
        Sample positions ``(y, x)`` in mm.
    """
    s = np.linspace(-0.5, 0.5, n)[None, :] * lengths_mm[:, None]  # arc length from the middle
    h = headings[:, None] + curvatures[:, None] * s
    ds = lengths_mm[:, None] / (n - 1)
    path = np.cumsum(np.stack([np.sin(h), np.cos(h)], axis=-1) * ds[..., None], axis=1)
    return path - path[:, n // 2][:, None] + centres_mm[:, None]


def flow_paths(starts_mm: np.ndarray, field: Sequence[np.ndarray], inside: np.ndarray,
               voxel_mm: tuple[float, float], *, turn: Callable[[float], np.ndarray],
               step_mm: float, max_mm: float) -> list[np.ndarray]:
    """Paths that follow a 2D vector field, turned by an angle that varies along each path.

    Parameters
    ----------
    starts_mm : ndarray, shape (K, 2)
        Start points ``(y, x)`` in mm.
    field : pair of ndarray, each (Ny, Nx)
        ``(f_y, f_x)``, e.g. ``np.gradient`` of a distance map; only its direction is used.
    inside : ndarray of bool, (Ny, Nx)
        A path ends when it leaves this region (or where the field vanishes).
    voxel_mm : tuple of float
        ``(dy, dx)`` in mm.
    turn : callable
        Maps the arc length walked so far (mm) to each path's turn angle, shape (K,), radians.
    step_mm, max_mm : float
        Step and largest length of a path, mm.

    Returns
    -------
    list of ndarray, each (n_k, 2)
        The samples of each path, start included, ``step_mm`` apart.
    """
    position = np.asarray(starts_mm, dtype=float)
    paths, active = [[p] for p in position], np.ones(len(position), dtype=bool)
    for k in range(1, int(max_mm / step_mm)):
        if not active.any():
            break
        fy, fx = (values_at(f, position, voxel_mm) for f in field)
        angle = turn(k * step_mm)
        c, s = np.cos(angle), np.sin(angle)
        turned = np.stack([c * fy + s * fx, -s * fy + c * fx], axis=1)
        norm = np.linalg.norm(turned, axis=1, keepdims=True)
        position = position + step_mm * turned / np.maximum(norm, 1e-9)
        active &= (norm[:, 0] > 1e-9) & (values_at(inside, position, voxel_mm) > 0)
        for i in np.flatnonzero(active):
            paths[i].append(position[i])
    return [np.array(path) for path in paths]


def curve_mask(points_mm: np.ndarray, half_width_mm: np.ndarray, shape: tuple[int, int],
               voxel_mm: tuple[float, float]) -> np.ndarray:
    """Voxels within a per-point half-width of a sampled curve (a thin band, never gapped).

    Parameters
    ----------
    points_mm : ndarray, shape (n, 2)
        Curve samples ``(y, x)`` in mm from the grid centre, spaced at most a quarter voxel.
    half_width_mm : ndarray, shape (n,)
        Half the band's width at each sample, in mm.
    shape : tuple of int
        ``(Ny, Nx)``.
    voxel_mm : tuple of float
        ``(dy, dx)`` in mm.

    Returns
    -------
    ndarray of bool, shape ``shape``
        Voxels whose centre lies closer than the half-width to the nearest sample, plus the
        nearest voxel of every sample (so a band narrower than a voxel stays connected).
    """
    from scipy.spatial import cKDTree

    points = np.asarray(points_mm, dtype=float).reshape(-1, 2)
    half = np.broadcast_to(np.asarray(half_width_mm, dtype=float), points.shape[:1])
    mask = np.zeros(shape, dtype=bool)
    index = np.rint(points / np.asarray(voxel_mm) + np.array(shape) // 2).astype(int)
    ok = np.all((index >= 0) & (index < np.array(shape)), axis=1)
    if not ok.any():
        return mask
    mask[index[ok, 0], index[ok, 1]] = True
    reach = float(half.max())
    steps = int(np.ceil(reach / min(voxel_mm))) + 1
    near = ndimage.binary_dilation(mask, np.ones((3, 3), bool), iterations=steps)
    rows, cols = np.nonzero(near)
    centres = np.column_stack([(rows - shape[0] // 2) * voxel_mm[0],
                               (cols - shape[1] // 2) * voxel_mm[1]])
    distance, nearest = cKDTree(points).query(centres, distance_upper_bound=reach)
    hit = np.isfinite(distance)
    hit[hit] = distance[hit] < half[nearest[hit]]
    mask[rows[hit], cols[hit]] = True
    return mask


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of ``mask`` (empty if ``mask`` is)."""
    parts, count = ndimage.label(mask)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(parts.ravel())[1:]
    return parts == (int(np.argmax(sizes)) + 1)


def add_tubes(labels: np.ndarray, tissues: dict[int, Tissue], rng: np.random.Generator,
              body: np.ndarray, voxel_mm: tuple[float, float], concentrations: Sequence[float],
              radius_mm: float, *, gap_mm: float, allowed: np.ndarray | None = None,
              attempts: int = 50, tries: int = 200) -> tuple[Tube, ...]:
    """Place reference tubes at random around ``body`` and paint them into ``labels``.

    Each tube centre is drawn among voxel centres at least ``radius_mm + gap_mm`` (plus one
    voxel) from the body and from the field-of-view edge; tubes are ``gap_mm`` apart. Tubes
    are placed one by one by rejection sampling (``tries`` draws each); a failed layout is
    restarted up to ``attempts`` times.

    Parameters
    ----------
    labels : ndarray of int16, shape (Ny, Nx)
        Label map, modified in place: tube ``i`` gets label ``max(tissues) + 1 + i``.
    tissues : dict of int to Tissue
        Tissue table, extended in place with :func:`~nacode.anatomy.tissues.tube` entries.
    rng : numpy.random.Generator
        Source of the positions.
    body : ndarray of bool, shape (Ny, Nx)
        The subject, holes filled; tubes keep clear of it.
    voxel_mm : tuple of float
        ``(dy, dx)`` in mm.
    concentrations : sequence of float
        Tube concentrations in mM.
    radius_mm, gap_mm : float
        Tube radius, and the least clearance to the body, the edge and other tubes, in mm.
    allowed : ndarray of bool, shape (Ny, Nx), optional
        Where tube centres may lie (e.g. anterior of the chest).
    attempts, tries : int
        Layouts to try, and random draws per tube within one layout.

    Returns
    -------
    tuple of Tube
        With ``centre_mm = (y, x)`` relative to the grid centre.

    Raises
    ------
    ValueError
        If no layout is found: the field of view is too small for the body and the tubes.
    """
    y, x = grid_mm(labels.shape, voxel_mm)
    step = max(voxel_mm)
    clearance = radius_mm + gap_mm + step
    half_y, half_x = labels.shape[0] * voxel_mm[0] / 2, labels.shape[1] * voxel_mm[1] / 2
    free = ndimage.distance_transform_edt(~body, sampling=voxel_mm) >= clearance
    free &= (np.abs(y) <= half_y - clearance) & (np.abs(x) <= half_x - clearance)
    if allowed is not None:
        free &= allowed
    candidates = np.flatnonzero(free)
    n = len(concentrations)
    if candidates.size == 0:
        raise ValueError(f"no room for {n} reference tubes of radius {radius_mm} mm at "
                         f"{gap_mm} mm from the body and the edge: enlarge the field of view")
    rows, cols = np.unravel_index(candidates, labels.shape)
    points = np.column_stack([y[rows, 0], x[0, cols]])
    min_sep = 2 * radius_mm + gap_mm + step
    for _ in range(attempts):
        centres: list[np.ndarray] = []
        for _ in range(tries):
            p = points[rng.integers(points.shape[0])]
            if all(np.hypot(*(p - q)) >= min_sep for q in centres):
                centres.append(p)
                if len(centres) == n:
                    break
        if len(centres) == n:
            break
    else:
        raise ValueError(f"could not place {n} reference tubes of radius {radius_mm} mm "
                         f"{gap_mm} mm apart in {attempts} attempts: enlarge the field of view")
    first = max(tissues) + 1
    records = []
    for i, (c, centre) in enumerate(zip(concentrations, centres, strict=True)):
        label = first + i
        tissues[label] = tube(c)
        labels[disc(y, x, (centre[0], centre[1]), radius_mm)] = label
        records.append(Tube(label=label, concentration=float(c),
                            centre_mm=(float(centre[0]), float(centre[1])),
                            radius_mm=float(radius_mm)))
    return tuple(records)
