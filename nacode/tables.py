"""Results tables as a reader wants them: the one formatter every chapter displays with.

The chapters write their raw numbers with :func:`nacode.results.save_table` and show them with
:func:`show`, which returns a :class:`pandas.io.formats.style.Styler` (rendered as HTML by
Jupyter Book) and never changes the table it is given:

- no index column (a meaningful index, e.g. the methods of a pivot table, becomes a column);
- readable headers: a ``labels`` mapping, else :func:`label`, which turns snake_case into
  words, spells abbreviations (``psnr`` → PSNR) and moves a trailing unit into brackets
  (``median_ms`` → "median (ms)");
- a median and its spread in one cell: ``median ± IQR`` when the spread column is the
  interquartile range, ``median (Q1–Q3)`` when two quartile columns are given;
- p-values as ``< 0.001`` or with three decimals (``0.012``), never ``0.0``;
- the paper's value in a column right beside ours;
- rounding per column, and a small font with wrapping headers so that up to eight columns fit
  the page without horizontal scrolling.

Cells that are missing (None, NaN) show as an em dash.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

#: Lower-case tokens of a snake_case name and how a reader spells them.
ABBREVIATIONS = {
    "psnr": "PSNR", "ssim": "SSIM", "fsim": "FSIM", "mse": "MSE", "snr": "SNR", "tsc": "TSC",
    "atsc": "aTSC", "iqr": "IQR", "sd": "SD", "nsa": "NSA", "roi": "ROI", "gm": "GM",
    "wm": "WM", "csf": "CSF", "lpips": "LPIPS", "dtv": "dTV", "gc": "GC", "cnn": "CNN",
    "dae": "DAE", "dip": "DIP", "nlm": "NLM", "cpu": "CPU", "gpu": "GPU", "q1": "Q1",
    "q3": "Q3", "t1": "T1", "t2": "T2*", "1h": "¹H", "bonferroni": "Bonferroni",
}
#: What the suffix of a p-value column means (pingouin's ``p_unc``, ``p_corr``).
P_NAMES = {"unc": "uncorrected", "corr": "corrected", "adj": "adjusted"}
#: Trailing tokens that are units, and how they are printed (in brackets after the words).
UNITS = {"ms": "ms", "s": "s", "min": "min", "h": "h", "mm": "mm", "ml": "mL", "mM": "mM",
         "db": "dB", "dB": "dB", "pct": "%", "percent": "%"}
#: What a missing cell shows.
MISSING = "—"
#: Text cells up to this many characters (method names such as "DIP-Fusion") never wrap;
#: longer ones may, so that a table of up to eight columns fits the page.
SHORT_TEXT = 14
#: Page-fitting CSS: small font, headers that wrap between words, numbers that do not.
TABLE_STYLES = [
    {"selector": "", "props": "font-size: 0.82em; border-collapse: collapse; width: auto; "
                              "max-width: 100%; margin: 0.5em 0 1em 0;"},
    {"selector": "th", "props": "white-space: normal; overflow-wrap: break-word; "
                                "vertical-align: bottom; text-align: center; "
                                "padding: 0.3em 0.55em; font-weight: 600; line-height: 1.2;"},
    {"selector": "td", "props": "white-space: nowrap; text-align: right; padding: 0.2em 0.55em; "
                                "font-variant-numeric: tabular-nums;"},
    {"selector": "caption", "props": "caption-side: top; text-align: left; "
                                     "font-style: italic; padding-bottom: 0.3em;"},
]


def label(name: Any) -> str:
    """A reader's header for the column ``name``.

    snake_case becomes words, known abbreviations are spelt out (:data:`ABBREVIATIONS`) and a
    trailing unit token goes into brackets (:data:`UNITS`); a name that already reads as
    words (no underscore, e.g. ``"seconds per slice"``, ``"R = 4"``, ``"DIP-Fusion"``) is kept.
    Tuples (the levels of a flattened multi-level header) are joined with ", ".

    Examples
    --------
    >>> label("stopped_by_time_budget")
    'stopped by time budget'
    >>> label("tsc_mM"), label("psnr_median"), label("volume_ml")
    ('TSC (mM)', 'PSNR median', 'volume (mL)')
    """
    if isinstance(name, tuple):
        return ", ".join(label(part) for part in name if str(part) != "")
    if isinstance(name, float) and name.is_integer():
        name = int(name)
    text = str(name)
    if "_" not in text:
        return ABBREVIATIONS.get(text, text)
    tokens = [token for token in text.split("_") if token]
    if tokens[0] == "p" and len(tokens) > 1:  # p_val, p_unc, p_bonferroni (pingouin's names)
        rest = label("_".join(tokens[1:]))
        return "p" if rest in ("val", "value") else f"p ({P_NAMES.get(rest, rest)})"
    unit = UNITS[tokens.pop()] if len(tokens) > 1 and tokens[-1] in UNITS else None
    words = " ".join(ABBREVIATIONS.get(token, token) for token in tokens)
    return f"{words} ({unit})" if unit else words


def format_p(p: Any, *, floor: float = 0.001) -> str:
    """A p-value as a paper prints it: ``"< 0.001"`` below ``floor``, else three decimals.

    Examples
    --------
    >>> format_p(0.0), format_p(0.0123), format_p(0.5), format_p(None)
    ('< 0.001', '0.012', '0.500', '—')
    """
    if _missing(p):
        return MISSING
    p = float(p)
    return f"< {floor:g}" if p < floor else f"{p:.3f}"


def format_number(value: Any, digits: int | str = 2) -> str:
    """One cell: integers as they are, reals with ``digits`` decimals (tiny non-zero values
    with ``digits`` significant figures instead of ``0.00``), booleans as yes/no, (median,
    IQR) pairs as ``median ± IQR``, anything else as ``str``; missing values as :data:`MISSING`.

    ``digits`` may also be a format specification for reals, e.g. ``".3g"``: three
    significant figures, for values that span decades, never with an exponent (0.0000193 →
    "0.0000193"; numbers too large for the figures are printed whole: 12345.6 → "12346").
    Infinities print as ∞.
    """
    if _missing(value):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, tuple) and len(value) == 2:
        return f"{format_number(value[0], digits)} ± {format_number(value[1], digits)}"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        value = float(value)
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if isinstance(digits, str):
            figures = digits.strip(".g")
            if not (digits.endswith("g") and figures.isdigit()):
                return format(value, digits)
            if abs(value) >= 10 ** int(figures):
                return f"{value:.0f}"  # no exponent: 12345.6 → "12346", not "1.23e+04"
            return np.format_float_positional(value, precision=int(figures), unique=False,
                                              fractional=False, trim="-")
        if value != 0 and abs(value) < 0.5 * 10.0 ** -digits:
            return f"{value:.{max(digits, 1)}g}"
        return f"{value:.{digits}f}"
    return str(value)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(isinstance(value, Real) and math.isnan(value))
    except TypeError:
        return False


def _column_digits(column, digits: int | str) -> int | str:
    """``digits``, or 0 for a float column whose every value is a whole number (``snr = 5.0``)."""
    import pandas as pd

    if isinstance(digits, int) and pd.api.types.is_float_dtype(column):
        finite = column.dropna()
        if len(finite) and bool(((finite % 1) == 0).all()) and bool((finite.abs() < 1e9).all()):
            return 0
    return digits


def _flat(table):
    """``table`` with a named index as columns, an unnamed one dropped, and one header level
    (multi-level headers joined)."""
    import pandas as pd

    table = table.copy()
    if isinstance(table.columns, pd.MultiIndex):
        table.columns = [tuple(part for part in col if str(part) != "") for col in table.columns]
        table.columns = [col[0] if len(col) == 1 else col for col in table.columns]
    # A named index (the methods of a pivot table) is data; an unnamed one (row numbers,
    # perhaps reordered by a sort or a filter) is not.
    return table.reset_index(drop=all(name is None for name in table.index.names))


def _spreads(table, median_iqr) -> dict:
    """Median column → IQR column (str) or (Q1, Q3) columns (tuple)."""
    if median_iqr is None or median_iqr is False:
        return {}
    if median_iqr is True:
        pairs = {}
        for column in table.columns:
            tokens = str(column).split("_")
            candidates = [f"{column} IQR", f"{column}_iqr"]
            if "median" in tokens:
                candidates.insert(0, "_".join("iqr" if t == "median" else t for t in tokens))
            spread = next((c for c in candidates if c in table.columns), None)
            if spread is not None:
                pairs[column] = spread
        return pairs
    if isinstance(median_iqr, Mapping):
        return dict(median_iqr)
    raise TypeError("median_iqr must be True, None or a mapping of median column to its IQR "
                    f"column or (Q1, Q3) columns, got {type(median_iqr).__name__}")


def _p_columns(table, p) -> list:
    if p is None:
        return [c for c in table.columns if str(c).replace("-", "_").split("_")[0] == "p"]
    return [p] if isinstance(p, str) else list(p)


def show(table, *, labels: Mapping[Any, str] | None = None,
         median_iqr: bool | Mapping[Any, Any] | None = True,
         p: str | Sequence[str] | None = None,
         paper: Mapping[Any, Any] | None = None,
         digits: int | str | Mapping[Any, int | str] | None = None,
         columns: Sequence[Any] | None = None,
         caption: str | None = None):
    """Display a results table: no index, readable headers, merged spreads, p-values, paper.

    Parameters
    ----------
    table : pandas.DataFrame
        The raw table (as saved to CSV); it is not modified. A named index (e.g. the methods
        of a pivot table) becomes the first column(s), an unnamed one (row numbers) is left
        out; multi-level headers are joined with ", ".
    labels : mapping, optional
        Column → header. Columns not named here get :func:`label`. A merged spread column is
        labelled through its median column.
    median_iqr : True, mapping or None
        Which medians get their spread in the same cell. A mapping ``median → iqr`` gives
        ``"median ± IQR"`` (the interquartile range Q3 − Q1, the papers' notation);
        ``median → (q1, q3)`` gives ``"median (Q1–Q3)"`` (the quartiles themselves). ``True``
        (default) pairs every column whose name has the token ``median`` with the same name
        with ``iqr`` in its place (``median``/``iqr``, ``median_s``/``iqr_s``,
        ``psnr_median``/``psnr_iqr``), and every column ``c`` with a column ``"c IQR"`` or
        ``c_iqr`` (``"R = 4"``/``"R = 4 IQR"``); ``None`` merges nothing. The spread columns
        are not shown separately. A default header whose name holds "median" says which form
        the cell has ("median ± IQR"); other headers are kept, so say it in the caption.
    p : str or list of str, optional
        Columns of p-values, shown by :func:`format_p`. Default: every column whose first
        token is ``p`` (``p``, ``p_val``, ``p-unc``, ``p_bonferroni``); ``[]`` for none.
    paper : mapping, optional
        Our column → the paper's values, shown in a column right after ours: the name of a
        column of ``table`` (moved there), one value for every row, or a sequence with one
        value per row (None where the paper reports none; a ``(median, IQR)`` pair shows as
        ``"median ± IQR"``). A new column's header is ``"<our header>, paper"``. Paper
        values take our column's decimals, or their column's where ``digits`` names it.
    digits : int, str or mapping, optional
        Decimals of real numbers: one for all, or column → decimals; a string is a format
        specification instead (``".3g"``: three significant figures, see
        :func:`format_number`). Columns it does not set (all, by default) get 2 decimals,
        or none if the column holds only whole numbers (e.g. ``snr = 5.0``).
    columns : list, optional
        The columns to show, in order (names of ``table``'s columns after the index is reset;
        spread and paper columns follow their median / our column by themselves).
    caption : str, optional
        Caption above the table.

    Returns
    -------
    pandas.io.formats.style.Styler
        Strings only, index hidden, with :data:`TABLE_STYLES`; text columns left-aligned;
        text and ``median ± IQR`` cells wrap at spaces only in columns with a cell longer
        than :data:`SHORT_TEXT` characters.

    Examples
    --------
    >>> import pandas as pd
    >>> raw = pd.DataFrame({"roi": ["muscle"], "median": [21.04], "iqr": [2.96], "p": [0.0]})
    >>> styled = show(raw, labels={"median": "aTSC (mM)"}, paper={"median": [(21.5, 3.0)]})
    >>> list(styled.data.columns)
    ['ROI', 'aTSC (mM)', 'aTSC (mM), paper', 'p']
    >>> styled.data.iloc[0].tolist()
    ['muscle', '21.04 ± 2.96', '21.50 ± 3.00', '< 0.001']
    """
    import pandas as pd
    from pandas.io.formats.style import Styler

    labels = dict(labels or {})
    data = _flat(table)
    spreads = _spreads(data, median_iqr)
    p_columns = set(_p_columns(data, p))
    paper = dict(paper or {})
    for name in [*spreads, *p_columns, *paper, *(columns or [])]:
        if name not in data.columns:
            raise KeyError(f"show: column {name!r} is not in the table "
                           f"(columns: {', '.join(map(str, data.columns))})")
    hidden = {c for spread in spreads.values()
              for c in ((spread,) if isinstance(spread, str) else tuple(spread))}
    paper_columns = {ours: theirs for ours, theirs in paper.items()
                     if isinstance(theirs, str) and theirs in data.columns}
    hidden |= set(paper_columns.values())
    order = [c for c in (columns or data.columns) if c not in hidden]

    def places(column) -> int | str:
        if isinstance(digits, Mapping) and column in digits:
            return digits[column]
        if digits is None or isinstance(digits, Mapping):
            return _column_digits(data[column], 2)
        return digits

    shown: dict[str, list[str]] = {}
    wrapping: set[str] = set()  # long text, and long "median ± IQR" cells, may wrap
    numeric_columns: set[str] = set()

    def add(header: str, cells: list[str], numeric: bool, spread: bool = False) -> None:
        while header in shown:
            header += " "
        shown[header] = cells
        if numeric:
            numeric_columns.add(header)
        if (spread or not numeric) and max((len(c) for c in cells), default=0) > SHORT_TEXT:
            wrapping.add(header)  # names and plain numbers never wrap

    for column in order:
        values = data[column]
        numeric = all(isinstance(v, Real) and not isinstance(v, bool | np.bool_)
                      for v in values if not _missing(v))
        d = places(column)
        header = labels.get(column)
        if column in p_columns:
            cells = [format_p(v) for v in values]
        elif column in spreads:
            spread = spreads[column]
            if isinstance(spread, str):
                cells = [format_number(m, d) if _missing(s) else
                         f"{format_number(m, d)} ± {format_number(s, d)}"
                         for m, s in zip(values, data[spread], strict=True)]
                form = "median ± IQR"
            else:
                q1, q3 = spread
                cells = [format_number(m, d) if _missing(a) else
                         f"{format_number(m, d)} ({format_number(a, d)}–{format_number(b, d)})"
                         for m, a, b in zip(values, data[q1], data[q3], strict=True)]
                form = "median (Q1–Q3)"
            if header is None:
                header = label(column).replace("median", form)
        else:
            cells = [format_number(v, d) for v in values]
        add(header or label(column), cells, numeric or column in spreads, column in spreads)
        if column in paper:
            theirs = paper[column]
            if column in paper_columns:
                theirs_header = labels.get(theirs) or label(theirs)
                if isinstance(digits, Mapping) and theirs in digits:
                    d = digits[theirs]  # the paper's own precision
                theirs = list(data[theirs])
            else:
                theirs_header = f"{header or label(column)}, paper"
                if isinstance(theirs, str) or not isinstance(theirs, Sequence | pd.Series
                                                                | np.ndarray):
                    theirs = [theirs] * len(data)
                theirs = list(theirs)
                if len(theirs) != len(data):
                    raise ValueError(f"show: paper[{column!r}] has {len(theirs)} values for "
                                     f"{len(data)} rows")
            add(theirs_header, [format_number(v, d) for v in theirs], True)

    frame = pd.DataFrame(shown, index=range(len(data)), dtype=object)
    digest = hashlib.sha1((frame.to_csv() + str(caption)).encode("utf-8")).hexdigest()[:10]
    styler = Styler(frame, uuid=f"nacode_{digest}", cell_ids=False)
    styler.format(escape="html")
    styler.hide(axis="index")
    styler.set_table_attributes('class="dataframe nacode-table"')
    styler.set_table_styles(TABLE_STYLES)
    special = {c: ("" if c in numeric_columns else "text-align: left; ")
               + ("white-space: normal;" if c in wrapping else "") for c in shown}
    special = {c: props.strip() for c, props in special.items() if props}
    if special:
        styler.set_table_styles({c: [{"selector": "td", "props": props}]
                                 for c, props in special.items()}, overwrite=False)
    if caption:
        styler.set_caption(caption)
    return styler
