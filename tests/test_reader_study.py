"""The blinded reader-study kit, tested on simulated rankings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nacode.evaluate import reader_study

METHODS = ("reference", "nufft", "cs", "cnn")


@pytest.fixture()
def kit(tmp_path):
    rng = np.random.default_rng(0)
    cases = {(v, nsa): {m: rng.random((16, 16)) for m in METHODS}
             for v in range(4) for nsa in (50, 10)}
    return reader_study.make_kit(cases, tmp_path, seed=3)


def test_kit_is_blinded_and_complete(kit):
    key = pd.read_csv(kit["key"])
    form = pd.read_csv(kit["form"])
    assert len(form) == 8 and list(form.columns) == ["case", "A", "B", "C", "D"]
    assert len(list(kit["sheets"].glob("*.png"))) == 8
    # the form carries no method names; each case uses every method once
    assert not any(m in form.to_string() for m in METHODS)
    assert all(sorted(g["method"]) == sorted(METHODS) for _, g in key.groupby("case"))
    # panels are permuted: the CNN is not always in the same panel
    assert key[key.method == "cnn"]["panel"].nunique() > 1


def test_competition_ranking_rules():
    assert reader_study.check_competition_ranking([1, 2, 3, 4])
    assert reader_study.check_competition_ranking([1, 1, 3, 4])
    assert reader_study.check_competition_ranking([2, 1, 2, 4])
    assert not reader_study.check_competition_ranking([1, 2, 2, 3])
    assert not reader_study.check_competition_ranking([0, 1, 2, 3])


def test_analysis_recovers_a_clear_preference(kit):
    quality = {"reference": 3.0, "cnn": 3.0, "cs": 1.5, "nufft": 0.0}
    forms = reader_study.simulate_forms(kit["key"], quality, readers=3, noise=0.3, seed=1)
    table, tests = reader_study.analyse(kit["key"], forms)
    means = table.groupby("method")["mean"].mean()
    assert means["cnn"] < means["cs"] < means["nufft"]
    row = tests[(tests.nsa == 50) & (((tests.A == "cnn") & (tests.B == "nufft"))
                                     | ((tests.A == "nufft") & (tests.B == "cnn")))]
    assert float(row["p"].iloc[0]) < 0.05
    assert set(table["n"]) == {3 * 4}


def test_bad_forms_name_the_reader_and_case(kit):
    form = pd.read_csv(kit["form"])
    form[["A", "B", "C", "D"]] = [1, 2, 2, 3]
    with pytest.raises(ValueError, match="reader alice, case001"):
        reader_study.analyse(kit["key"], {"alice": form})
