"""The shared tuning protocol: grid checks, edge extension, known optima."""

from __future__ import annotations

import numpy as np
import pytest

from nacode.evaluate.tuning import choose, log_grid, tune


def _parabola(optimum: float):
    calls: list[list[float]] = []

    def evaluate(values):
        calls.append(list(values))
        return [-(np.log10(v) - np.log10(optimum)) ** 2 for v in values]

    return evaluate, calls


def test_log_grid_spans_the_asked_decades():
    grid = log_grid(0.001, 0.1, per_decade=2)
    assert grid == (0.001, 0.00316, 0.01, 0.0316, 0.1)
    with pytest.raises(ValueError, match="low < high"):
        log_grid(1.0, 0.1)


def test_an_interior_optimum_is_found_without_extension():
    evaluate, calls = _parabola(0.01)
    result = tune("CS-TV", "λ", evaluate, log_grid(0.001, 0.1, 2))
    assert result.best == 0.01 and not result.on_edge and result.extensions == 0
    assert len(calls) == 1 and "0.01 won" in result.message() and "inside" in result.message()
    assert [r["chosen"] for r in result.rows()] == [False, False, True, False, False]


@pytest.mark.parametrize(("optimum", "expected"), [(0.3, 0.316), (2e-4, 3.16e-4)])
def test_a_winning_edge_extends_the_grid_evaluating_only_new_values(optimum, expected):
    evaluate, calls = _parabola(optimum)
    result = tune("dTV", "λ", evaluate, log_grid(0.001, 0.1, 2), max_extensions=3)
    assert result.best == pytest.approx(expected, rel=0.02)
    assert not result.on_edge and result.extensions >= 1
    assert all(len(c) == 1 for c in calls[1:])  # one new candidate per extension


def test_refinement_closes_in_on_an_optimum_between_grid_points():
    evaluate, calls = _parabola(0.03)  # between the grid points 0.0215 and 0.0464
    coarse = tune("NLM", "h", evaluate, log_grid(0.001, 0.1))
    evaluate, calls = _parabola(0.03)
    fine = tune("NLM", "h", evaluate, log_grid(0.001, 0.1), refine=2)
    # each round evaluates the two midpoints around the winner, and only those
    assert [len(c) for c in calls] == [7, 2, 2] and set(coarse.values) < set(fine.values)
    assert abs(np.log10(fine.best / 0.03)) < abs(np.log10(coarse.best / 0.03))
    assert abs(np.log10(fine.best / 0.03)) < np.log10(10) / 3 / 4 + 1e-9  # a quarter step
    assert not fine.on_edge and fine.extensions == 0
    # an optimum on the edge after the extensions is not refined
    evaluate, calls = _parabola(100.0)
    assert tune("x", "y", evaluate, (0.01, 0.1, 1.0), max_extensions=1, refine=2).on_edge
    assert len(calls) == 2


def test_an_optimum_beyond_the_allowed_extensions_is_reported_on_the_edge():
    evaluate, _ = _parabola(100.0)
    result = tune("DIP-Fusion", "λ1", evaluate, (0.01, 0.1, 1.0), max_extensions=1)
    assert result.on_edge and result.best == 10.0 and "edge" in result.message()


def test_minimising_and_bad_grids():
    def loss(values):
        return [(np.log10(v) + 2) ** 2 for v in values]

    assert tune("x", "h", loss, (1e-4, 1e-3, 1e-2, 1e-1, 1.0), maximise=False).best == 0.01
    with pytest.raises(ValueError, match="decades"):
        tune("x", "h", loss, (0.1, 0.3, 1.0))
    with pytest.raises(ValueError, match="distinct positive"):
        tune("x", "h", loss, (0.0, 0.1, 10.0))
    with pytest.raises(ValueError, match="finite"):
        tune("x", "h", lambda v: [np.nan] * len(v), (0.01, 0.1, 1.0))


def test_categorical_choice():
    result = choose("DIP", "stopping rule", {"ES-WMV": 27.1, "fixed 400": 27.9})
    assert result.best == "fixed 400" and result.categorical and not result.on_edge
    assert "fixed 400 won" in result.message()
