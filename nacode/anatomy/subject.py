"""Virtual subjects: a label map on a fine grid plus per-tissue sodium properties.

Every anatomy (calf, brain, breast) returns a :class:`Subject`: an integer label map on a grid
finer than any acquisition (so partial volume arises in the simulated scan, not in the truth),
the subject's own tissue table (:class:`Tissue` per label, after population variability), the
reference tubes, and a matching 1H image. The per-voxel maps — true TSC (mM), T2* fast and
slow components (ms), fast fraction, T1 (ms) — are looked up from the labels on demand; an
optional within-tissue TSC texture (:mod:`nacode.anatomy.texture`) multiplies the TSC.

Coordinates: arrays are indexed ``(y, x)`` in 2D and ``(x, y, z)`` in 3D as produced by each
generator (documented there); positions in mm are relative to the grid centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

MAP_NAMES = ("tsc", "t2_fast", "t2_slow", "frac_fast", "t1")


@dataclass(frozen=True)
class Tissue:
    """Sodium properties of one tissue (or tube) class.

    Attributes
    ----------
    name : str
        Tissue name, e.g. ``"muscle"``.
    tsc : float
        Tissue sodium concentration in mM.
    t2_fast, t2_slow : float
        Fast and slow T2* components in ms (equal for a mono-exponential fluid).
    frac_fast : float
        Fraction of the signal in the fast component, in [0, 1] (≈ 0.6 in tissue, 0 in fluid).
    t1 : float
        Longitudinal relaxation time in ms.
    proton : float
        Intensity of the tissue in the matching 1H image (arbitrary units, ≈ [0, 1]).
    """

    name: str
    tsc: float
    t2_fast: float
    t2_slow: float
    frac_fast: float
    t1: float
    proton: float = 0.0

    def __post_init__(self) -> None:
        values = (self.tsc, self.t2_fast, self.t2_slow, self.frac_fast, self.t1, self.proton)
        if not all(np.isfinite(values)):
            raise ValueError(f"tissue {self.name!r}: properties must be finite, got {values}")
        if self.tsc < 0:
            raise ValueError(f"tissue {self.name!r}: TSC must be ≥ 0 mM, got {self.tsc}")
        if min(self.t2_fast, self.t2_slow, self.t1) <= 0:
            raise ValueError(f"tissue {self.name!r}: T2* and T1 must be > 0 ms")
        if not 0.0 <= self.frac_fast <= 1.0:
            raise ValueError(f"tissue {self.name!r}: frac_fast must lie in [0, 1], "
                             f"got {self.frac_fast}")


def lookup(labels: np.ndarray, tissues: dict[int, Tissue], attribute: str) -> np.ndarray:
    """Per-voxel ``attribute`` of each label's tissue, float32, shape of ``labels``.

    Labels without a tissue entry get 0.
    """
    table = np.zeros(max(int(labels.max()), max(tissues)) + 1, dtype=np.float32)
    for label, tissue in tissues.items():
        table[label] = getattr(tissue, attribute)
    return table[labels]


#: Air/background: no sodium. Relaxation values are placeholders (no signal to relax).
AIR = Tissue("air", tsc=0.0, t2_fast=1.0, t2_slow=1.0, frac_fast=0.0, t1=1.0, proton=0.0)


@dataclass(frozen=True)
class Tube:
    """A cylindrical reference tube seen in cross-section (2D) or as a cylinder along z (3D).

    Attributes
    ----------
    label : int
        Label of the tube's voxels in :attr:`Subject.labels`.
    concentration : float
        Sodium concentration in mM.
    centre_mm : tuple of float
        Centre relative to the grid centre, in mm, in the array's axis order.
    radius_mm : float
        Inner radius in mm.
    """

    label: int
    concentration: float
    centre_mm: tuple[float, ...]
    radius_mm: float


@dataclass(frozen=True)
class Subject:
    """A virtual subject with a known ground truth.

    Attributes
    ----------
    kind : str
        ``"calf"``, ``"brain"`` or ``"breast"``.
    seed : int
        The seed that fully determines the subject.
    labels : ndarray of int16, shape (Ny, Nx) or (Nx, Ny, Nz)
        Tissue label per fine-grid voxel; 0 is air.
    tissues : dict of int to Tissue
        This subject's properties per label (population variability already drawn).
    proton : ndarray of float32, same shape as ``labels``
        Matching 1H image (arbitrary units).
    voxel_mm : tuple of float
        Fine-grid voxel size in mm per axis.
    tubes : tuple of Tube
        Reference tubes (their labels are keys of ``tissues``).
    extra : dict
        Generator-specific extras (e.g. a brain mask, lesion info); arrays share the grid.
    tsc_texture : ndarray of float, same shape as ``labels``, optional
        Multiplicative within-tissue TSC texture (dimensionless, > 0, mean ≈ 1 per tissue);
        ``None`` means each tissue has one constant TSC. It scales the sodium signal only
        (relaxation stays per label).
    """

    kind: str
    seed: int
    labels: np.ndarray
    tissues: dict[int, Tissue]
    proton: np.ndarray
    voxel_mm: tuple[float, ...]
    tubes: tuple[Tube, ...] = ()
    extra: dict = field(default_factory=dict)
    tsc_texture: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.validate()

    # --- geometry -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Fine-grid shape."""
        return self.labels.shape

    @property
    def ndim(self) -> int:
        """2 or 3."""
        return self.labels.ndim

    @property
    def fov_mm(self) -> tuple[float, ...]:
        """Field of view in mm per axis (shape × voxel size)."""
        return tuple(n * d for n, d in zip(self.shape, self.voxel_mm, strict=True))

    # --- maps -----------------------------------------------------------------------------
    def _lookup(self, attribute: str) -> np.ndarray:
        return lookup(self.labels, self.tissues, attribute)

    @property
    def tsc(self) -> np.ndarray:
        """True tissue sodium concentration in mM, float32, fine grid (texture included)."""
        tsc = self._lookup("tsc")
        if self.tsc_texture is None:
            return tsc
        return (tsc * self.tsc_texture).astype(np.float32)

    @property
    def t2_fast(self) -> np.ndarray:
        """Fast T2* component in ms."""
        return self._lookup("t2_fast")

    @property
    def t2_slow(self) -> np.ndarray:
        """Slow T2* component in ms."""
        return self._lookup("t2_slow")

    @property
    def frac_fast(self) -> np.ndarray:
        """Fraction of the sodium signal in the fast T2* component."""
        return self._lookup("frac_fast")

    @property
    def t1(self) -> np.ndarray:
        """T1 in ms."""
        return self._lookup("t1")

    def mask(self, *names: str) -> np.ndarray:
        """Boolean mask of the voxels whose tissue name is one of ``names``."""
        known = {tissue.name for tissue in self.tissues.values()}
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"unknown tissue(s) {unknown}: this {self.kind} subject has "
                             f"{sorted(known)}")
        labels = [label for label, tissue in self.tissues.items() if tissue.name in names]
        return np.isin(self.labels, labels)

    def label_of(self, name: str) -> int:
        """The label of the tissue called ``name``."""
        for label, tissue in self.tissues.items():
            if tissue.name == name:
                return label
        raise ValueError(f"unknown tissue {name!r} in this {self.kind} subject")

    def with_tissues(self, **changes: Tissue) -> Subject:
        """A copy with some tissues replaced, by name (e.g. ``muscle=Tissue(...)``)."""
        tissues = dict(self.tissues)
        for name, tissue in changes.items():
            tissues[self.label_of(name)] = tissue
        return replace(self, tissues=tissues)

    # --- checks ---------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError if the arrays or tables are inconsistent."""
        if self.labels.ndim not in (2, 3):
            raise ValueError(f"labels must be 2D or 3D, got shape {self.labels.shape}")
        if not np.issubdtype(self.labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got {self.labels.dtype}")
        if self.proton.shape != self.labels.shape:
            raise ValueError(f"proton image shape {self.proton.shape} != labels "
                             f"{self.labels.shape}")
        if not np.all(np.isfinite(self.proton)):
            raise ValueError("proton image contains NaN or infinity")
        if len(self.voxel_mm) != self.labels.ndim or min(self.voxel_mm) <= 0:
            raise ValueError(f"voxel_mm {self.voxel_mm} must give one positive size per axis")
        missing = sorted(set(np.unique(self.labels).tolist()) - set(self.tissues))
        if missing:
            raise ValueError(f"labels {missing} have no entry in the tissue table")
        for tube in self.tubes:
            if tube.label not in self.tissues:
                raise ValueError(f"tube label {tube.label} has no tissue entry")
        texture = self.tsc_texture
        if texture is not None:
            if np.shape(texture) != self.labels.shape:
                raise ValueError(f"tsc_texture shape {np.shape(texture)} != labels "
                                 f"{self.labels.shape}")
            if not np.all(np.isfinite(texture)):
                raise ValueError("tsc_texture contains NaN or infinity")
            if not np.all(np.asarray(texture) > 0):
                raise ValueError(f"tsc_texture must be > 0 everywhere, got a minimum of "
                                 f"{np.min(texture):g}")
