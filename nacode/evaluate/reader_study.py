"""A blinded reader-study kit for subjective image-quality ranking (the calf paper's Table 3).

The paper's observers saw, per volunteer and number of averages, the four images (reference,
NUFFT, CS, CNN) anonymised and in random order, and ranked them from best (1) to worst (4)
with competition ranking (ties allowed: 1, 1, 3, 4). :func:`make_kit` writes one PNG sheet
per case with the images labelled A–D in a random order, a blank ranking form for the readers
and a separate key; :func:`analyse` reads the returned forms, checks every row, and reports
mean ± SD ranks and the paper's pairwise paired t-tests (pingouin).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

PANELS = ("A", "B", "C", "D")


def make_kit(cases: dict, out_dir: str | Path, *, seed: int = 0, vmax: float | None = None
             ) -> dict[str, Path]:
    """Write anonymised sheets, a blank form and the key.

    Parameters
    ----------
    cases : dict
        ``{(volunteer, nsa): {method: image (H, W)}}`` with the same methods in every case.
    out_dir : path
        Output folder (created); sheets go to ``sheets/``, the key to ``key.csv`` — keep it
        from the readers — and the form to ``ranking_form.csv``.
    seed : int
        Seeds the case order and the panel permutation.
    vmax : float, optional
        Common display maximum (default: each case's 99.5th percentile over its images).

    Returns
    -------
    dict of str to Path
        ``sheets`` folder, ``key`` and ``form`` paths.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import pandas as pd

    from nacode.results import atomic_write

    out_dir = Path(out_dir)
    sheets = out_dir / "sheets"
    sheets.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    keys = list(cases)
    methods = sorted(next(iter(cases.values())))
    if len(methods) > len(PANELS):
        raise ValueError(f"at most {len(PANELS)} methods per case, got {methods}")
    key_rows, form_rows = [], []
    for number, index in enumerate(rng.permutation(len(keys)), start=1):
        volunteer, nsa = keys[index]
        images = cases[keys[index]]
        if sorted(images) != methods:
            raise ValueError(f"case {keys[index]} has methods {sorted(images)}, expected "
                             f"{methods}")
        order = [methods[i] for i in rng.permutation(len(methods))]
        case = f"case{number:03d}"
        top = vmax or max(float(np.percentile(images[m], 99.5)) for m in methods)
        fig, axes = plt.subplots(1, len(order), figsize=(3.0 * len(order), 3.3))
        for ax, panel, method in zip(axes, PANELS, order, strict=False):
            ax.imshow(images[method], cmap="gray", vmin=0, vmax=top)
            ax.set_title(panel)
            ax.axis("off")
            key_rows.append({"case": case, "volunteer": volunteer, "nsa": nsa,
                             "panel": panel, "method": method})
        fig.suptitle(case)
        with atomic_write(sheets / f"{case}.png", "wb") as handle:
            fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        form_rows.append({"case": case, **{p: "" for p in PANELS[:len(order)]}})
    paths = {"sheets": sheets, "key": out_dir / "key.csv", "form": out_dir / "ranking_form.csv"}
    for name, rows in (("key", key_rows), ("form", form_rows)):
        with atomic_write(paths[name], "w", encoding="utf-8", newline="") as handle:
            pd.DataFrame(rows).to_csv(handle, index=False)
    return paths


def check_competition_ranking(ranks) -> bool:
    """True for a valid standard competition ranking (e.g. 1, 2, 2, 4; not 1, 2, 2, 3)."""
    ranks = sorted(int(r) for r in ranks)
    return all(r == 1 + sum(1 for s in ranks if s < r) for r in ranks)


def read_forms(key, forms):
    """Long table of ranks: ``reader, case, volunteer, nsa, method, rank``.

    ``forms`` maps a reader name to a filled form (CSV path or DataFrame). Every row must hold
    a valid competition ranking; a bad row raises ``ValueError`` naming the reader and case.
    """
    import pandas as pd

    key = pd.read_csv(key) if not isinstance(key, pd.DataFrame) else key
    rows = []
    for reader, form in forms.items():
        table = pd.read_csv(form) if not isinstance(form, pd.DataFrame) else form
        panels = [p for p in PANELS if p in table.columns]
        for _, row in table.iterrows():
            values = row[panels]
            if values.isna().any() or not check_competition_ranking(values):
                raise ValueError(f"reader {reader}, {row['case']}: ranks {list(values)} are not "
                                 "a competition ranking from 1 (best) to "
                                 f"{len(panels)} (worst); fix the form")
            for panel in panels:
                match = key[(key["case"] == row["case"]) & (key["panel"] == panel)]
                if match.empty:
                    raise ValueError(f"reader {reader}: {row['case']} panel {panel} is not in "
                                     "the key; was the form edited?")
                rows.append({"reader": reader, "case": row["case"],
                             "volunteer": match["volunteer"].iloc[0],
                             "nsa": int(match["nsa"].iloc[0]),
                             "method": match["method"].iloc[0], "rank": int(row[panel])})
    return pd.DataFrame(rows)


def analyse(key, forms):
    """Table 3: mean ± SD rank per NSA and method, and pairwise paired t-tests.

    Returns
    -------
    table : pandas.DataFrame
        ``nsa, method, mean, sd, n``.
    tests : pandas.DataFrame
        ``nsa, A, B, T, p`` — paired t-tests between methods over (reader, case) pairs.
    """
    import pandas as pd
    import pingouin as pg

    ranks = read_forms(key, forms)
    table = (ranks.groupby(["nsa", "method"])["rank"].agg(["mean", "std", "count"])
             .reset_index().rename(columns={"std": "sd", "count": "n"}))
    ranks["observation"] = ranks["reader"].astype(str) + "/" + ranks["case"]
    tests = []
    for nsa, group in ranks.groupby("nsa"):
        # two methods ranked identically on every observation have zero paired variance:
        # T and p come back NaN (reported as such), and scipy and pingouin warn about it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = pg.pairwise_tests(data=group, dv="rank", within="method",
                                       subject="observation", parametric=True, padjust="none")
        for _, row in result.iterrows():
            tests.append({"nsa": nsa, "A": row["A"], "B": row["B"], "T": row["T"],
                          "p": row["p_unc"]})
    return table, pd.DataFrame(tests)


def simulate_forms(key, quality: dict[str, float], *, readers: int = 2, noise: float = 0.5,
                   seed: int = 0):
    """Rankings from simulated readers who see ``quality[method]`` plus Gaussian noise.

    Higher quality ranks better; equal noisy scores (after rounding to 0.5) tie. For testing
    :func:`analyse` and for teaching; not a substitute for human readers.
    """
    import pandas as pd
    from scipy.stats import rankdata

    key = pd.read_csv(key) if not isinstance(key, pd.DataFrame) else key
    rng = np.random.default_rng(seed)
    forms = {}
    for reader in range(readers):
        rows = []
        for case, group in key.groupby("case", sort=True):
            scores = [round(2 * (quality[m] + noise * rng.standard_normal())) / 2
                      for m in group["method"]]
            ranks = rankdata([-s for s in scores], method="min").astype(int)
            rows.append({"case": case, **dict(zip(group["panel"], ranks, strict=True))})
        forms[f"reader{reader + 1}"] = pd.DataFrame(rows)
    return forms
