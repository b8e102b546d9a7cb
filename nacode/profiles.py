"""Execution profiles: the one place that sets every notebook's parameters.

``quick`` runs the whole book on 2 CPU cores in minutes; its values are also the defaults in
each notebook's cell tagged ``parameters`` (a test keeps the two equal). ``full`` is paper scale,
meant for a GPU; papermill injects it. Every notebook additionally receives ``profile`` and
``device``.
"""

from __future__ import annotations

import copy
from typing import Any

PROFILE_NAMES = ("quick", "full")
DEVICES = ("cpu", "cuda")

#: Parameters per profile, then per notebook (the notebook's file stem in ``book/``).
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "intro": {},  # reads the other chapters' results; only profile and device
        "primer": {"seed": 0, "nsas": [150, 50, 30, 10], "bench_repeats": 20},
        "calf": {"test_limit": 60, "val_limit": 30, "demo_images": 32, "demo_epochs": 2,
                 "train_epochs": 0, "volunteers": 10, "cs_iter": 3000, "cs_tol": 1e-4,
                 "cs_seeds": [98, 99]},
        "mni152": {
            "resolution_mm": 2,  # nilearn's 2 mm resampling of the 1 mm templates
        },
        "brain": {"n_subjects": 13, "snr": 10.0, "train_folds": False, "max_epochs": 200,
                  "demo_epochs": 2, "demo_patches": 12800, "bench_repeats": 5,
                  "nlm_tuning_acquisitions": 1},
        "breast": {"matrix": 64, "n_healthy": 6, "n_val": 2, "n_patients": 4,
                   "patient_rates": [4], "dip_budget": 300, "dip_every": 10, "dip_base": 8,
                   "dip_levels": 4, "window": 16, "patience": 50, "var_tol": 1e-5,
                   "var_iter": 3000, "model_combines": ["adaptive"],
                   "dip_combines": ["adaptive"], "ablation_per_cohort": 1,
                   "tune_dip": "committed", "seed": 0},
        "benchmark": {"levels": [5.0, 10.0], "n_test": 4, "cs_iter": 3000, "dip_iter": 200,
                      "dip_base": 8, "dip_levels": 4, "dip_lr": 0.01, "window": 16,
                      "patience": 40, "breast_matrix": 64, "bench_quick": True, "seed": 0},
        "own_data": {"iterations": 20},  # primal-dual iterations of recon --method cs/dtv
    },
    "full": {
        "intro": {},
        "primer": {"seed": 0, "nsas": [150, 50, 30, 10], "bench_repeats": 100},
        "calf": {"test_limit": 0, "val_limit": 60, "demo_images": 48, "demo_epochs": 2,
                 "train_epochs": 100, "volunteers": 10, "cs_iter": 5000, "cs_tol": 1e-5,
                 "cs_seeds": [96, 97, 98, 99]},
        "mni152": {
            "resolution_mm": 1,  # the templates' native 1 mm grid
        },
        "brain": {"n_subjects": 13, "snr": 10.0, "train_folds": True, "max_epochs": 200,
                  "demo_epochs": 3, "demo_patches": 19200, "bench_repeats": 20,
                  "nlm_tuning_acquisitions": 3},
        "breast": {"matrix": 128, "n_healthy": 8, "n_val": 2, "n_patients": 6,
                   "patient_rates": [2, 4, 6, 8], "dip_budget": 3000, "dip_every": 25,
                   "dip_base": 32, "dip_levels": 4, "window": 64, "patience": 300,
                   "var_tol": 1e-5, "var_iter": 5000, "model_combines": ["sos", "adaptive"],
                   "dip_combines": ["sos", "adaptive"],
                   "ablation_per_cohort": 0, "tune_dip": "live", "seed": 0},
        "benchmark": {"levels": [3.0, 5.0, 10.0, 20.0], "n_test": 6, "cs_iter": 5000,
                      "dip_iter": 3000, "dip_base": 32, "dip_levels": 4, "dip_lr": 0.01,
                      "window": 64, "patience": 300, "breast_matrix": 128,
                      "bench_quick": False, "seed": 0},
        "own_data": {"iterations": 100},
    },
}


def parameters(
    notebook: str,
    profile: str = "quick",
    device: str = "cpu",
    profiles: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Return the parameters papermill injects into one notebook.

    Parameters
    ----------
    notebook : str
        Notebook stem, e.g. ``"mni152"`` for ``book/mni152.md``.
    profile : {"quick", "full"}
        Execution profile.
    device : {"cpu", "cuda"}
        Torch device the notebook computes on.
    profiles : dict, optional
        Profile table to use instead of :data:`PROFILES` (tests).

    Returns
    -------
    dict
        The notebook's parameters plus ``profile`` and ``device``.

    Raises
    ------
    ValueError
        For an unknown profile, device or notebook.
    """
    table = PROFILES if profiles is None else profiles
    if profile not in table:
        raise ValueError(f"unknown profile {profile!r}: expected one of {sorted(table)}")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {list(DEVICES)}")
    if notebook not in table[profile]:
        raise ValueError(
            f"notebook {notebook!r} has no {profile!r} parameters: add it to "
            f"nacode/profiles.py (known: {sorted(table[profile])})"
        )
    params = copy.deepcopy(table[profile][notebook])
    params.update(profile=profile, device=device)
    return params
