"""The breast study's scores and tables: metrics against two references, lesion contrast,
paired tests, the target, the ablation and what the network adds beyond dTV.

Every image is compared after one least-squares intensity factor (:func:`ls_scale`, the only
thing removed: each method has its own arbitrary scale) with two references: the noiseless
sodium signal block-averaged from the fine object (``truth``, as the study always has), and
the noiseless, fully sampled reconstruction of the same combination (``reference``: coil
shading and the acquisition's point-spread function included — what a real study could use).
"""

from __future__ import annotations

import numpy as np

#: Methods of the comparison in display order (BM3D only when installed).
METHODS = ("gridding", "NLM", "BM3D", "CS-TV", "dTV (1H)", "dTV (fused)", "DIP", "DIP-Fusion")


def ls_scale(truth: np.ndarray, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` times the scalar that best fits it to ``truth`` inside ``mask`` (least squares).

    Every method's output has its own arbitrary scale (coil normalisation, network output);
    the fit removes only that one number before the metrics compare shapes and contrasts.
    """
    image = np.asarray(image, dtype=np.float64)
    denominator = float((image[mask] ** 2).sum())
    return image * (float((truth[mask] * image[mask]).sum()) / denominator if denominator
                    else 0.0)


def psnr(scan, image: np.ndarray) -> float:
    """PSNR against the truth after the least-squares scale (peak: the truth's maximum)."""
    from nacode.evaluate.metrics import psnr as _psnr

    truth = scan.truth.astype(np.float64)
    return _psnr(truth, ls_scale(truth, image, scan.body), float(truth.max()))


def scores(scan, image: np.ndarray, combine: str) -> dict[str, float]:
    """PSNR, SSIM, MSE, FSIM against the truth, PSNR/SSIM against the fully sampled
    reference of ``combine``, Laplacian focus, and LPIPS if available."""
    from nacode.evaluate import metrics

    out = {}
    for prefix, ref in (("", scan.truth), ("ref_", scan.reference[combine])):
        ref = ref.astype(np.float64)
        fitted = ls_scale(ref, image, scan.body)
        peak = float(ref.max())
        out[f"{prefix}psnr"] = metrics.psnr(ref, fitted, peak)
        out[f"{prefix}ssim"] = metrics.ssim(ref, fitted, peak)
        if not prefix:
            out["mse"] = metrics.mse(ref, fitted)
            out["fsim"] = metrics.fsim(ref, fitted, peak)
            out["focus"] = metrics.laplacian_focus(fitted / peak)
            lpips = metrics.lpips_distance(ref / peak, np.clip(fitted / peak, 0, 1))
            out["lpips"] = np.nan if lpips is None else lpips
    return out


def lesion_rows(scan, image: np.ndarray) -> list[dict]:
    """Tumour-to-fibroglandular signal ratio of every lesion, measured and true (TSC ratio)."""
    fgt = float(np.mean(image[scan.rois["fibroglandular"]]))
    rows = []
    for lesion in scan.lesions:
        measured = float(np.mean(image[scan.rois[lesion["name"]]])) / fgt
        rows.append({"lesion": lesion["name"], "kind": lesion["kind"],
                     "true_ratio": lesion["tsc_ratio"], "measured_ratio": measured,
                     "relative_error": (measured - lesion["tsc_ratio"]) / lesion["tsc_ratio"]})
    return rows


def ablations(fused: dict) -> dict[str, dict]:
    """DIP-Fusion variants, one term changed each, from the frozen settings ``fused``.

    The gradient-consistency row removes the term when the tuning kept it (λ2 > 0), and adds
    it at its best non-zero weight when the tuning dropped it — so the ablation always shows
    what the term does.
    """
    variants = {"no dTV": {"lam_dtv": 0.0}, "no bias field": {"fit_bias": False},
                "1H-only prior": {"alpha": 1.0}}
    if fused["lam_gc"]:
        variants["no gradient consistency"] = {"lam_gc": 0.0}
    elif fused.get("lam_gc_best"):
        variants["with gradient consistency"] = {"lam_gc": fused["lam_gc_best"]}
    return variants


def tables(scans, outputs: dict, extra: dict):
    """The long metric table, the ablation table and the lesion table of a study run.

    Returns ``metrics`` (one row per job × method of the comparison, with the DIP fits'
    stopping iteration and oracle peak, plus a ``noiseless, fully sampled`` row per subject
    and combination at R = 1), ``ablation`` (DIP-Fusion and its variants) and ``lesions``
    (also for ``noiseless truth`` and ``noiseless, fully sampled``).
    """
    import pandas as pd

    rows, lesions = [], []
    for (job, method), image in outputs.items():
        scan = scans[job.subject]
        key = {"subject": job.subject, "cohort": scan.cohort, "R": job.rate,
               "combine": job.combine, "method": method}
        rows.append({**key, **scores(scan, image, job.combine), **extra.get((job, method), {})})
        lesions += [{**key, **row} for row in lesion_rows(scan, image)]
    for s in sorted({job.subject for job, _ in outputs}):
        scan = scans[s]
        for combine in sorted({job.combine for job, _ in outputs}):
            key = {"subject": s, "cohort": scan.cohort, "R": 1, "combine": combine,
                   "method": "noiseless, fully sampled"}
            rows.append({**key, **scores(scan, scan.reference[combine], combine)})
            lesions += [{**key, **r} for r in lesion_rows(scan, scan.reference[combine])]
        key = {"subject": s, "cohort": scan.cohort, "R": 0, "combine": "none",
               "method": "noiseless truth"}
        lesions += [{**key, **r} for r in lesion_rows(scan, scan.truth)]
    table = pd.DataFrame(rows)
    variants = ~table.method.isin(["noiseless, fully sampled", *METHODS])
    ablation = table[(variants | (table.method == "DIP-Fusion")) & (table.R == 4)
                     & (table["combine"] == "adaptive")]
    ablation = ablation[ablation.subject.isin(table[variants].subject.unique())]
    return (table[~variants].reset_index(drop=True), ablation.reset_index(drop=True),
            pd.DataFrame(lesions))


def medians(metrics, columns=("psnr", "ssim"), cohort: str = "healthy"):
    """Median and IQR per (R, combine, method) of ``cohort``: columns ``<c>_median``,
    ``<c>_iqr`` (the raw numbers the formatted tables are made from)."""
    data = metrics[metrics.cohort == cohort]
    grouped = data.groupby(["R", "combine", "method"])[list(columns)]
    q1, q2, q3 = (grouped.quantile(q) for q in (0.25, 0.5, 0.75))
    out = q2.add_suffix("_median").join((q3 - q1).add_suffix("_iqr"))
    return out.reset_index()


def wilcoxon_table(metrics, *, reference: str = "DIP-Fusion", metric: str = "psnr",
                   cohort: str = "healthy"):
    """Paired Wilcoxon signed-rank tests of ``reference`` against every other method.

    One test per (R, combination, method) over the subjects of ``cohort``, Bonferroni-corrected
    over all tests in the table (pingouin).
    """
    import pandas as pd
    import pingouin as pg

    data = metrics[(metrics.cohort == cohort) & (metrics.R > 1)]
    rows = []
    for (rate, combine), group in data.groupby(["R", "combine"]):
        wide = group.pivot(index="subject", columns="method", values=metric)
        if reference not in wide.columns:
            continue
        for method in wide.columns.drop(reference):
            pair = wide[[reference, method]].dropna()
            if len(pair) < 2:
                continue
            test = pg.wilcoxon(pair[reference], pair[method])
            rows.append({"R": rate, "combine": combine, "versus": method,
                         "median_difference": float((pair[reference] - pair[method]).median()),
                         "n": len(pair), "p": float(test["p_val"].iloc[0])})
    table = pd.DataFrame(rows)
    if len(table):
        table["p_bonferroni"] = pg.multicomp(table["p"].to_numpy(), method="bonf")[1]
    return table


def target_table(metrics, *, cohort: str = "healthy"):
    """Per (R, combination): median PSNR and SSIM of DIP-Fusion, DIP and CS-TV, and whether
    DIP-Fusion is above both on both (the issue's target), with the margins in dB / SSIM."""
    import pandas as pd

    names = ("DIP-Fusion", "DIP", "CS-TV")
    data = metrics[(metrics.cohort == cohort) & metrics.method.isin(names)]
    med = data.groupby(["R", "combine", "method"])[["psnr", "ssim"]].median()
    rows = []
    for (rate, combine), group in med.groupby(level=["R", "combine"]):
        m = group.droplevel(["R", "combine"])
        if not set(names) <= set(m.index):
            continue  # the DIP methods were not run after this combination
        margins = {f"{k}_margin": min(m.loc["DIP-Fusion", k] - m.loc[o, k]
                                      for o in ("DIP", "CS-TV")) for k in ("psnr", "ssim")}
        rows.append({"R": rate, "combine": combine,
                     **{f"{k}_{o}": m.loc[o, k] for o in names for k in ("psnr", "ssim")},
                     **margins, "beats_both": all(v > 0 for v in margins.values())})
    return pd.DataFrame(rows)


def beyond_dtv(metrics, *, cohort: str = "healthy"):
    """What the network adds beyond dTV, per R: paired differences DIP-Fusion − dTV (fused)
    and DIP-Fusion − dTV (1H) (median over subjects, PSNR dB and SSIM)."""
    import pandas as pd

    data = metrics[(metrics.cohort == cohort) & (metrics.R > 1)]
    rows = []
    for (rate, combine), group in data.groupby(["R", "combine"]):
        row = {"R": rate, "combine": combine}
        for metric in ("psnr", "ssim"):
            wide = group.pivot(index="subject", columns="method", values=metric)
            for other in ("dTV (fused)", "dTV (1H)"):
                if {"DIP-Fusion", other} <= set(wide.columns):
                    diff = (wide["DIP-Fusion"] - wide[other]).dropna()
                    row[f"{metric}_vs_{other}"] = float(diff.median())
        if len(row) > 2:
            rows.append(row)
    return pd.DataFrame(rows)


def stopping_loss(metrics):
    """How much each DIP method's frozen stopping rule loses against its oracle peak (dB)."""
    data = metrics[metrics.oracle_psnr.notna()] if "oracle_psnr" in metrics else metrics[:0]
    data = data.assign(loss_db=data.oracle_psnr - data.psnr)
    return (data.groupby(["cohort", "method"])
            .agg(median_loss_db=("loss_db", "median"), max_loss_db=("loss_db", "max"),
                 median_stop=("stop_iteration", "median"),
                 median_oracle_iteration=("oracle_iteration", "median")).reset_index())


def tuning_rows(classical: dict):
    """The per-R tunings of :func:`nacode.studies.breast.tune_classical` as one table."""
    import pandas as pd

    return pd.DataFrame([{**row, "R": rate} for (_, rate), tuning in classical.items()
                         for row in tuning.rows()])


def wide_medians(metrics, metric: str = "psnr", *, cohort: str = "healthy",
                 combine: str = "adaptive"):
    """Methods × R of ``metric`` over the subjects of ``cohort``: columns ``method``, then
    ``R = <r>`` (median) and ``R = <r> IQR`` for each undersampling factor (raw numbers, for
    :func:`nacode.tables.show`, which merges each pair into one ``median ± IQR`` cell)."""
    import pandas as pd

    data = metrics[(metrics.cohort == cohort) & (metrics["combine"] == combine)
                   & (metrics.R > 1)]
    grouped = data.groupby(["method", "R"])[metric]
    q1, q2, q3 = (grouped.quantile(q).unstack("R") for q in (0.25, 0.5, 0.75))
    order = [m for m in METHODS if m in q2.index]
    columns = {}
    for rate in q2.columns:
        columns[f"R = {rate}"] = q2.loc[order, rate]
        columns[f"R = {rate} IQR"] = (q3 - q1).loc[order, rate]
    return pd.DataFrame(columns).rename_axis("method").reset_index()


def formatted(metrics, metric: str = "psnr", *, cohort: str = "healthy",
              combine: str = "adaptive", digits: int = 2):
    """Methods × R, each cell ``median ± IQR`` of ``metric`` over the subjects of ``cohort``,
    as strings (:func:`wide_medians` through :func:`nacode.tables.show`)."""
    from nacode.tables import show

    return show(wide_medians(metrics, metric, cohort=cohort, combine=combine),
                digits=digits).data
