"""Shared fixtures: the repository root and a minimal book project to run the book machinery on."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

FRONT_MATTER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def write_notebook(path: Path, title: str, cells: list[tuple[str, str]]) -> Path:
    """Write a jupytext MyST notebook: ``cells`` are (tags, source) pairs, tags may be ''."""
    parts = [FRONT_MATTER, f"\n# {title}\n"]
    for tags, source in cells:
        header = "```{code-cell} ipython3\n" + (f":tags: [{tags}]\n\n" if tags else "")
        parts.append("\n" + header + textwrap.dedent(source).strip() + "\n```\n")
    path.write_text("".join(parts), encoding="utf-8")
    return path


@pytest.fixture()
def tiny_book(tmp_path: Path) -> Path:
    """A project with one prose page and one notebook ``tiny`` taking a parameter ``scale``."""
    (tmp_path / "book").mkdir()
    (tmp_path / "_config.yml").write_text(
        "title: tiny\nexecute:\n  execute_notebooks: 'off'\nonly_build_toc_files: true\n"
        "exclude_patterns: [_build]\n", encoding="utf-8")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/tiny\n", encoding="utf-8")
    (tmp_path / "data_manifest.yaml").write_text("version: 1\nentries: []\n", encoding="utf-8")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n\nA tiny book.\n", encoding="utf-8")
    write_notebook(tmp_path / "book" / "tiny.md", "Tiny", [
        ("parameters", 'scale = 1\nprofile = "quick"\ndevice = "cpu"'),
        ("", "from nacode import results\nimport pandas as pd\n"
             "table = pd.DataFrame({'x': [scale, 2 * scale]})\n"
             "print('result', results.save_table(table, 'tiny', 'table').name, scale * 21)"),
    ])
    return tmp_path


TINY_PROFILES = {"quick": {"tiny": {"scale": 1}}, "full": {"tiny": {"scale": 100}}}


def sha256(array) -> str:
    """sha256 of an array's bytes (C order): pins a subject's arrays across versions."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def table_hash(subject) -> str:
    """sha256 of a subject's tissue table (label, name and every property, as floats)."""
    rows = [(k, t.name, *map(float, (t.tsc, t.t2_fast, t.t2_slow, t.frac_fast, t.t1,
                                     t.proton))) for k, t in sorted(subject.tissues.items())]
    return hashlib.sha256(repr(rows).encode()).hexdigest()
