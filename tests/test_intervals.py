"""Bootstrap intervals of a ranking: known answers on tiny tables, agreement with the benchmark."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nacode.evaluate.intervals import rank_intervals


def _table(scores: dict, studies=("calf",), levels=(5.0, 10.0)) -> pd.DataFrame:
    """scores: method → list of per-subject PSNRs (the same at every level, shifted by it)."""
    return pd.DataFrame([{"study": study, "seed": k, "snr": snr, "method": method,
                          "psnr": value + snr}
                         for study in studies for snr in levels
                         for method, values in scores.items()
                         for k, value in enumerate(values)])


def test_a_method_best_on_every_subject_has_rank_one_for_sure():
    table = _table({"a": [30, 31, 35, 32], "b": [20, 25, 33, 21], "c": [10, 11, 12, 13]})
    ranks, medians = rank_intervals(table, n_boot=500)
    ranks = ranks.set_index("method")
    assert ranks.loc["a", ["mean_rank", "rank_low", "rank_high"]].tolist() == [1, 1, 1]
    assert ranks.loc["c", ["rank_low", "rank_high"]].tolist() == [3, 3]
    row = medians.set_index(["snr", "method"]).loc[(5.0, "a")]
    assert row["median"] == pytest.approx(5.0 + 31.5)
    assert 5.0 + 30 <= row["median_low"] <= row["median"] <= row["median_high"] <= 5.0 + 35
    assert set(ranks.n_subjects) == {4}


def test_methods_that_swap_order_between_subjects_get_overlapping_intervals():
    table = _table({"a": [30, 20, 30, 20, 30], "b": [20, 30, 20, 30, 20]})
    ranks = rank_intervals(table, n_boot=2000, seed=1)[0].set_index("method")
    assert ranks.loc["a", "mean_rank"] == 1 and ranks.loc["b", "mean_rank"] == 2
    for method in "ab":  # some draws have more "b wins" subjects than "a wins" ones
        assert ranks.loc[method, "rank_low"] == 1 and ranks.loc[method, "rank_high"] == 2


def test_same_seed_same_intervals_and_the_point_rank_is_the_benchmarks():
    from nacode.studies import benchmark

    rng = np.random.default_rng(3)
    table = _table({m: list(rng.normal(30 + i, 2, size=4)) for i, m in enumerate("abcd")},
                   studies=("calf", "brain"))
    table = pd.concat([table, table[table.method == "a"].assign(method="noiseless", psnr=99.0)])
    first, second = rank_intervals(table, seed=7), rank_intervals(table, seed=7)
    for one, two in zip(first, second, strict=True):
        pd.testing.assert_frame_equal(one, two)
    assert "noiseless" not in set(first[0].method)  # the floor is not a competitor
    expected = benchmark.ranking(benchmark.summary(table.assign(
        ssim=0.0, tsc_error=0.0, tsc_voxel_error=0.0, seconds=0.0)))
    ours = first[0].pivot_table(index="method", columns="study", values="mean_rank")
    pd.testing.assert_frame_equal(ours.loc[expected.index, expected.columns], expected,
                                  check_names=False)


def test_a_method_without_every_score_is_left_out_and_one_subject_is_refused():
    table = _table({"a": [30, 31], "b": [20, 21]})
    table.loc[(table.method == "b") & (table.seed == 1) & (table.snr == 5.0), "psnr"] = np.nan
    assert set(rank_intervals(table, n_boot=50)[0].method) == {"a"}
    with pytest.raises(ValueError, match="calf: 1 subject"):
        rank_intervals(_table({"a": [30], "b": [20]}), n_boot=10)
