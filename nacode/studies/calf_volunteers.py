"""The calf paper's prospective part on virtual volunteers (Tables 2, 4 and 5).

Ten virtual calves (seeds 0–9) are scanned with the calf spiral, T2* decay during the readout
included, with the per-replicate noise set so that the 150-average image has the paper's
reference SNR (6.7). From one set of 150 replicates the 150-average reference and the
retrospective 50, 40, 30, 20 and 10 averages are reconstructed by gridding (the paper's
plain-grid density compensation, as for the CNN's training data), by TV compressed sensing
(λ tuned once on a separate volunteer, seed 99) and by gridding + the CNN of the nearest NSA.
Each image is calibrated on its own tubes; muscle and skin aTSC, estimated SNR and the edge
sharpness across the 100 mM tube follow the paper's definitions, and everything is compared
with the 150-average reference — and with the true TSC, which the paper could not know.
"""

from __future__ import annotations

import time

import numpy as np

from nacode.physics import noise
from nacode.physics.acquire import downsample
from nacode.recon.calibration import calibrate_subject, tissue_roi
from nacode.studies import calf_data
from nacode.studies.primer import CalfScan, calf_scan, estimated_snr

VOLUNTEERS = tuple(range(10))
TUNING_VOLUNTEER = 99
REFERENCE_NSA = 150
CS_LAMBDAS = (0.002, 0.005, 0.01, 0.02, 0.04)
METHODS = ("reference", "nufft", "cs", "cnn")


def scan(seed: int) -> CalfScan:
    """A virtual volunteer scanned with the paper's reconstruction weights."""
    return calf_scan(seed, spiral_and_weights=calf_data.paper_spiral())


def cnn_denoise(image: np.ndarray, model) -> np.ndarray:
    """The paper's use of the CNN: min–max normalise, denoise, map back to signal units."""
    from nacode.denoise.apply import denoise_stack

    return denoise_stack(image[None], model)[0]


def tune_cs(lambdas=CS_LAMBDAS, nsa: int = 30, *, seed: int = TUNING_VOLUNTEER,
            max_iter: int = 60) -> tuple[float, dict[float, float]]:
    """λ of TV-CS with the lowest error against the noiseless image of a separate subject."""
    from nacode.recon.cs import tv_recon

    volunteer = scan(seed)
    truth = volunteer.image()
    kspace = noise.averages(volunteer.kspace, volunteer.sigma, [nsa],
                            np.random.default_rng(seed))[nsa]
    scores = {}
    for lamda in lambdas:
        image = np.abs(tv_recon(kspace, volunteer.traj, volunteer.weights, lamda,
                                max_iter=max_iter))
        scores[float(lamda)] = float(np.linalg.norm(image - truth) / np.linalg.norm(truth))
    return min(scores, key=scores.get), scores


def edge_sharpness(atsc: np.ndarray, volunteer: CalfScan, *, angles: int = 36) -> float:
    """Mean over directions of the largest ``|d aTSC / dr|`` across the 100 mM tube wall, mM/mm."""
    from scipy.ndimage import map_coordinates

    tube = max(volunteer.subject.tubes, key=lambda t: t.concentration)
    voxel = volunteer.traj.fov_mm / volunteer.matrix[0]
    centre = np.array(tube.centre_mm) / voxel + np.array(volunteer.matrix) // 2
    radii = np.linspace(tube.radius_mm - 6, tube.radius_mm + 6, 49) / voxel
    slopes = []
    for theta in np.linspace(0, 2 * np.pi, angles, endpoint=False):
        rows = centre[0] + radii * np.sin(theta)
        cols = centre[1] + radii * np.cos(theta)
        profile = map_coordinates(atsc, [rows, cols], order=1, mode="nearest")
        slopes.append(np.abs(np.diff(profile)).max() / ((radii[1] - radii[0]) * voxel))
    return float(np.mean(slopes))


def run(models: dict, *, volunteers=VOLUNTEERS, nsas=calf_data.NSAS, lamda: float = 0.01,
        cs_iter: int = 60, progress: bool = True):
    """Reconstruct, calibrate and measure every volunteer, NSA and method.

    Returns
    -------
    measurements : pandas.DataFrame
        One row per volunteer, NSA and method: ``snr``, ``edge``, ``muscle``, ``skin``
        (aTSC medians, mM), ``muscle_true``, ``skin_true`` (true TSC medians in the same
        ROIs), ``recon_s`` (reconstruction time of the slice).
    images : dict
        ``{(volunteer, nsa): {method: magnitude image}}`` (for figures and the reader kit).
    atsc : dict
        The same for aTSC maps.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from nacode.denoise.apply import nearest_nsa
    from nacode.physics.nufft import gridding
    from nacode.recon.cs import tv_recon

    rows, images, maps = [], {}, {}
    for seed in tqdm(volunteers, desc="volunteers", disable=not progress):
        volunteer = scan(seed)
        rng = np.random.default_rng(1000 + seed)
        kspaces = noise.averages(volunteer.kspace, volunteer.sigma,
                                 [REFERENCE_NSA, *nsas], rng)
        reference = np.abs(gridding(kspaces[REFERENCE_NSA], volunteer.traj,
                                    volunteer.weights))
        muscle_roi = volunteer.muscle_roi()
        skin_roi = tissue_roi(volunteer.subject, "skin", volunteer.matrix, purity=0.5)
        truth = downsample(volunteer.subject.tsc, volunteer.matrix)
        for nsa in nsas:
            start = time.perf_counter()
            gridded = np.abs(gridding(kspaces[nsa], volunteer.traj, volunteer.weights))
            t_nufft = time.perf_counter() - start
            start = time.perf_counter()
            cs = np.abs(tv_recon(kspaces[nsa], volunteer.traj, volunteer.weights, lamda,
                                 max_iter=cs_iter))
            t_cs = time.perf_counter() - start
            start = time.perf_counter()
            cnn = cnn_denoise(gridded, models[nearest_nsa(nsa, models)])
            t_cnn = time.perf_counter() - start
            outputs = {"reference": reference, "nufft": gridded, "cs": cs, "cnn": cnn}
            timing = {"reference": np.nan, "nufft": t_nufft, "cs": t_cs, "cnn": t_cnn}
            images[(seed, nsa)] = outputs
            for method, image in outputs.items():
                atsc = calibrate_subject(image, volunteer.subject).to_mm(image)
                maps[(seed, nsa, method)] = atsc
                rows.append({"volunteer": seed, "nsa": nsa, "method": method,
                             "snr": estimated_snr(volunteer, image),
                             "edge": edge_sharpness(atsc, volunteer),
                             "muscle": float(np.median(atsc[muscle_roi])),
                             "skin": float(np.median(atsc[skin_roi])),
                             "muscle_true": float(np.median(truth[muscle_roi])),
                             "skin_true": float(np.median(truth[skin_roi])),
                             "recon_s": timing[method]})
    return pd.DataFrame(rows), images, maps


def table2(measurements):
    """Estimated SNR and edge sharpness (mean ± SD) per NSA and method, with Friedman tests
    and pairwise Wilcoxon tests (Bonferroni) across methods."""
    import pandas as pd
    import pingouin as pg

    rows, tests = [], []
    for nsa, group in measurements.groupby("nsa"):
        for method in METHODS:
            part = group[group.method == method]
            rows.append({"nsa": nsa, "method": method, "snr_mean": part.snr.mean(),
                         "snr_sd": part.snr.std(), "edge_mean": part.edge.mean(),
                         "edge_sd": part.edge.std()})
        for metric in ("snr", "edge"):
            friedman = pg.friedman(data=group, dv=metric, within="method", subject="volunteer")
            pairs = pg.pairwise_tests(data=group, dv=metric, within="method",
                                      subject="volunteer", parametric=False, padjust="bonf")
            tests.append({"nsa": nsa, "metric": metric, "A": "all", "B": "",
                          "p": float(friedman["p_unc"].iloc[0]), "test": "Friedman"})
            tests += [{"nsa": nsa, "metric": metric, "A": r["A"], "B": r["B"],
                       "p": float(r["p_corr"]), "test": "Wilcoxon, Bonferroni"}
                      for _, r in pairs.iterrows()]
    return pd.DataFrame(rows), pd.DataFrame(tests)


def agreement(measurements, tissue: str):
    """Tables 4/5: aTSC of ``tissue`` per NSA and method against the 150-average reference
    (Pearson r, Bland–Altman bias and 95 % limits, one-sample t-test of the bias) and against
    the true TSC (bias and limits)."""
    import pandas as pd
    import pingouin as pg

    reference = measurements[measurements.method == "reference"].set_index(
        ["volunteer", "nsa"])[tissue]
    rows = []
    for (nsa, method), group in measurements.groupby(["nsa", "method"], sort=False):
        values = group.set_index(["volunteer", "nsa"])[tissue]
        ref = reference.loc[values.index]
        diff = (values - ref).to_numpy()
        truth = group[f"{tissue}_true"].to_numpy()
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        row = {"nsa": nsa, "method": method, "atsc_median": med, "atsc_iqr": q3 - q1}
        if method != "reference":
            row.update(r=float(pg.corr(values.to_numpy(), ref.to_numpy())["r"].iloc[0]),
                       bias=float(diff.mean()), loa_low=float(diff.mean() - 1.96 * diff.std(
                           ddof=1)), loa_high=float(diff.mean() + 1.96 * diff.std(ddof=1)),
                       bias_p=float(pg.ttest(diff, 0)["p_val"].iloc[0]))
        to_truth = values.to_numpy() - truth
        row.update(bias_truth=float(to_truth.mean()),
                   loa_truth_low=float(to_truth.mean() - 1.96 * to_truth.std(ddof=1)),
                   loa_truth_high=float(to_truth.mean() + 1.96 * to_truth.std(ddof=1)))
        rows.append(row)
    return pd.DataFrame(rows)


def timing(measurements):
    """Median reconstruction time per slice and method, beside the paper's."""
    import pandas as pd

    paper = {"nufft": 0.2, "cnn": 0.1, "cs": 32.8}
    rows = [{"method": m, "median_s": float(measurements[measurements.method == m]
                                            .recon_s.median()), "paper_s": paper[m]}
            for m in ("nufft", "cnn", "cs")]
    return pd.DataFrame(rows)


def figure2_panels(images: dict, volunteer: int = 0) -> dict[str, np.ndarray]:
    """Panels of the paper's Figure 2, one row per NSA: the 150-average reference beside that
    NSA's NUFFT, CS and CNN images, titled with the acquisition time (min:s)."""
    from nacode.physics.signal import CALF_SEQUENCE, acquisition_time_s, format_minutes

    nsas = sorted({n for v, n in images if v == volunteer}, reverse=True)
    n_shots = 20

    def title(method: str, nsa: int) -> str:
        time_label = format_minutes(acquisition_time_s(nsa, n_shots, CALF_SEQUENCE))
        return f"{method.upper()} {nsa} ({time_label})"

    panels = {}
    for nsa in nsas:
        reference = title("reference", REFERENCE_NSA)
        panels[f"{reference} vs {nsa}"] = images[(volunteer, nsa)]["reference"]
        for method in ("nufft", "cs", "cnn"):
            panels[title(method, nsa)] = images[(volunteer, nsa)][method]
    return panels


def figure3_panels(maps: dict, volunteer: int = 0, nsas=(50, 30, 10)) -> dict[str, np.ndarray]:
    """aTSC maps for the paper's Figure 3: NUFFT, CS and CNN at a few NSAs."""
    return {f"{m.upper()} {n}": maps[(volunteer, n, m)] for n in nsas
            for m in ("nufft", "cs", "cnn") if (volunteer, n, m) in maps}
