"""Literature sodium properties of the tissues the virtual subjects are made of.

Values are population means; ``TSC_SD`` gives the between-subject standard deviation each
generator draws from (:func:`draw`). Sources: the calf paper's 150-average reference values
(muscle 21.5 mM, skin 18.8 mM); bi-exponential T2* in tissue, ~60 % fast (0.5–5 ms) and
40 % slow (12–30 ms), e.g. WM 3.4/23.5 ms, GM 3.9/26.3 ms, calf muscle ≈ 3/13 ms; fluids
mono-exponential ≈ 50–60 ms; T1 ≈ 25–40 ms (Madelin et al. 2014). Tubes are NaCl in agar gel,
whose relaxation resembles tissue (assumed 3/15 ms, 60 % fast, T1 30 ms). ``proton`` is a
T1-weighted-looking 1H intensity (fat bright, fluid dark).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from nacode.anatomy.subject import Tissue

LITERATURE: dict[str, Tissue] = {
    t.name: t
    for t in (
        # calf and breast soft tissue
        Tissue("muscle", tsc=21.5, t2_fast=3.0, t2_slow=13.0, frac_fast=0.6, t1=30.0, proton=0.35),
        Tissue("skin", tsc=18.8, t2_fast=3.0, t2_slow=15.0, frac_fast=0.6, t1=30.0, proton=0.55),
        Tissue("fat", tsc=8.0, t2_fast=2.0, t2_slow=12.0, frac_fast=0.6, t1=25.0, proton=1.0),
        Tissue("cortical_bone", tsc=4.0, t2_fast=0.5, t2_slow=5.0, frac_fast=0.8, t1=15.0,
               proton=0.03),
        Tissue("marrow", tsc=10.0, t2_fast=2.0, t2_slow=12.0, frac_fast=0.6, t1=25.0,
               proton=0.9),
        Tissue("vessel", tsc=80.0, t2_fast=3.0, t2_slow=25.0, frac_fast=0.6, t1=35.0,
               proton=0.2),
        Tissue("fibroglandular", tsc=35.0, t2_fast=3.0, t2_slow=20.0, frac_fast=0.6, t1=30.0,
               proton=0.45),
        Tissue("tumour", tsc=85.0, t2_fast=3.5, t2_slow=25.0, frac_fast=0.6, t1=35.0,
               proton=0.5),
        # brain
        Tissue("GM", tsc=40.0, t2_fast=3.9, t2_slow=26.3, frac_fast=0.6, t1=35.0, proton=0.55),
        Tissue("WM", tsc=32.0, t2_fast=3.4, t2_slow=23.5, frac_fast=0.6, t1=30.0, proton=0.8),
        Tissue("CSF", tsc=140.0, t2_fast=55.0, t2_slow=55.0, frac_fast=0.0, t1=50.0,
               proton=0.15),
        # reference tubes (agar gel; the concentration is set per tube)
        Tissue("tube", tsc=50.0, t2_fast=3.0, t2_slow=15.0, frac_fast=0.6, t1=30.0, proton=0.6),
    )
}

#: Between-subject standard deviation of TSC (mM); tissues not listed do not vary.
TSC_SD: dict[str, float] = {
    "muscle": 3.0, "skin": 4.0, "fat": 1.5, "marrow": 1.5, "vessel": 8.0,
    "fibroglandular": 4.0, "tumour": 0.0, "GM": 3.0, "WM": 2.5, "CSF": 5.0,
}

#: Concentrations (mM) of the calibration tubes of the calf paper.
TUBE_CONCENTRATIONS = (10.0, 25.0, 50.0, 75.0, 100.0)


def draw(name: str, rng: np.random.Generator, *, rename: str | None = None,
         **overrides: float) -> Tissue:
    """A subject's version of a literature tissue, TSC drawn around the population mean.

    Parameters
    ----------
    name : str
        Key of :data:`LITERATURE`.
    rng : numpy.random.Generator
        Source of the subject's variability.
    rename : str, optional
        Name of the returned tissue (e.g. ``"muscle_anterior"``).
    **overrides
        Fixed property values that replace the literature ones (no draw for those).

    Returns
    -------
    Tissue
        TSC ~ Normal(mean, TSC_SD[name]) truncated to ≥ 25 % of the mean, unless overridden.
    """
    if name not in LITERATURE:
        raise ValueError(f"unknown tissue {name!r}: expected one of {sorted(LITERATURE)}")
    base = LITERATURE[name]
    tsc = base.tsc + TSC_SD.get(name, 0.0) * rng.standard_normal()
    tissue = replace(base, name=rename or name, tsc=float(max(tsc, 0.25 * base.tsc)))
    return replace(tissue, **overrides) if overrides else tissue


def tube(concentration: float) -> Tissue:
    """The tissue of a reference tube of ``concentration`` mM (named ``tube_<c>mM``)."""
    if not np.isfinite(concentration) or concentration < 0:
        raise ValueError(f"tube concentration must be a finite value ≥ 0 mM, got {concentration}")
    return replace(LITERATURE["tube"], name=f"tube_{concentration:g}mM", tsc=float(concentration))
