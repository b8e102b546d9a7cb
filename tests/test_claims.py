"""The claims table: each verdict rule on tiny tables, every reader on minimal CSVs, and the
missing-CSV verdict."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from conftest import ROOT
from nacode.studies import claims
from nacode.studies.claims import (
    CONTRADICTED,
    NOT_MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    Cell,
    Claim,
    Tolerance,
)
from nacode.studies.claims_list import BRAIN_TABLES, CALF_NSAS, CALF_TABLE1, CLAIMS


@pytest.mark.parametrize(("ours", "versus", "sense", "p", "significance", "expected"), [
    (2.0, 1.0, ">", None, False, REPRODUCED),       # same direction
    (0.5, 1.0, ">", None, False, CONTRADICTED),     # opposite direction
    (1.0, 1.0, ">", None, False, NOT_REPRODUCED),   # a tie
    (0.5, 1.0, "<", None, False, REPRODUCED),
    (2.0, 1.0, "<", 0.001, True, CONTRADICTED),     # opposite, however significant
    (2.0, 1.0, ">", 0.01, True, REPRODUCED),
    (2.0, 1.0, ">", 0.2, True, NOT_REPRODUCED),     # right direction, not significant
    (2.0, 1.0, ">", None, True, NOT_REPRODUCED),    # significance claimed, no test
])
def test_direction_rule(ours, versus, sense, p, significance, expected):
    assert claims.direction_verdict(ours, versus, sense, p, significance) == expected


@pytest.mark.parametrize(("ours", "paper", "tolerance", "neutral", "expected"), [
    (5.5, 5.7, claims.PSNR_DB, 0.0, REPRODUCED),     # within ±1 dB
    (7.0, 5.7, claims.PSNR_DB, 0.0, NOT_REPRODUCED),  # outside, same sign
    (-0.5, 5.7, claims.PSNR_DB, 0.0, CONTRADICTED),   # the sign is opposite
    (0.20, 0.22, claims.SSIM, 0.0, REPRODUCED),
    (0.25, 0.22, claims.SSIM, 0.0, NOT_REPRODUCED),
    (2.2, 1.95, claims.RELATIVE, 0.0, REPRODUCED),    # ±20 % of 1.95
    (4.5, 1.95, claims.RELATIVE, 0.0, NOT_REPRODUCED),
    (0.15, 0.3, claims.TIME, 0.0, REPRODUCED),        # a factor of 2
    (0.1, 0.3, claims.TIME, 0.0, NOT_REPRODUCED),
    (60.0, 100.0, claims.TIME, 1.0, REPRODUCED),      # a speed-up
    (8.0, 100.0, claims.TIME, 1.0, NOT_REPRODUCED),
    (0.5, 100.0, claims.TIME, 1.0, CONTRADICTED),     # slower, not faster
    (0.95, 1.0, claims.EQUAL, 1.0, REPRODUCED),
    (0.8, 1.0, claims.EQUAL, 1.0, NOT_REPRODUCED),    # at the neutral value: never opposite
])
def test_magnitude_rule(ours, paper, tolerance, neutral, expected):
    assert claims.magnitude_verdict(ours, paper, tolerance, neutral) == expected


def test_tolerance_modes_and_a_bad_mode():
    assert Tolerance(1.0, "abs", "").within(2.0, 1.0)
    assert not Tolerance(0.1, "rel", "").within(1.2, 1.0)
    assert not Tolerance(2.0, "factor", "").within(-1.0, 1.0)
    with pytest.raises(ValueError, match="tolerance mode"):
        Tolerance(1.0, "log", "").within(1.0, 1.0)


@pytest.mark.parametrize(("verdicts", "expected"), [
    ([REPRODUCED, REPRODUCED], REPRODUCED),
    ([CONTRADICTED, CONTRADICTED], CONTRADICTED),
    ([REPRODUCED, CONTRADICTED], NOT_REPRODUCED),
    ([REPRODUCED, NOT_REPRODUCED], NOT_REPRODUCED),
    ([], NOT_MEASURED),
])
def test_several_cells_combine(verdicts, expected):
    assert claims.combine(verdicts) == expected


def _claim(read, **kw):
    return Claim("k", "calf", "t", "Table 1", "+5.7 dB", kw.pop("kind", "magnitude"), read,
                 "calf-table1", **{"paper": 5.7, "tolerance": claims.PSNR_DB, **kw})


def test_missing_csv_row_or_column_is_not_measured(tmp_path):
    from nacode.studies.claims_list import csv, one

    def absent(results):
        csv(results, "calf", "nope")

    def no_row(results):
        one(pd.DataFrame({"nsa": [50]}), nsa=30)

    def no_column(results):
        return [Cell("x", float(pd.DataFrame({"a": [1]})["b"].iloc[0]))]

    for read in (absent, no_row, no_column, lambda r: [], lambda r: [Cell("x", float("nan"))]):
        row = claims.evaluate(_claim(read), tmp_path)
        assert row["verdict"] == NOT_MEASURED and row["ours"] == "—"
    assert "calf/nope.csv" in claims.evaluate(_claim(absent), tmp_path)["note"]
    row = claims.evaluate(_claim(None, note="needs readers"), tmp_path)
    assert row["verdict"] == NOT_MEASURED and row["note"] == "needs readers"


def test_an_empty_build_renders_every_claim_as_not_measured(tmp_path):
    table = claims.table(tmp_path)
    assert list(table.columns) == list(claims.COLUMNS) and len(table) == len(CLAIMS)
    assert set(table["verdict"]) == {NOT_MEASURED}
    assert claims.counts(table) == {REPRODUCED: 0, NOT_REPRODUCED: 0, CONTRADICTED: 0,
                                    NOT_MEASURED: len(CLAIMS)}
    assert claims.markdown(table).count("{ref}`") == len(CLAIMS)


def _write(results, chapter, name, rows):
    (results / chapter).mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(results / chapter / f"{name}.csv", index=False)


@pytest.fixture()
def minimal(tmp_path):
    """A results folder with every CSV the readers use, holding the papers' own numbers where
    the papers give them (so those claims must be reproduced) and made-up ones elsewhere."""
    r = tmp_path / "results"
    t1 = []
    for nsa, (ip, dp, i_s, d_s) in CALF_TABLE1.items():
        t1.append({"nsa": nsa, "image": "input", "psnr_median": ip, "ssim_median": i_s,
                   "mse_median": 2e-3, "p_psnr": None, "p_ssim": None, "p_mse": None})
        t1.append({"nsa": nsa, "image": "denoised", "psnr_median": dp, "ssim_median": d_s,
                   "mse_median": 5e-4, "p_psnr": 1e-4, "p_ssim": 1e-4, "p_mse": 1e-4})
    _write(r, "calf", "table1_synthetic", t1)
    snr = {"reference": 6.7, "nufft": 3.6, "cs": 5.9, "cnn": 21.2}
    _write(r, "calf", "table2_quality", [{"nsa": n, "method": m, "snr_mean": v,
                                          "edge_mean": 12.6} for n in CALF_NSAS
                                         for m, v in snr.items()])
    _write(r, "calf", "table2_tests", [{"nsa": n, "metric": "snr", "A": a, "B": b, "p": 0.012}
                                       for n in CALF_NSAS for a, b in (
                                           ("cnn", "cs"), ("cnn", "nufft"),
                                           ("cnn", "reference"), ("cs", "nufft"),
                                           ("cs", "reference"))])
    for name, signs in (("table4_muscle", {"cs": 1, "cnn": 1}), ("table5_skin", {"cs": -1})):
        rows = [{"nsa": n, "method": "reference", "atsc_median": 21.5 if "muscle" in name
                 else 18.8, "bias": None, "bias_p": None} for n in CALF_NSAS]
        rows += [{"nsa": n, "method": m, "atsc_median": 21.0, "bias": 0.1 * signs.get(m, 1),
                  "bias_p": 0.001} for n in CALF_NSAS for m in ("nufft", "cs", "cnn")]
        _write(r, "calf", name, rows)
    _write(r, "calf", "tube_change_worst", [{"nsa": n, "method": "cnn", "tube_change_pct": 0.4,
                                             "worst_image_pct": 1.5} for n in CALF_NSAS])
    _write(r, "calf", "timing", [{"method": m, "median_s": s, "paper_s": s}
                                 for m, s in (("nufft", 0.2), ("cnn", 0.1), ("cs", 32.8))])
    for metric, name in (("psnr", "table2_psnr"), ("ssim", "table3_ssim")):
        rows = BRAIN_TABLES[metric].items()
        _write(r, "brain", name, [{"method": m, "mean": v[0], "median": v[1], "sd": sd}
                                  for (m, v), sd in zip(rows, (1, 2), strict=True)])
    _write(r, "breast", "target", [{"R": 4, "combine": "adaptive", "psnr_DIP-Fusion": 28.0,
                                    "ssim_DIP-Fusion": 0.7, "psnr_DIP": 24.0, "ssim_DIP": 0.6,
                                    "psnr_CS-TV": 27.0, "ssim_CS-TV": 0.65}])
    _write(r, "breast", "healthy_medians", [
        {"R": 1, "combine": "adaptive", "method": "noiseless, fully sampled", "psnr_median": 31},
        *({"R": 4, "combine": "adaptive", "method": m, "psnr_median": v}
          for m, v in (("DIP-Fusion", 28.0), ("dTV (fused)", 28.5), ("CS-TV", 27.0)))])
    _write(r, "breast", "metrics", [{"subject": s, "cohort": "patient", "R": 4,
                                     "combine": "adaptive", "method": m, "psnr": v, "ssim": v / 40}
                                    for s in (0, 1) for m, v in (("DIP", 24.0),
                                                                 ("DIP-Fusion", 28.0))])
    _write(r, "breast", "lesion_contrast", [{"subject": 0, "kind": "sodium_only", "R": 4,
                                             "combine": "adaptive", "method": m,
                                             "relative_error": e}
                                            for m, e in (("DIP", -0.3), ("DIP-Fusion", -0.1))])
    return r


def test_every_reader_reads_the_minimal_csvs(minimal):
    table = claims.table(minimal).set_index("key")
    measurable = [c.key for c in CLAIMS if c.read is not None]
    assert NOT_MEASURED not in set(table.loc[measurable, "verdict"])
    assert table.loc["calf-t3-ranking", "verdict"] == NOT_MEASURED
    # the papers' own numbers reproduce the papers' magnitude claims
    for key in ("calf-t1-psnr-gain-30", "calf-t1-ssim-gain-10", "calf-t2-snr-cnn-30",
                "calf-reference-muscle", "calf-time-cnn", "calf-speedup",
                "brain-ssim-dae-mean", "brain-psnr-nlm-median"):
        assert table.loc[key, "verdict"] == REPRODUCED, key
    assert table.loc["calf-t1-psnr-better", "ours"].startswith("5/5 in the paper's direction")
    assert table.loc["breast-psnr-all", "verdict"] == CONTRADICTED   # dTV is above it
    assert table.loc["calf-sign-skin-cs", "verdict"] == REPRODUCED
    assert table.loc["breast-patients-lesion", "verdict"] == REPRODUCED


def test_a_tube_lowered_by_5_percent_is_not_within_the_1_percent_bound(minimal):
    assert claims.table(minimal).set_index("key").loc["calf-tubes", "verdict"] == REPRODUCED
    _write(minimal, "calf", "tube_change_worst", [
        {"nsa": n, "method": "cnn", "tube_change_pct": -5.0, "tube_mM": 100.0,
         "worst_image_pct": 6.0} for n in CALF_NSAS])
    assert claims.table(minimal).set_index("key").loc["calf-tubes", "verdict"] == CONTRADICTED


def test_claims_are_unique_and_link_to_labels_the_chapters_define():
    keys = [c.key for c in CLAIMS]
    assert len(keys) == len(set(keys))
    for claim in CLAIMS:
        source = (ROOT / "book" / f"{claim.study}.md").read_text(encoding="utf-8")
        # {ref} takes its text from the heading under the label: a label above a
        # paragraph has no title and Sphinx cannot create the cross reference
        assert re.search(rf"^\({re.escape(claim.target)}\)=\n#+ \S", source, re.M), claim.key
        assert claim.kind in ("direction", "magnitude")
        if claim.kind == "magnitude":
            assert claim.paper is not None and claim.tolerance is not None, claim.key


def test_quoted_numbers_match_the_studies_constants():
    from nacode.studies import brain, calf_data

    for nsa, (ip, dp, i_s, d_s) in CALF_TABLE1.items():
        paper = calf_data.PAPER_TABLE1[nsa]
        assert (paper["input"][2][0], paper["denoised"][2][0]) == (ip, dp)
        assert (paper["input"][1][0], paper["denoised"][1][0]) == (i_s, d_s)
    for metric, table in (("psnr", brain.PAPER_TABLE2), ("ssim", brain.PAPER_TABLE3)):
        for method, (mean, median, _) in table.items():
            assert BRAIN_TABLES[metric][method] == (mean, median)


def test_markdown_has_one_table_per_study_and_escapes_pipes(minimal):
    text = claims.markdown(claims.table(minimal))
    assert [line for line in text.splitlines() if line.startswith("**")] == [
        f"**{name}**" for name in claims.STUDIES.values()]
    assert "\\|bias\\|" in text and "**contradicted**" in text
    body = [line for line in text.splitlines() if line.startswith("| ") and "{ref}" in line]
    assert len(body) == len(CLAIMS)
    assert all(line.count(" | ") == 5 for line in body)
