"""The shared results-table formatter (nacode.tables)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from nacode import tables


@pytest.fixture
def raw():
    return pd.DataFrame({"roi": ["muscle", "skin"], "n": [120, 40],
                         "median": [21.0412, 18.0], "iqr": [2.9601, 5.1],
                         "q1": [19.5, 15.0], "q3": [22.46, 20.1],
                         "p_val": [0.0, 0.0123], "stopped_by_time_budget": [True, False]})


def test_format_p_never_prints_zero():
    assert tables.format_p(0.0) == "< 0.001"
    assert tables.format_p(0.0009) == "< 0.001"
    assert tables.format_p(0.0123) == "0.012"
    assert tables.format_p(0.001) == "0.001"
    assert tables.format_p(1.0) == "1.000"
    assert tables.format_p(np.nan) == tables.MISSING
    assert tables.format_p(None) == tables.MISSING


def test_p_columns_found_and_formatted(raw):
    styled = tables.show(raw)
    assert list(styled.data["p"]) == ["< 0.001", "0.012"]
    assert "&lt; 0.001" in styled.to_html()  # escaped for HTML
    explicit = tables.show(raw.rename(columns={"p_val": "significance"}), p="significance")
    assert list(explicit.data["significance"]) == ["< 0.001", "0.012"]


def test_median_and_iqr_merge_into_one_cell(raw):
    styled = tables.show(raw, labels={"median": "aTSC (mM)"}, digits=1)
    assert list(styled.data["aTSC (mM)"]) == ["21.0 ± 3.0", "18.0 ± 5.1"]
    assert "IQR" not in styled.data.columns and "iqr" not in styled.data.columns
    default = tables.show(raw)
    assert "median ± IQR" in default.data.columns
    stems = pd.DataFrame({"psnr_median": [30.123], "psnr_iqr": [1.5]})
    assert list(tables.show(stems).data.columns) == ["PSNR median ± IQR"]


def test_median_with_quartiles(raw):
    styled = tables.show(raw, median_iqr={"median": ("q1", "q3")}, digits=1)
    assert list(styled.data["median (Q1–Q3)"]) == ["21.0 (19.5–22.5)", "18.0 (15.0–20.1)"]
    assert "Q1" not in styled.data.columns and "Q3" not in styled.data.columns
    assert "IQR" in styled.data.columns  # not merged when quartiles are asked for


def test_index_hidden_in_html(raw):
    html = tables.show(raw).to_html()
    assert 'class="blank' not in html and "row_heading" not in html
    assert "index_name" not in html
    assert html.count("<th ") == len(tables.show(raw).data.columns)


def test_meaningful_index_becomes_a_column():
    ranks = pd.DataFrame({"calf": [1.0, 2.5], "brain": [2.0, 1.0]},
                         index=pd.Index(["CS-TV", "NLM"], name="method"))
    styled = tables.show(ranks, digits=1)
    assert list(styled.data.columns) == ["method", "calf", "brain"]
    assert list(styled.data["method"]) == ["CS-TV", "NLM"]
    assert list(styled.data["calf"]) == ["1.0", "2.5"]
    shuffled = tables.show(pd.DataFrame({"x": [1, 2, 3]}, index=[2, 0, 1]))
    assert list(shuffled.data.columns) == ["x"]  # row numbers are not a column


def test_raw_table_unchanged(raw):
    before = raw.copy(deep=True)
    tables.show(raw, labels={"n": "voxels"}, paper={"median": 21.5}, digits={"median": 1})
    pd.testing.assert_frame_equal(raw, before)


def test_labels_and_default_headers(raw):
    styled = tables.show(raw, labels={"n": "voxels"})
    assert list(styled.data.columns) == ["ROI", "voxels", "median ± IQR", "Q1", "Q3", "p",
                                         "stopped by time budget"]
    assert list(styled.data["stopped by time budget"]) == ["yes", "no"]
    assert tables.label("tsc_mM") == "TSC (mM)"
    assert tables.label("volume_ml") == "volume (mL)"
    assert tables.label("median_ms") == "median (ms)"
    assert tables.label("p_bonferroni") == "p (Bonferroni)"
    assert tables.label("seconds per slice") == "seconds per slice"


def test_paper_column_beside_ours(raw):
    styled = tables.show(raw, labels={"median": "aTSC (mM)"},
                         paper={"median": [(21.5, 3.0), None]})
    columns = list(styled.data.columns)
    assert columns.index("aTSC (mM), paper") == columns.index("aTSC (mM)") + 1
    assert list(styled.data["aTSC (mM), paper"]) == ["21.50 ± 3.00", tables.MISSING]
    speed = pd.DataFrame({"paper_s": [0.2, None], "what": ["a", "b"], "ours_s": [0.0123, 1.5]})
    styled = tables.show(speed, paper={"ours_s": "paper_s"}, digits=3)
    assert list(styled.data.columns) == ["what", "ours (s)", "paper (s)"]
    assert list(styled.data["paper (s)"]) == ["0.200", tables.MISSING]
    own = tables.show(speed, paper={"ours_s": "paper_s"}, digits={"ours_s": 3, "paper_s": 1})
    assert list(own.data["ours (s)"]) == ["0.012", "1.500"]
    assert list(own.data["paper (s)"]) == ["0.2", tables.MISSING]


def test_rounding_per_column_and_whole_floats():
    data = pd.DataFrame({"snr": [5.0, 10.0], "psnr": [31.234, 29.5], "ssim": [0.91234, 0.8],
                         "mse": [0.000123, 0.0]})
    styled = tables.show(data, digits={"psnr": 1, "ssim": 3, "mse": 2})
    assert list(styled.data["SNR"]) == ["5", "10"]  # whole numbers, not named in digits
    assert list(styled.data["PSNR"]) == ["31.2", "29.5"]
    assert list(styled.data["SSIM"]) == ["0.912", "0.800"]
    assert list(styled.data["MSE"]) == ["0.00012", "0.00"]  # tiny values keep two figures
    assert list(tables.show(data, digits={"snr": 1}).data["SNR"]) == ["5.0", "10.0"]
    assert list(tables.show(data, digits=1).data["SNR"]) == ["5.0", "10.0"]  # as asked
    spans = tables.show(pd.DataFrame({"x": [0.0316, 2.0, 12345.6, 1.93e-5, np.inf]}),
                        digits=".3g")
    assert list(spans.data["x"]) == ["0.0316", "2", "12346", "0.0000193", "∞"]


def test_page_fitting_styles_and_missing_columns(raw):
    html = tables.show(raw, caption="ROI statistics").to_html()
    assert "font-size: 0.82em" in html and "white-space: normal" in html
    assert "ROI statistics" in html
    with pytest.raises(KeyError, match="not in the table"):
        tables.show(raw, paper={"nope": 1.0})



def test_long_cells_wrap_and_names_do_not():
    data = pd.DataFrame({"method": ["DIP-Fusion"], "what": ["a long description " * 3],
                         "median_s": [0.00355], "iqr_s": [0.0000793]})
    html = tables.show(data, digits=".3g").to_html()
    rules = dict(re.findall(r"td\.(col\d) \{([^}]*)\}", html))
    assert "normal" not in rules["col0"] and "left" in rules["col0"]  # a name stays whole
    assert "white-space: normal" in rules["col1"]  # long text wraps
    assert "white-space: normal" in rules["col2"] and "left" not in rules["col2"]  # ± cell
