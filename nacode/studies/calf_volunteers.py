"""The calf paper's prospective part on virtual volunteers (Tables 2, 4 and 5).

Ten virtual calves (seeds 0–9) are scanned with the calf spiral, T2* decay during the readout
included, with the per-replicate noise set so that the 150-average image has the paper's
reference SNR (6.7). From one set of 150 replicates the 150-average reference and the
retrospective 50, 40, 30, 20 and 10 averages are reconstructed by gridding (the paper's
plain-grid density compensation, as for the CNN's training data), by TV compressed sensing
run to convergence (:func:`nacode.recon.variational.reconstruct`), its λ tuned **per NSA** on
separate volunteers (seeds 98 and 99 by default) by the shared protocol of
:mod:`nacode.evaluate.tuning`, and by gridding + the CNN of the nearest NSA. Each image is
calibrated on its own tubes; muscle and skin aTSC, estimated SNR and the edge sharpness across
the 100 mM tube follow the paper's definitions, and everything is compared with the
150-average reference — and with the true TSC, which the paper could not know. What a
denoiser does to the tubes themselves (:func:`tube_change`) is measured too: each image is
calibrated on its own tubes, so a tube moved by x % moves every aTSC by about as much.
"""

from __future__ import annotations

import time

import numpy as np

from nacode.evaluate.tuning import log_grid
from nacode.physics import noise
from nacode.physics.acquire import downsample
from nacode.recon.calibration import calibrate_subject, tissue_roi
from nacode.studies import calf_data
from nacode.studies.primer import CalfScan, calf_scan, estimated_snr

VOLUNTEERS = tuple(range(10))
TUNING_VOLUNTEERS = (98, 99)
REFERENCE_NSA = 150
CS_GRID = log_grid(0.001, 0.1)  # 7 values over two decades
CS_TOL = 1e-4  # per-iteration relative change of a converged CS image: within 0.01 dB of 1e-5
METHODS = ("reference", "nufft", "cs", "cnn")
DENOISERS = ("cs", "cnn")  # the methods whose tubes are compared with the gridded input


def scan(seed: int) -> CalfScan:
    """A virtual volunteer scanned with the paper's reconstruction weights."""
    return calf_scan(seed, spiral_and_weights=calf_data.paper_spiral())


def cnn_denoise(image: np.ndarray, model) -> np.ndarray:
    """The paper's use of the CNN: min–max normalise, denoise, map back to signal units."""
    from nacode.denoise.apply import denoise_stack

    return denoise_stack(image[None], model)[0]


def cs_reconstruct(volunteer: CalfScan, kspaces: list[np.ndarray], lamdas, *,
                   max_iter: int = 3000, tol: float = CS_TOL):
    """Converged TV compressed sensing of several k-spaces of one volunteer, batched.

    Parameters
    ----------
    volunteer : CalfScan
        Trajectory and density weights (the single coil is uniform).
    kspaces : list of ndarray, each shape ``volunteer.traj.times_ms.shape``, complex
    lamdas : float or sequence of float
        λ of each reconstruction, relative to an image whose gridding peaks at 1.
    max_iter, tol
        The convergence rule of :func:`nacode.recon.variational.reconstruct`.

    Returns
    -------
    VariationalResult
        ``images`` of shape ``(len(kspaces), *matrix)``, complex (signal units).
    """
    import torch

    from nacode.recon.variational import reconstruct

    copies = len(kspaces)
    maps = torch.ones((copies, 1, *volunteer.matrix), dtype=torch.complex128)
    data = torch.as_tensor(np.stack(kspaces).reshape(copies, 1, -1))
    return reconstruct(volunteer.traj.coord.reshape(-1, 2), maps,
                       torch.as_tensor(volunteer.weights.reshape(-1)), data, lamdas,
                       max_iter=max_iter, tol=tol)


def tune_cs(nsas=calf_data.NSAS, grid=CS_GRID, *, seeds=TUNING_VOLUNTEERS,
            max_iter: int = 3000, tol: float = CS_TOL) -> dict:
    """λ of converged TV-CS per NSA, by the shared protocol on separate volunteers.

    The score of a λ is the mean PSNR (dB, peak of the noiseless image) of its
    reconstructions against the noiseless gridded image of each tuning volunteer; the grid
    spans two decades and grows past an end that wins (:func:`nacode.evaluate.tuning.tune`).

    Returns
    -------
    dict of int to Tuning
        One tuning per NSA (its ``best`` is the λ to use, ``rows()`` the tuning curve).
    """
    from nacode.evaluate.metrics import psnr
    from nacode.evaluate.tuning import tune

    scans = [scan(seed) for seed in seeds]
    truths = [s.image() for s in scans]
    draws = [noise.averages(s.kspace, s.sigma, list(nsas), np.random.default_rng(seed))
             for s, seed in zip(scans, seeds, strict=True)]

    def evaluate(nsa: int):
        def scores(values: list[float]) -> list[float]:
            per_seed = []
            for volunteer, truth, draw in zip(scans, truths, draws, strict=True):
                result = cs_reconstruct(volunteer, [draw[nsa]] * len(values), values,
                                        max_iter=max_iter, tol=tol)
                per_seed.append([psnr(truth, np.abs(image), float(truth.max()))
                                 for image in result.images])
            return list(np.mean(per_seed, axis=0))
        return scores

    return {nsa: tune("CS-TV", "λ", evaluate(nsa), grid) for nsa in nsas}


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


def run(models: dict, *, volunteers=VOLUNTEERS, nsas=calf_data.NSAS, lamdas=0.01,
        cs_iter: int = 3000, cs_tol: float = CS_TOL, progress: bool = True):
    """Reconstruct, calibrate and measure every volunteer, NSA and method.

    Parameters
    ----------
    models : dict of int to module
        The CNN per NSA (the nearest NSA's is used).
    volunteers, nsas : sequences of int
    lamdas : float or dict of int to float
        CS λ, one for all NSAs or one per NSA (:func:`tune_cs`).
    cs_iter, cs_tol
        The CS convergence rule (:func:`cs_reconstruct`).

    Returns
    -------
    measurements : pandas.DataFrame
        One row per volunteer, NSA and method: ``snr``, ``edge``, ``muscle``, ``skin``
        (aTSC medians, mM), ``muscle_true``, ``skin_true`` (true TSC medians in the same
        ROIs), ``recon_s`` (reconstruction time of the slice; CS: its batch's time over the
        batch size), ``cs_iterations``, and ``tube_<c>`` the mean signal of each tube ROI
        (signal units, ``c`` the concentration in mM).
    images : dict
        ``{(volunteer, nsa): {method: magnitude image}}`` (for figures and the reader kit).
    atsc : dict
        The same for aTSC maps.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from nacode.denoise.apply import nearest_nsa
    from nacode.physics.nufft import gridding

    per_nsa = lamdas if isinstance(lamdas, dict) else dict.fromkeys(nsas, float(lamdas))
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
        cs = cs_reconstruct(volunteer, [kspaces[n] for n in nsas], [per_nsa[n] for n in nsas],
                            max_iter=cs_iter, tol=cs_tol)
        for index, nsa in enumerate(nsas):
            start = time.perf_counter()
            gridded = np.abs(gridding(kspaces[nsa], volunteer.traj, volunteer.weights))
            t_nufft = time.perf_counter() - start
            start = time.perf_counter()
            cnn = cnn_denoise(gridded, models[nearest_nsa(nsa, models)])
            t_cnn = time.perf_counter() - start
            outputs = {"reference": reference, "nufft": gridded,
                       "cs": np.abs(cs.images[index]), "cnn": cnn}
            timing = {"reference": np.nan, "nufft": t_nufft, "cs": cs.seconds / len(nsas),
                      "cnn": t_cnn}
            images[(seed, nsa)] = outputs
            for method, image in outputs.items():
                calibration = calibrate_subject(image, volunteer.subject)
                atsc = calibration.to_mm(image)
                maps[(seed, nsa, method)] = atsc
                rows.append({"volunteer": seed, "nsa": nsa, "method": method,
                             "snr": estimated_snr(volunteer, image),
                             "edge": edge_sharpness(atsc, volunteer),
                             "muscle": float(np.median(atsc[muscle_roi])),
                             "skin": float(np.median(atsc[skin_roi])),
                             "muscle_true": float(np.median(truth[muscle_roi])),
                             "skin_true": float(np.median(truth[skin_roi])),
                             "recon_s": timing[method],
                             "cs_iterations": (int(cs.iterations[index]) if method == "cs"
                                               else np.nan),
                             **{f"tube_{c:g}": float(v) for c, v in zip(
                                 calibration.concentrations, calibration.signals,
                                 strict=True)}})
    return pd.DataFrame(rows), images, maps


def tube_change(measurements, *, before: str = "nufft", methods=DENOISERS):
    """How much each denoiser moves each calibration tube: its ROI mean against the input's.

    Parameters
    ----------
    measurements : pandas.DataFrame
        From :func:`run` (the ``tube_<c>`` columns).
    before : str
        The method whose image is the denoiser's input (gridding).
    methods : sequence of str
        The denoisers compared with it.

    Returns
    -------
    per_image : pandas.DataFrame
        ``volunteer, nsa, method, tube_mM, before, after, change_pct`` with
        ``change_pct = 100 (after / before − 1)``.
    summary : pandas.DataFrame
        Per NSA, method and tube (:func:`nacode.evaluate.tubes.summarise`): ``median_pct``,
        ``q1_pct``, ``q3_pct``, ``iqr_pct`` and ``max_abs_pct`` (the worst volunteer).
    """
    import pandas as pd

    from nacode.evaluate import tubes

    columns = [c for c in measurements.columns if c.startswith("tube_")]
    base = measurements[measurements.method == before].set_index(["volunteer", "nsa"])
    rows = []
    for method in methods:
        after = measurements[measurements.method == method].set_index(["volunteer", "nsa"])
        for column in columns:
            for (volunteer, nsa), value in after[column].items():
                old = float(base.loc[(volunteer, nsa), column])
                rows.append({"volunteer": volunteer, "nsa": nsa, "method": method,
                             tubes.TUBE: float(column.removeprefix("tube_")),
                             "before": old, "after": float(value),
                             tubes.CHANGE: tubes.change_pct(old, float(value))})
    per_image = pd.DataFrame(rows)
    return per_image, tubes.summarise(per_image, ["nsa", "method"])


def worst_tube_change(summary, *, above_mm: float = 25.0):
    """Per NSA and method, the tube ≥ ``above_mm`` with the largest ``|median change|``: its
    signed median (``tube_change_pct``), which tube, and the largest change of any one image
    (``worst_image_pct``): the tube-change columns of the chapter's tables
    (:func:`nacode.evaluate.tubes.worst`)."""
    from nacode.evaluate import tubes

    return tubes.worst(summary, ["nsa", "method"], min_mm=above_mm)


def tube_stacks(images: dict, *, method: str = "nufft", above_mm: float = 25.0) -> dict:
    """The gridded images of :func:`run` with their tube ROIs, per NSA, for
    :func:`nacode.studies.calf.tube_scale_response`.

    Parameters
    ----------
    images : dict
        ``{(volunteer, nsa): {method: image}}`` from :func:`run`.
    method : str
        Which image (the CNN's input: gridding).
    above_mm : float
        Tubes of at least this concentration, mM.

    Returns
    -------
    dict of int to (list of ndarray, list of list of ndarray)
    """
    from nacode.anatomy.calf import calf_subject
    from nacode.recon.calibration import tube_rois

    rois: dict = {}  # per volunteer: its anatomy is built once, whatever the NSAs
    stacks: dict = {}
    for (seed, nsa), outputs in images.items():
        image = outputs[method]
        if seed not in rois:
            subject = calf_subject(seed)
            rois[seed] = [roi for tube, roi in zip(subject.tubes, tube_rois(
                subject.tubes, image.shape, subject.fov_mm[0]), strict=True)
                if tube.concentration >= above_mm]
        stacks.setdefault(nsa, ([], []))
        stacks[nsa][0].append(image)
        stacks[nsa][1].append(rois[seed])
    return stacks


def tuning_rows(tunings: dict):
    """The tuning curves of :func:`tune_cs` as one table (``nsa`` added to each row)."""
    import pandas as pd

    return pd.DataFrame([{**row, "nsa": nsa} for nsa, tuning in tunings.items()
                         for row in tuning.rows()])


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
