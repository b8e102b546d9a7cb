"""One tuning protocol for every method: a wide grid, the winner off its edge, a curve.

Every method of a comparison gets its free parameter chosen the same way
(:func:`tune`): on validation data only, each candidate run to its own convergence rule by
the caller's ``evaluate``, over a logarithmic grid that spans at least ``min_decades`` decades.
If the best score lies at either end of the grid, the grid is extended by one step beyond that
end (same ratio) and only the new candidates are evaluated, up to ``max_extensions`` times —
so the winner is an interior optimum, or the result says plainly that it is not. The returned
:class:`Tuning` holds every candidate's score for the tuning-curve figure
(:func:`nacode.plot.tuning_curves`) and a one-line message naming the winner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def log_grid(low: float, high: float, per_decade: int = 3) -> tuple[float, ...]:
    """Logarithmically spaced values from ``low`` to ``high`` (both > 0), rounded to 3 digits.

    ``per_decade`` points per factor of 10 (the ends included).
    """
    if not 0 < low < high:
        raise ValueError(f"log_grid needs 0 < low < high, got {low} and {high}")
    count = round(per_decade * np.log10(high / low)) + 1
    return tuple(float(f"{v:.3g}") for v in np.geomspace(low, high, count))


@dataclass(frozen=True)
class Tuning:
    """The outcome of :func:`tune` for one parameter of one method.

    Attributes
    ----------
    method, parameter : str
        What was tuned (for tables and messages).
    values : tuple of float
        Every candidate evaluated, sorted ascending.
    scores : tuple of float
        The validation score of each (higher is better when ``maximise``).
    best : float
        The chosen value.
    on_edge : bool
        True when the best value is still at an end of the (extended) grid.
    extensions : int
        How many times the grid was extended.
    maximise : bool
    categorical : bool
        True for a choice among labelled options (:func:`choose`): no grid, no edge.
    """

    method: str
    parameter: str
    values: tuple[float, ...]
    scores: tuple[float, ...]
    best: float
    on_edge: bool
    extensions: int
    maximise: bool = True
    categorical: bool = False

    @property
    def decades(self) -> float:
        """How many decades the evaluated grid spans (NaN for a categorical choice)."""
        if self.categorical:
            return float("nan")
        return float(np.log10(self.values[-1] / self.values[0]))

    @property
    def best_score(self) -> float:
        """The winner's validation score."""
        return self.scores[self.values.index(self.best)]

    def message(self) -> str:
        """One line: the winner, its score, the grid and whether it is interior."""
        if self.categorical:
            return (f"{self.method}: {self.parameter} = {self.best} won (score "
                    f"{self.best_score:.3f}) among {', '.join(map(str, self.values))}")
        where = ("at the edge of the grid: the optimum may lie beyond it" if self.on_edge
                 else "inside the grid")
        return (f"{self.method}: {self.parameter} = {self.best:g} won (score "
                f"{self.best_score:.3f}) among {len(self.values)} values from "
                f"{self.values[0]:g} to {self.values[-1]:g} ({self.decades:.1f} decades), "
                f"{where}")

    def rows(self) -> list[dict]:
        """One dict per candidate: method, parameter, value, score, chosen."""
        return [{"method": self.method, "parameter": self.parameter, "value": v, "score": s,
                 "chosen": v == self.best} for v, s in zip(self.values, self.scores,
                                                          strict=True)]


def tune(method: str, parameter: str, evaluate: Callable[[list[float]], Sequence[float]],
         grid: Sequence[float], *, maximise: bool = True, min_decades: float = 2.0,
         max_extensions: int = 2, refine: int = 0) -> Tuning:
    """Choose one parameter on validation data by the shared protocol.

    Parameters
    ----------
    method, parameter : str
        Names for the result.
    evaluate : callable
        ``evaluate(values) -> scores``: runs the method for every value in the list (batched
        if it can; each to convergence) on the validation data and returns one score per
        value (e.g. mean validation PSNR). Never called on test data.
    grid : sequence of float > 0
        Initial candidates, spanning at least ``min_decades`` decades (checked).
    maximise : bool
        Whether a higher score is better.
    min_decades : float
        Required span of ``grid`` (log10 of max / min).
    max_extensions : int
        How many times the grid may grow past an end that wins.
    refine : int
        Rounds of refinement once the winner is interior: each evaluates the geometric
        midpoints between the winner and its two neighbours (two candidates per round), so a
        coarse two-decade grid still ends near the optimum.

    Returns
    -------
    Tuning

    Raises
    ------
    ValueError
        If the grid has fewer than 3 values, non-positive values, spans less than
        ``min_decades``, or ``evaluate`` returns the wrong number of finite scores.
    """
    values = sorted(float(v) for v in grid)
    if len(values) < 3 or values[0] <= 0 or len(set(values)) != len(values):
        raise ValueError(f"{method}: the {parameter} grid needs ≥ 3 distinct positive values, "
                         f"got {list(grid)}")
    if np.log10(values[-1] / values[0]) < min_decades - 1e-9:
        raise ValueError(f"{method}: the {parameter} grid {values} spans "
                         f"{np.log10(values[-1] / values[0]):.2f} decades; the protocol asks "
                         f"for ≥ {min_decades:g} (widen it)")
    scores: dict[float, float] = {}

    def run(candidates: list[float]) -> None:
        result = [float(s) for s in evaluate(list(candidates))]
        if len(result) != len(candidates) or not np.all(np.isfinite(result)):
            raise ValueError(f"{method}: evaluate returned {result} for {candidates}; expected "
                             f"{len(candidates)} finite scores")
        scores.update(zip(candidates, result, strict=True))

    run(values)
    extensions = 0
    sign = 1.0 if maximise else -1.0
    while True:
        ordered = sorted(scores)
        best = max(ordered, key=lambda v: sign * scores[v])
        at_low, at_high = best == ordered[0], best == ordered[-1]
        if not (at_low or at_high) or extensions >= max_extensions:
            break
        ratio = ordered[1] / ordered[0] if at_low else ordered[-1] / ordered[-2]
        run([float(f"{(ordered[0] / ratio if at_low else ordered[-1] * ratio):.3g}")])
        extensions += 1
    for _ in range(refine if best not in (ordered[0], ordered[-1]) else 0):
        i = ordered.index(best)
        middles = {float(f"{np.sqrt(best * ordered[j]):.3g}") for j in (i - 1, i + 1)}
        middles = sorted(middles - set(ordered))
        if not middles:  # the grid is as fine as 3 digits allow
            break
        run(middles)
        ordered = sorted(scores)
        best = max(ordered, key=lambda v: sign * scores[v])
    ordered = sorted(scores)
    return Tuning(method=method, parameter=parameter, values=tuple(ordered),
                  scores=tuple(scores[v] for v in ordered), best=best,
                  on_edge=best in (ordered[0], ordered[-1]), extensions=extensions,
                  maximise=maximise)


def tune_filter(method: str, parameter: str, apply: Callable[[np.ndarray, float], np.ndarray],
                grid: Sequence[float], noisy: np.ndarray, clean: np.ndarray, *,
                data_range: float = 1.0, **kwargs) -> Tuning:
    """:func:`tune` for a one-parameter image filter on validation pairs (median PSNR).

    Parameters
    ----------
    method, parameter : str
        Names for the result.
    apply : callable
        ``apply(noisy, value) -> denoised`` on the whole stack (a filter has no convergence
        rule: one application is its result).
    grid : sequence of float > 0
        Initial candidates (≥ two decades).
    noisy, clean : ndarray, shape (n, ...)
        Validation inputs and their ground truths.
    data_range : float
        The PSNR's peak value.
    **kwargs
        Passed to :func:`tune` (``min_decades``, ``max_extensions``).
    """
    from nacode.evaluate.metrics import psnr

    def evaluate(values: list[float]) -> list[float]:
        return [float(np.median([psnr(c, o, data_range) for c, o in
                                 zip(clean, apply(noisy, value), strict=True)]))
                for value in values]

    return tune(method, parameter, evaluate, grid, **kwargs)


def choose(method: str, parameter: str, scores: dict, *, maximise: bool = True) -> Tuning:
    """The same record for a categorical choice (e.g. a stopping rule) scored on validation.

    ``scores`` maps each option (any label; stored by position) to its validation score; there
    is no grid edge for categories, so ``on_edge`` is False.
    """
    if not scores:
        raise ValueError(f"{method}: nothing to choose for {parameter}")
    options = list(scores)
    sign = 1.0 if maximise else -1.0
    best = max(options, key=lambda o: sign * scores[o])
    return Tuning(method=method, parameter=parameter, values=tuple(options),
                  scores=tuple(float(scores[o]) for o in options), best=best, on_edge=False,
                  extensions=0, maximise=maximise, categorical=True)
