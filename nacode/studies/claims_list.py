"""The quantitative claims of the three papers, declared one by one (rules: :mod:`.claims`).

The papers' numbers are quoted here with their table or section; ours are read by the readers
below from the CSVs the chapters write (``results/<chapter>/<name>.csv``), never typed. A reader
raises :class:`~nacode.studies.claims.NotMeasured` when its CSV or row is not in this build.
Targets are MyST labels (``(label)=``) above the chapters' section headings.
"""

from __future__ import annotations

from pathlib import Path

from nacode.studies.claims import (
    ATSC_MM,
    EQUAL,
    PSNR_DB,
    RELATIVE,
    SSIM,
    TIME,
    Cell,
    Claim,
    NotMeasured,
)

#: Table 1 of the calf paper (medians): NSA → (input PSNR dB, denoised PSNR dB, input SSIM,
#: denoised SSIM).
CALF_TABLE1 = {50: (29.0, 33.7, 0.77, 0.92), 40: (28.0, 33.1, 0.73, 0.91),
               30: (26.9, 32.6, 0.68, 0.90), 20: (25.2, 31.6, 0.61, 0.88),
               10: (22.5, 30.3, 0.48, 0.84)}
CALF_NSAS = tuple(CALF_TABLE1)
#: Tables 2 and 3 of the brain paper: metric → method → (mean, median) improvement (%).
BRAIN_TABLES = {"psnr": {"NLM": (1.95, 1.96), "DAE": (2.37, 2.42)},
                "ssim": {"NLM": (18.85, 18.88), "DAE": (28.75, 28.93)}}
#: The breast chapter's stand-ins for the abstract's "state-of-the-art reconstruction techniques".
BREAST_OTHERS = ("gridding", "NLM", "BM3D", "CS-TV", "dTV (1H)", "dTV (fused)", "DIP")


def csv(results: Path, chapter: str, name: str):
    """Read ``results/<chapter>/<name>.csv``; :class:`NotMeasured` if this build lacks it."""
    import pandas as pd

    path = Path(results) / chapter / f"{name}.csv"
    if not path.is_file():
        raise NotMeasured(f"{chapter}/{name}.csv")
    return pd.read_csv(path)


def one(frame, **where):
    """The first row of ``frame`` whose columns equal ``where``; :class:`NotMeasured` if none."""
    rows = frame
    for column, value in where.items():
        rows = rows[rows[column] == value]
    if rows.empty:
        raise NotMeasured(f"no row with {where}")
    return rows.iloc[0]


# --- calf ------------------------------------------------------------------------------------

def _table1(results):
    return csv(results, "calf", "table1_synthetic")


def t1_gain(nsa: int, metric: str):
    """Denoised minus input median ``metric`` (psnr | ssim) at ``nsa``, Table 1."""
    def read(results):
        t = _table1(results)
        gain = (one(t, nsa=nsa, image="denoised")[f"{metric}_median"]
                - one(t, nsa=nsa, image="input")[f"{metric}_median"])
        return [Cell(f"NSA {nsa}", float(gain))]
    return read


def t1_versus_input(metric: str):
    """Per NSA: the denoised median ``metric`` against the input's, with the Wilcoxon p."""
    def read(results):
        t = _table1(results)
        cells = []
        for nsa in (n for n in CALF_NSAS if n in set(t["nsa"])):
            denoised, noisy = one(t, nsa=nsa, image="denoised"), one(t, nsa=nsa, image="input")
            cells.append(Cell(f"NSA {nsa}", float(denoised[f"{metric}_median"]),
                              float(noisy[f"{metric}_median"]), float(denoised[f"p_{metric}"])))
        return cells
    return read


def snr_pair(a: str, b: str, nsas=CALF_NSAS):
    """Per NSA: mean estimated SNR of method ``a`` against ``b`` and their Wilcoxon p (Table 2)."""
    def read(results):
        quality = csv(results, "calf", "table2_quality")
        tests = csv(results, "calf", "table2_tests")
        tests = tests[tests["metric"] == "snr"]
        cells = []
        for nsa in nsas:
            pair = tests[(tests["nsa"] == nsa) & (((tests["A"] == a) & (tests["B"] == b))
                                                  | ((tests["A"] == b) & (tests["B"] == a)))]
            cells.append(Cell(f"NSA {nsa}", float(one(quality, nsa=nsa, method=a)["snr_mean"]),
                              float(one(quality, nsa=nsa, method=b)["snr_mean"]),
                              float(pair["p"].iloc[0]) if len(pair) else None))
        return cells
    return read


def snr_at(method: str, nsa: int):
    """Mean estimated SNR of ``method`` at ``nsa`` (Table 2)."""
    def read(results):
        row = one(csv(results, "calf", "table2_quality"), nsa=nsa, method=method)
        return [Cell(f"NSA {nsa}", float(row["snr_mean"]))]
    return read


def edge_ratio(results):
    """Per NSA: the CNN's mean edge sharpness over the reference's (Table 2)."""
    quality = csv(results, "calf", "table2_quality")
    return [Cell(f"NSA {nsa}", float(one(quality, nsa=nsa, method="cnn")["edge_mean"]
                                     / one(quality, nsa=nsa, method="reference")["edge_mean"]))
            for nsa in CALF_NSAS]


def bias(tissue: str, method: str, nsas=CALF_NSAS, *, absolute=False, against_zero=False):
    """Per NSA: Bland–Altman bias (mM) of ``method``'s ``tissue`` aTSC against the reference
    (Tables 4 and 5), optionally its absolute value; with the t-test's p."""
    name = {"muscle": "table4_muscle", "skin": "table5_skin"}[tissue]

    def read(results):
        t = csv(results, "calf", name)
        cells = []
        for nsa in nsas:
            row = one(t, nsa=nsa, method=method)
            value = abs(float(row["bias"])) if absolute else float(row["bias"])
            cells.append(Cell(f"NSA {nsa}", value, 0.0 if against_zero else None,
                              float(row["bias_p"])))
        return cells
    return read


def reference_atsc(tissue: str):
    """Median aTSC (mM) of the 150-average reference (Tables 4 and 5)."""
    name = {"muscle": "table4_muscle", "skin": "table5_skin"}[tissue]

    def read(results):
        return [Cell("reference", float(one(csv(results, "calf", name),
                                            method="reference")["atsc_median"]))]
    return read


def tube_change(results):
    """Per NSA ≥ 30: the CNN's largest absolute median change (%) of a tube of 25 mM or more."""
    worst = csv(results, "calf", "tube_change_worst")
    return [Cell(f"NSA {nsa}", abs(float(one(worst, nsa=nsa, method="cnn")["tube_change_pct"])))
            for nsa in (50, 40, 30)]


def timing(what: str):
    """Seconds per slice of gridding + CNN (``"cnn"``) or CS (``"cs"``), or their ratio."""
    def read(results):
        seconds = csv(results, "calf", "timing").set_index("method")["median_s"]
        pipeline = float(seconds["nufft"] + seconds["cnn"])
        value = {"cnn": pipeline, "cs": float(seconds["cs"]),
                 "speedup": float(seconds["cs"]) / pipeline}[what]
        return [Cell(what, value)]
    return read


# --- brain -----------------------------------------------------------------------------------

def _brain(results, metric):
    return csv(results, "brain", {"psnr": "table2_psnr", "ssim": "table3_ssim"}[metric])


def improvement(metric: str, method: str, stat: str):
    """Mean or median relative improvement (%) of ``metric`` by ``method`` (Tables 2, 3)."""
    def read(results):
        return [Cell(stat, float(one(_brain(results, metric), method=method)[stat]))]
    return read


def dae_over_nlm(metric: str, stats=("mean", "median")):
    """The DAE's improvement against NLM's, for each statistic (Tables 2, 3)."""
    def read(results):
        t = _brain(results, metric)
        return [Cell(stat, float(one(t, method="DAE")[stat]), float(one(t, method="NLM")[stat]))
                for stat in stats]
    return read


def sd_larger(results):
    """The SD of the DAE's improvement against NLM's, pSNR and SSIM."""
    return [Cell(f"{name} σ", float(one(_brain(results, metric), method="DAE")["sd"]),
                 float(one(_brain(results, metric), method="NLM")["sd"]))
            for metric, name in (("psnr", "pSNR"), ("ssim", "SSIM"))]


# --- breast ----------------------------------------------------------------------------------

def beats_dip_and_cs(metric: str):
    """Per (R, combination), healthy: DIP-Fusion's median against the better of DIP, CS-TV."""
    def read(results):
        return [Cell(f"R = {r['R']} ({r['combine']})", float(r[f"{metric}_DIP-Fusion"]),
                     max(float(r[f"{metric}_DIP"]), float(r[f"{metric}_CS-TV"])))
                for _, r in csv(results, "breast", "target").iterrows()]
    return read


def beats_every_other(results):
    """Per (R, combination), healthy: DIP-Fusion's median PSNR against the best other method."""
    medians = csv(results, "breast", "healthy_medians")
    cells = []
    for (rate, comb), group in medians[medians["R"] > 1].groupby(["R", "combine"]):
        others = group[group["method"].isin(BREAST_OTHERS)]
        if "DIP-Fusion" in set(group["method"]) and len(others):
            best = others.loc[others["psnr_median"].idxmax()]
            cells.append(Cell(f"R = {rate} ({comb}; best other {best['method']})",
                              float(one(group, method="DIP-Fusion")["psnr_median"]),
                              float(best["psnr_median"])))
    return cells


def _fusion_vs_dip(frame, value):
    cells = []
    for (rate, comb), group in frame[frame["R"] > 1].groupby(["R", "combine"]):
        med = group.groupby("method")[value].median()
        if {"DIP-Fusion", "DIP"} <= set(med.index):
            cells.append(Cell(f"R = {rate} ({comb})", float(med["DIP-Fusion"]), float(med["DIP"])))
    return cells


def patients(metric: str):
    """Per (R, combination), patients: DIP-Fusion's median ``metric`` against DIP's."""
    def read(results):
        metrics = csv(results, "breast", "metrics")
        return _fusion_vs_dip(metrics[metrics["cohort"] == "patient"], metric)
    return read


def sodium_lesion(results):
    """Per (R, combination), patients: median absolute relative error of the sodium-only lesion's
    contrast, DIP-Fusion against DIP."""
    lesions = csv(results, "breast", "lesion_contrast")
    lesions = lesions[lesions["kind"] == "sodium_only"]
    return _fusion_vs_dip(lesions.assign(error=lesions["relative_error"].abs()), "error")


# --- the claims ------------------------------------------------------------------------------

_HARDWARE = "this build's hardware, not the paper's"
CLAIMS: tuple[Claim, ...] = (
    *(Claim(f"calf-t1-psnr-gain-{n}", "calf", f"PSNR gain of the CNN over its input, NSA {n}",
            "Table 1", f"+{d - i:.1f} dB ({i} → {d})", "magnitude", t1_gain(n, "psnr"),
            "calf-table1", paper=round(d - i, 2), tolerance=PSNR_DB, unit="dB", fmt="+.2f")
      for n, (i, d, _, _) in CALF_TABLE1.items()),
    *(Claim(f"calf-t1-ssim-gain-{n}", "calf", f"SSIM gain of the CNN over its input, NSA {n}",
            "Table 1", f"+{d - i:.2f} ({i:.2f} → {d:.2f})", "magnitude", t1_gain(n, "ssim"),
            "calf-table1", paper=round(d - i, 3), tolerance=SSIM, fmt="+.3f")
      for n, (_, _, i, d) in CALF_TABLE1.items()),
    *(Claim(f"calf-t1-{m}-better", "calf", f"Denoised {label} than input at every NSA",
            "Table 1, §3.1", "p < 0.001 at every NSA", "direction", t1_versus_input(m),
            "calf-table1", sense=sense, significance=True, fmt=fmt)
      for m, label, sense, fmt in (("psnr", "PSNR higher", ">", ".1f"),
                                   ("ssim", "SSIM higher", ">", ".3f"),
                                   ("mse", "MSE lower", "<", ".2e"))),
    Claim("calf-t2-cnn-nufft", "calf", "Estimated SNR: CNN > NUFFT at every NSA", "Table 2",
          "p = 0.012", "direction", snr_pair("cnn", "nufft"), "calf-table2", significance=True),
    Claim("calf-t2-cnn-cs", "calf", "Estimated SNR: CNN > CS at every NSA", "Table 2, §3.2.1",
          "p = 0.012", "direction", snr_pair("cnn", "cs"), "calf-table2", significance=True),
    Claim("calf-t2-cs-nufft", "calf", "Estimated SNR: CS > NUFFT at every NSA", "§3.2.1",
          "p = 0.012", "direction", snr_pair("cs", "nufft"), "calf-table2", significance=True),
    Claim("calf-t2-cnn-ref", "calf", "Estimated SNR: CNN > 150-average reference, NSA 20–50",
          "§3.2.1", "p ≤ 0.023", "direction", snr_pair("cnn", "reference", (50, 40, 30, 20)),
          "calf-table2", significance=True),
    Claim("calf-t2-cs-ref", "calf", "Estimated SNR: CS < reference, NSA 10–40", "§3.2.1",
          "p ≤ 0.035", "direction", snr_pair("cs", "reference", (40, 30, 20, 10)),
          "calf-table2", sense="<", significance=True),
    *(Claim(f"calf-t2-snr-{m}-30", "calf", f"Estimated SNR of {name} at NSA 30", "Table 2",
            f"{v} (median)", "magnitude", snr_at(m, 30), "calf-table2", paper=v,
            tolerance=RELATIVE, fmt=".1f", note="ours: mean")
      for m, name, v in (("cnn", "the CNN", 21.2), ("cs", "CS", 5.9), ("nufft", "NUFFT", 3.6))),
    Claim("calf-t2-edge", "calf", "Edge sharpness of the CNN equals the reference's, every NSA",
          "Table 2, §3.2.1", "12.4–12.8 vs 12.6 mM/mm (ratio ≈ 1)", "magnitude", edge_ratio,
          "calf-table2", paper=1.0, tolerance=EQUAL, neutral=1.0, fmt=".3f"),
    Claim("calf-t3-ranking", "calf", "Readers rank the CNN equal to the reference, above CS "
          "and NUFFT", "Table 3", "p ≤ 0.031", "direction", None, "calf-reader-study",
          sense="<", significance=True,
          note="needs human readers; the chapter writes the blinded kit"),
    *(Claim(f"calf-bias-{t}-abstract", "calf", f"{t.capitalize()} aTSC |bias| of the CNN "
            "< 0.9 mM, NSA 30–50", "Abstract, §4.2", "< 0.9 mM", "direction",
            bias(t, "cnn", (50, 40, 30), absolute=True), "calf-table45", sense="<", paper=0.9,
            unit="mM") for t in ("muscle", "skin")),
    *(Claim(f"calf-bias-{t}-{m}", "calf", f"{t.capitalize()} aTSC |bias| of {m.upper()} "
            f"< {v} mM at every NSA", "§3.2.2", f"< {v} mM", "direction",
            bias(t, m, absolute=True), "calf-table45", sense="<", paper=v, unit="mM")
      for t, m, v in (("muscle", "cs", 1.4), ("muscle", "cnn", 1.5), ("muscle", "nufft", 0.3),
                      ("skin", "cs", 2.3), ("skin", "cnn", 1.0), ("skin", "nufft", 0.2))),
    *(Claim(f"calf-sign-{t}-{m}", "calf", f"{t.capitalize()} aTSC of {m.upper()} "
            f"{'above' if s == '>' else 'below'} the reference at every NSA", "§3.2.2",
            f"bias {'> 0' if s == '>' else '< 0'}, p ≤ {p}", "direction",
            bias(t, m, against_zero=True), "calf-table45", sense=s, significance=True,
            unit="mM")
      for t, m, s, p in (("muscle", "cs", ">", 0.006), ("muscle", "cnn", ">", 0.006),
                         ("skin", "cs", "<", 0.011))),
    *(Claim(f"calf-bias-{t}-cnn-30", "calf", f"{t.capitalize()} aTSC bias of the CNN, NSA 30",
            f"Table {n}", f"{v:+.2f} mM".replace("-", "−"), "magnitude", bias(t, "cnn", (30,)),
            "calf-table45", paper=v, tolerance=ATSC_MM, unit="mM", fmt="+.2f")
      for t, n, v in (("muscle", 4, 0.47), ("skin", 5, -0.84))),
    *(Claim(f"calf-reference-{t}", "calf", f"{t.capitalize()} aTSC of the reference",
            f"Table {n}", f"{v} mM (median)", "magnitude", reference_atsc(t), "calf-table45",
            paper=v, tolerance=RELATIVE, unit="mM", fmt=".1f")
      for t, n, v in (("muscle", 4, 21.5), ("skin", 5, 18.8))),
    Claim("calf-tubes", "calf", "Denoising keeps the 100 mM phantoms' signal, NSA 30–50",
          "§4.1", "kept (no number; ±1 % is the chapter's reading)", "direction", tube_change,
          "calf-tubes", sense="<", paper=1.0, unit="%"),
    Claim("calf-time-cnn", "calf", "NUFFT + CNN time per slice", "§3.2, §4.2",
          "0.3 s (0.2 + 0.1)", "magnitude", timing("cnn"), "calf-timing", paper=0.3,
          tolerance=TIME, unit="s", fmt=".3g", note=_HARDWARE),
    Claim("calf-time-cs", "calf", "CS time per slice", "§3.2", "32.8 s", "magnitude",
          timing("cs"), "calf-timing", paper=32.8, tolerance=TIME, unit="s", fmt=".3g",
          note=_HARDWARE),
    Claim("calf-speedup", "calf", "NUFFT + CNN faster than CS", "§4.2", "100×", "magnitude",
          timing("speedup"), "calf-timing", paper=100.0, tolerance=TIME, neutral=1.0,
          unit="×", fmt=".3g"),
    *(Claim(f"brain-{m}-{meth.lower()}-{stat}", "brain",
            f"{stat.capitalize()} {'pSNR' if m == 'psnr' else 'SSIM'} improvement of {meth}",
            f"Table {2 if m == 'psnr' else 3}", f"+{vals[i]} %", "magnitude",
            improvement(m, meth, stat), "brain-tables23" if m == "psnr" else "brain-conventions",
            paper=vals[i], tolerance=RELATIVE, unit="%", fmt="+.2f")
      for m, table in BRAIN_TABLES.items() for meth, vals in table.items()
      for i, stat in enumerate(("mean", "median"))),
    *(Claim(f"brain-{m}-dae-over-nlm", "brain", f"DAE improves {name} more than NLM (mean "
            "and median)", f"Table {n}, §3.2", f"+{BRAIN_TABLES[m]['DAE'][0]} % vs "
            f"+{BRAIN_TABLES[m]['NLM'][0]} %", "direction", dae_over_nlm(m), "brain-tables23",
            unit="%") for m, name, n in (("psnr", "pSNR", 2), ("ssim", "SSIM", 3))),
    Claim("brain-sd", "brain", "The DAE's improvement varies more than NLM's (σ, pSNR and "
          "SSIM)", "Tables 2 and 3, §3.2", "σ 0.50 vs 0.33; 3.85 vs 3.39", "direction",
          sd_larger, "brain-tables23", unit="%"),
    Claim("breast-psnr-dip-cs", "breast", "Healthy: DIP-Fusion PSNR above DIP and CS-TV at "
          "every R", "Abstract", "outperforms, all undersampling factors", "direction",
          beats_dip_and_cs("psnr"), "breast-claim", unit="dB"),
    Claim("breast-ssim-dip-cs", "breast", "Healthy: DIP-Fusion SSIM above DIP and CS-TV at "
          "every R", "Abstract", "outperforms, all undersampling factors", "direction",
          beats_dip_and_cs("ssim"), "breast-claim", fmt=".3f"),
    Claim("breast-psnr-all", "breast", "Healthy: DIP-Fusion PSNR above every other method "
          "(network-free dTV included) at every R", "Abstract", "outperforms state of the art",
          "direction", beats_every_other, "breast-claim", unit="dB"),
    *(Claim(f"breast-patients-{m}", "breast", f"Patients: DIP-Fusion {name} above DIP",
            "Abstract", "superior to baseline DIP", "direction", patients(m),
            "breast-test-results", fmt=fmt, unit=unit)
      for m, name, fmt, unit in (("psnr", "PSNR", ".2f", "dB"), ("ssim", "SSIM", ".3f", ""))),
    Claim("breast-patients-lesion", "breast", "Patients: sodium-only lesion's contrast kept "
          "better than by DIP", "Abstract", "sodium-specific signal preservation", "direction",
          sodium_lesion, "breast-sodium-lesion", sense="<", fmt=".3f",
          note="ours: median |relative error|"),
)
