"""Profiles: one table sets every notebook's parameters; notebooks' defaults are the quick ones."""

from __future__ import annotations

import ast

import jupytext
import pytest

from conftest import ROOT
from nacode import book, profiles


def notebook_defaults(source) -> dict:
    """Literal assignments of the cell tagged ``parameters`` in a jupytext notebook."""
    nb = jupytext.read(source)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{source} must have exactly one cell tagged parameters"
    values = {}
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign), f"{source}: parameters cell holds only assignments"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


NOTEBOOKS = book.discover(ROOT)


def test_the_book_has_notebooks():
    assert "mni152" in {nb.name for nb in NOTEBOOKS}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.name)
def test_quick_profile_equals_the_notebook_defaults(nb):
    defaults = notebook_defaults(nb.source)
    assert defaults == profiles.parameters(nb.name, "quick", "cpu")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.name)
def test_full_profile_sets_the_same_parameters(nb):
    quick = profiles.parameters(nb.name, "quick", "cpu")
    full = profiles.parameters(nb.name, "full", "cuda")
    assert set(full) == set(quick)
    assert full["profile"] == "full" and full["device"] == "cuda"


def test_profiles_cover_exactly_the_books_notebooks():
    names = {nb.name for nb in NOTEBOOKS}
    for profile in profiles.PROFILE_NAMES:
        assert set(profiles.PROFILES[profile]) == names


def test_parameters_are_copies():
    params = profiles.parameters("mni152")
    params["resolution_mm"] = 99
    assert profiles.parameters("mni152")["resolution_mm"] != 99


@pytest.mark.parametrize(("args", "message"), [
    (("mni152", "slow", "cpu"), "unknown profile"),
    (("mni152", "quick", "tpu"), "unknown device"),
    (("nope", "quick", "cpu"), "add it to nacode/profiles.py"),
])
def test_bad_arguments_say_what_was_expected(args, message):
    with pytest.raises(ValueError, match=message):
        profiles.parameters(*args)
