"""The shared tube-change summaries: known answers on hand-made rows."""

import pandas as pd
import pytest

from nacode.evaluate import tubes


def _rows():
    rows = []
    for image, factor in enumerate((0.0, 2.0, 4.0, 10.0)):
        for method, sign in (("A", 1), ("B", -1)):
            rows.append({"method": method, "image": image, "tube_mM": 10.0,
                         "change_pct": -50.0, "before": 1.0})
            rows.append({"method": method, "image": image, "tube_mM": 50.0,
                         "change_pct": sign * factor, "before": 5.0 + image})
            rows.append({"method": method, "image": image, "tube_mM": 100.0,
                         "change_pct": sign * 1.0, "before": 10.0})
    return pd.DataFrame(rows)


def test_change_pct_is_the_relative_change_in_percent():
    assert tubes.change_pct(2.0, 2.1) == pytest.approx(5.0)
    assert tubes.change_pct(4.0, 3.0) == pytest.approx(-25.0)


def test_summarise_gives_quartiles_and_the_worst_image_per_group_and_tube():
    summary = tubes.summarise(_rows(), ["method"], carry=("before",))
    assert summary.method.tolist() == ["A"] * 3 + ["B"] * 3
    assert summary.tube_mM.tolist() == [10.0, 50.0, 100.0] * 2
    a50 = summary[(summary.method == "A") & (summary.tube_mM == 50.0)].iloc[0]
    assert a50["n"] == 4
    assert a50.median_pct == pytest.approx(3.0)  # median of 0, 2, 4, 10
    assert (a50.q1_pct, a50.q3_pct) == pytest.approx((1.5, 5.5))
    assert a50.iqr_pct == pytest.approx(4.0)
    assert a50.max_abs_pct == pytest.approx(10.0)
    assert a50.before == pytest.approx(6.5)  # median of 5, 6, 7, 8


def test_worst_keeps_the_sign_skips_faint_tubes_and_names_the_tube():
    summary = tubes.summarise(_rows(), ["method"])
    worst = tubes.worst(summary, ["method"]).set_index("method")
    assert worst.loc["A", "tube_change_pct"] == pytest.approx(3.0)
    assert worst.loc["B", "tube_change_pct"] == pytest.approx(-3.0)
    assert worst.loc["A", "tube_mM"] == 50.0
    assert worst.loc["B", "worst_image_pct"] == pytest.approx(10.0)
    only_100 = tubes.worst(summary, ["method"], min_mm=75.0).set_index("method")
    assert only_100.loc["B", "tube_change_pct"] == pytest.approx(-1.0)
    with_faint = tubes.worst(summary, ["method"], min_mm=0.0).set_index("method")
    assert with_faint.loc["A", "tube_mM"] == 10.0
    with pytest.raises(ValueError, match="no tube of 200 mM"):
        tubes.worst(summary, ["method"], min_mm=200.0)
