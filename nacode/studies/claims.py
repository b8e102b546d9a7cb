"""Every quantitative claim of the three papers beside this build's number, with a verdict.

A :class:`Claim` quotes the paper (its value and where it stands: table, figure, section), names
a reader that takes our value from the chapters' CSVs under ``<build>/results/<chapter>/`` and
the section of the chapter that shows why. Our numbers are never typed here: only the papers'.

Each claim is checked on one or more :class:`Cell` (an NSA, an undersampling factor, a mean or
a median), by one of two rules:

- **direction** (A higher, or lower, than B; or than a bound the paper states): a cell is
  *reproduced* when ours has the paper's direction (and p < :data:`ALPHA` where the paper
  claims significance), *contradicted* when it has the opposite direction, else *not
  reproduced* (a tie, or the right direction without significance);
- **magnitude** (a value, e.g. a gain of 5.7 dB): a cell is *reproduced* when ours lies within
  the claim's :class:`Tolerance` of the paper's value (:data:`TOLERANCES`, one per kind of
  quantity), *contradicted* when ours and the paper's value lie on opposite sides of the
  claim's neutral value (0 for a gain or a bias, 1 for a ratio), else *not reproduced*.

A claim over several cells is reproduced when every cell is, contradicted when every cell is,
and otherwise not reproduced. A claim whose CSV (or row, or column) is missing from this build
is :data:`NOT_MEASURED` — not an error, so the table renders when only some chapters ran. The
claims themselves are listed in :mod:`nacode.studies.claims_list`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
CONTRADICTED = "contradicted"
NOT_MEASURED = "not measured in this build"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, CONTRADICTED, NOT_MEASURED)
#: Significance level of every claim of significance.
ALPHA = 0.05
#: Display names of the studies, and the chapter (``book/<chapter>.md``) of each.
STUDIES = {"calf": "Calf CNN", "brain": "Brain DAE", "breast": "Breast DIP-Fusion"}
COLUMNS = ("key", "study", "claim", "source", "paper", "ours", "verdict", "rule", "chapter",
           "target", "note")


class NotMeasured(Exception):
    """This build has not written the CSV, row or column a claim reads."""


@dataclass(frozen=True)
class Tolerance:
    """How close ours must be to the paper's value for a magnitude claim.

    ``mode`` is ``"abs"`` (``abs(ours − paper) ≤ value``, in the claim's unit), ``"rel"``
    (``abs(ours − paper) ≤ value × abs(paper)``) or ``"factor"`` (ours / paper within
    [1 / ``value``, ``value``]; both positive).
    """

    value: float
    mode: str
    text: str

    def within(self, ours: float, paper: float) -> bool:
        """Whether ``ours`` lies within this tolerance of ``paper``."""
        if self.mode == "abs":
            return abs(ours - paper) <= self.value
        if self.mode == "rel":
            return abs(ours - paper) <= self.value * abs(paper)
        if self.mode == "factor":
            return ours > 0 and paper > 0 and max(ours / paper, paper / ours) <= self.value
        raise ValueError(f"tolerance mode {self.mode!r}: expected 'abs', 'rel' or 'factor'")


PSNR_DB = Tolerance(1.0, "abs", "±1 dB")
SSIM = Tolerance(0.02, "abs", "±0.02")
ATSC_MM = Tolerance(0.5, "abs", "±0.5 mM")
RELATIVE = Tolerance(0.20, "rel", "±20 % of the paper's value")
EQUAL = Tolerance(0.10, "rel", "±10 %")
TIME = Tolerance(2.0, "factor", "a factor of 2")
#: The tolerance of each kind of quantity (magnitude claims).
TOLERANCES = {
    "PSNR gains (dB)": PSNR_DB,
    "SSIM gains": SSIM,
    "aTSC biases (mM)": ATSC_MM,
    "SNR, aTSC and relative improvements (%)": RELATIVE,
    "ratios claimed equal to 1 (edge sharpness)": EQUAL,
    "times and speed-ups": TIME,
}


@dataclass(frozen=True)
class Cell:
    """One comparison a claim is checked on.

    ``ours`` is our value; for a direction claim ``versus`` is what it is compared with (None:
    the paper's bound, :attr:`Claim.paper`) and ``p`` the p-value of that comparison.
    """

    label: str
    ours: float
    versus: float | None = None
    p: float | None = None


Reader = Callable[[Path], Sequence[Cell]]


@dataclass(frozen=True)
class Claim:
    """A quantitative claim of a paper, how our value is read and how it is judged.

    Parameters
    ----------
    key : str
        Stable identifier.
    study : {"calf", "brain", "breast"}
        The paper, and the chapter (``book/<study>.md``, ``results/<study>/``).
    text : str
        The claim, in a few words.
    source : str
        Where the paper makes it ("Table 1", "§3.2.1", "Abstract").
    paper_text : str
        The paper's value as it states it.
    kind : {"direction", "magnitude"}
        The verdict rule (module docstring).
    read : callable or None
        ``read(results_dir) -> [Cell, ...]``; None for a claim no build can measure.
    target : str
        MyST label of the chapter section that shows why.
    sense : {">", "<"}
        Direction claims: ours should be higher (">") or lower ("<") than ``versus``.
    paper : float, optional
        Magnitude claims: the paper's value; direction claims: the bound for cells without
        ``versus``.
    tolerance : Tolerance, optional
        Magnitude claims: how close is close enough.
    neutral : float
        Magnitude claims: ours and the paper on opposite sides of it is a contradiction.
    significance : bool
        Direction claims: the paper claims p < :data:`ALPHA`.
    unit, fmt : str
        How our values are printed.
    note : str
        What a reader of the table should know.
    """

    key: str
    study: str
    text: str
    source: str
    paper_text: str
    kind: str
    read: Reader | None
    target: str
    sense: str = ">"
    paper: float | None = None
    tolerance: Tolerance | None = None
    neutral: float = 0.0
    significance: bool = False
    unit: str = ""
    fmt: str = ".2f"
    note: str = ""


def direction_verdict(ours: float, versus: float, sense: str = ">", p: float | None = None,
                      significance: bool = False) -> str:
    """One cell of a direction claim: ours ``sense`` versus, with p < ALPHA if claimed."""
    diff = ours - versus if sense == ">" else versus - ours
    if diff < 0:
        return CONTRADICTED
    if diff > 0 and (not significance or (p is not None and p < ALPHA)):
        return REPRODUCED
    return NOT_REPRODUCED


def magnitude_verdict(ours: float, paper: float, tolerance: Tolerance,
                      neutral: float = 0.0) -> str:
    """One cell of a magnitude claim: within the tolerance, on the other side of neutral, or
    neither."""
    if tolerance.within(ours, paper):
        return REPRODUCED
    if (ours - neutral) * (paper - neutral) < 0:
        return CONTRADICTED
    return NOT_REPRODUCED


def combine(verdicts: Sequence[str]) -> str:
    """A claim over several cells: reproduced (contradicted) when every cell is, else not
    reproduced; :data:`NOT_MEASURED` for no cells."""
    if not verdicts:
        return NOT_MEASURED
    for shared in (REPRODUCED, CONTRADICTED):
        if all(v == shared for v in verdicts):
            return shared
    return NOT_REPRODUCED


def cell_verdict(claim: Claim, cell: Cell) -> str:
    """The verdict of one cell under the claim's rule."""
    if claim.kind == "direction":
        versus = claim.paper if cell.versus is None else cell.versus
        return direction_verdict(cell.ours, versus, claim.sense, cell.p, claim.significance)
    if claim.kind == "magnitude":
        return magnitude_verdict(cell.ours, claim.paper, claim.tolerance, claim.neutral)
    raise ValueError(f"claim {claim.key}: kind {claim.kind!r} is not 'direction' or 'magnitude'")


def rule_text(claim: Claim) -> str:
    """The verdict rule of a claim in words."""
    if claim.kind == "magnitude":
        return f"within {claim.tolerance.text}"
    rule = "higher" if claim.sense == ">" else "lower"
    if claim.paper is not None:
        rule = f"{'above' if claim.sense == '>' else 'below'} {_number(claim.paper, claim)}"
    return rule + (f", p < {ALPHA:g}" if claim.significance else "")


def _number(value: float, claim: Claim) -> str:
    text = format(value, claim.fmt).replace("-", "−")
    return text + claim.unit if claim.unit == "×" else f"{text} {claim.unit}".strip()


def describe(claim: Claim, cells: Sequence[Cell]) -> str:
    """Our value(s) in words: the number for one cell; for several, how many cells agree and
    the weakest one."""
    def compared(c: Cell) -> str:
        if claim.kind == "magnitude":
            return _number(c.ours, claim)
        versus = claim.paper if c.versus is None else c.versus
        text = f"{_number(c.ours, claim)} vs {_number(versus, claim)}"
        return text + (f" (p = {c.p:.2g})" if claim.significance and c.p is not None else "")

    if len(cells) == 1:
        return compared(cells[0])
    verdicts = [cell_verdict(claim, c) for c in cells]
    if claim.kind == "magnitude":
        text = f"{verdicts.count(REPRODUCED)}/{len(cells)} within {claim.tolerance.text}"
        worst = max(cells, key=lambda c: abs(c.ours - claim.paper))
    else:
        sign = 1.0 if claim.sense == ">" else -1.0
        same = sum(sign * (c.ours - (claim.paper if c.versus is None else c.versus)) > 0
                   for c in cells)
        text = f"{same}/{len(cells)} in the paper's direction"
        if claim.significance:
            text += f" ({verdicts.count(REPRODUCED)} with p < {ALPHA:g})"
        worst = min(cells, key=lambda c: sign * (c.ours - (
            claim.paper if c.versus is None else c.versus)))
    return f"{text}; weakest {worst.label}: {compared(worst)}"


def evaluate(claim: Claim, results: Path) -> dict:
    """One row of the claims table: the claim, the paper's value, ours and the verdict."""
    row = {"key": claim.key, "study": STUDIES[claim.study], "claim": claim.text,
           "source": claim.source, "paper": claim.paper_text, "rule": rule_text(claim),
           "chapter": claim.study, "target": claim.target, "note": claim.note}
    try:
        if claim.read is None:
            raise NotMeasured(claim.note or "no build can measure it")
        cells = list(claim.read(Path(results)))
        if not cells or any(not math.isfinite(c.ours) for c in cells):
            raise NotMeasured("no finite value in this build's CSV")
    except (NotMeasured, KeyError) as exc:
        missing = exc.args[0] if exc.args else exc
        return {**row, "ours": "—", "verdict": NOT_MEASURED,
                "note": claim.note or (f"missing: {missing}" if claim.read else "")}
    verdict = combine([cell_verdict(claim, c) for c in cells])
    return {**row, "ours": describe(claim, cells), "verdict": verdict}


def table(results: Path | None = None, claims: Sequence[Claim] | None = None):
    """The claims table of this build (:data:`COLUMNS`), one row per claim.

    Parameters
    ----------
    results : Path, optional
        The results folder (default ``<build dir>/results``, :func:`nacode.results.build_dir`).
    claims : sequence of Claim, optional
        Default: every claim of :data:`nacode.studies.claims_list.CLAIMS`.
    """
    import pandas as pd

    from nacode.results import build_dir

    if claims is None:
        from nacode.studies.claims_list import CLAIMS as claims
    results = build_dir() / "results" if results is None else Path(results)
    return pd.DataFrame([evaluate(c, results) for c in claims], columns=list(COLUMNS))


def counts(claims_table) -> dict[str, int]:
    """How many claims got each verdict (every verdict present, zeros included)."""
    found = claims_table["verdict"].value_counts()
    return {v: int(found.get(v, 0)) for v in VERDICTS}


def markdown(claims_table) -> str:
    """The table as MyST markdown, one pipe table per study, whose last column links
    (``{ref}``) to the chapter section that shows why; for ``{glue:md}`` with ``:format: myst``
    (Sphinx then checks every link)."""
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    parts = []
    for study, rows in claims_table.groupby("study", sort=False):
        lines = [f"**{study}**", "", "| Claim | Paper | Ours | Rule | Verdict | Why |",
                 "|:--|:--|:--|:--|:--|:--|"]
        for r in rows.itertuples(index=False):
            verdict = f"**{r.verdict}**" if r.verdict == CONTRADICTED else r.verdict
            ours = f"{r.ours} ({r.note})" if r.note else r.ours
            lines.append("| " + " | ".join(cell(x) for x in (
                r.claim, f"{r.paper} ({r.source})", ours, r.rule, verdict,
                f"{{ref}}`{r.target}`")) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
