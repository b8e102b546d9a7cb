"""`nacode book`: discovery, papermill execution with profiles, failures, staging, HTML build."""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pandas as pd
import pytest

from conftest import ROOT, TINY_PROFILES, write_notebook
from nacode import book


def injected(executed) -> str:
    nb = nbformat.read(executed, as_version=4)
    cells = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    return cells[0].source


def outputs_text(executed) -> str:
    nb = nbformat.read(executed, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))


def test_discover_returns_notebooks_in_toc_order_and_skips_prose(tiny_book):
    found = book.discover(tiny_book)
    assert [nb.name for nb in found] == ["tiny"]
    assert found[0].source == tiny_book / "book" / "tiny.md"


def test_discover_names_a_missing_toc_entry(tiny_book):
    (tiny_book / "book" / "tiny.md").unlink()
    with pytest.raises(book.BookError, match="book/tiny"):
        book.discover(tiny_book)


def test_full_profile_is_injected_and_results_recorded(tiny_book, tmp_path):
    build = tmp_path / "out"
    record = book.run_book(tiny_book, profile="full", build=False, build_dir=build,
                           profiles=TINY_PROFILES, echo=lambda *_: None)
    executed = build / "executed" / "tiny.ipynb"
    assert "scale = 100" in injected(executed) and 'profile = "full"' in injected(executed)
    assert "result table.csv 2100" in outputs_text(executed)
    table = pd.read_csv(build / "results" / "tiny" / "table.csv")
    assert table["x"].tolist() == [100, 200]
    run = json.loads((build / "results" / "run.json").read_text(encoding="utf-8"))
    assert run == json.loads(json.dumps(record, default=str))
    assert run["profile"] == "full" and run["device"] == "cpu"
    assert run["notebooks"]["tiny"]["status"] == "ok"
    assert run["notebooks"]["tiny"]["wall_s"] > 0
    assert run["notebooks"]["tiny"]["parameters"]["scale"] == 100
    assert run["packages"]["numpy"] not in ("", "not installed")
    assert len(run["commit"]) in (40, len("unknown"))
    assert not list((build / "executed").glob(".*running*"))


def test_failing_notebook_names_notebook_cell_and_error(tiny_book, tmp_path):
    write_notebook(tiny_book / "book" / "tiny.md", "Tiny", [
        ("parameters", 'scale = 1\nprofile = "quick"\ndevice = "cpu"'),
        ("", "x = scale + 1"),
        ("", "y = x / 0"),
    ])
    build = tmp_path / "out"
    with pytest.raises(book.BookError) as info:
        book.run_book(tiny_book, build_dir=build, profiles=TINY_PROFILES, echo=lambda *_: None)
    message = str(info.value)
    assert "tiny.md" in message and "ZeroDivisionError" in message
    assert "y = x / 0" in message and "tiny.failed.ipynb" in message
    assert (build / "executed" / "tiny.failed.ipynb").is_file()
    assert not (build / "executed" / "tiny.ipynb").exists()
    run = json.loads((build / "results" / "run.json").read_text(encoding="utf-8"))
    assert run["notebooks"]["tiny"]["status"] == "failed"


def test_only_rejects_unknown_notebooks(tiny_book, tmp_path):
    with pytest.raises(book.BookError, match="no such notebook"):
        book.run_book(tiny_book, only=["nope"], build_dir=tmp_path, profiles=TINY_PROFILES)


def test_html_build_from_executed_copies_and_strict_warnings(tiny_book, tmp_path):
    build = tmp_path / "out"
    record = book.run_book(tiny_book, build_dir=build, strict=True, profiles=TINY_PROFILES,
                           echo=lambda *_: None)
    index = build / "html" / "index.html"
    assert record["html"] == str(index) and index.is_file()
    page = (build / "html" / "book" / "tiny.html").read_text(encoding="utf-8")
    assert "result table.csv 21" in page  # outputs come from the executed copy
    site = build / "site" / "book"
    assert (site / "tiny.ipynb").is_file() and not (site / "tiny.md").exists()
    # a dangling cross-reference is a warning, and --strict turns it into a failure
    (tiny_book / "book" / "intro.md").write_text("# Intro\n\nSee {ref}`nowhere`.\n",
                                                  encoding="utf-8")
    with pytest.raises(book.BookError, match="could not build"):
        book.run_book(tiny_book, build_dir=build, strict=True, profiles=TINY_PROFILES,
                      echo=lambda *_: None)


def test_cli_full_profile_on_cpu_for_one_notebook(tmp_path):
    """`nacode book --profile full --only mni152` runs on CPU; the injection is visible."""
    build = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "nacode", "book", "--profile", "full", "--only", "mni152",
         "--device", "cpu", "--no-build", "--build-dir", str(build)],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    executed = build / "executed" / "mni152.ipynb"
    assert "resolution_mm = 1" in injected(executed)
    assert "profile full: grid (197, 233, 189)" in outputs_text(executed)
    assert (build / "results" / "mni152" / "tissue_volumes.csv").is_file()
    assert "executed in" in result.stderr


def test_launch_buttons_open_the_markdown_sources():
    binder = 'href="https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/book/brain.ipynb"'
    hub = ('href="https://hub/hub/user-redirect/git-pull?repo=x&urlpath=lab/tree/r/book/'
           'calf.ipynb&branch=main"')
    other = 'href="https://github.com/o/r/blob/main/book/x.ipynb"'
    assert book.launch_to_sources(binder).endswith('book/brain.md"')
    assert "book/calf.md&branch=main" in book.launch_to_sources(hub)
    assert book.launch_to_sources(other) == other


def test_a_runs_last_notebook_executes_after_the_others_but_stays_first_in_the_toc(
        tiny_book, tmp_path):
    """The intro reads the other chapters' results: it executes last, is listed first."""
    intro = write_notebook(tiny_book / "book" / "intro.md", "Intro", [
        ("parameters, remove-cell", 'profile = "quick"\ndevice = "cpu"'),
        ("", "from nacode import results\nimport pandas as pd\n"
             "x = pd.read_csv(results.build_dir() / 'results' / 'tiny' / 'table.csv')['x']\n"
             "print('intro read', int(x.sum()))"),
    ])
    intro.write_text(intro.read_text(encoding="utf-8").replace(
        "  name: python3\n---\n", "  name: python3\nnacode:\n  execute: last\n---\n", 1),
        encoding="utf-8")
    profiles = {name: {**table, "intro": {}} for name, table in TINY_PROFILES.items()}
    found = book.discover(tiny_book)
    assert [nb.name for nb in found] == ["intro", "tiny"]
    assert [nb.runs_last for nb in found] == [True, False]
    assert [nb.name for nb in book.execution_order(found)] == ["tiny", "intro"]
    build = tmp_path / "out"
    book.run_book(tiny_book, build=False, build_dir=build, profiles=profiles,
                  echo=lambda *_: None)
    assert "intro read 3" in outputs_text(build / "executed" / "intro.ipynb")
    run = json.loads((build / "results" / "run.json").read_text(encoding="utf-8"))
    assert list(run["notebooks"]) == ["tiny", "intro"]
    # --only tiny re-executes the intro too: what it read has changed
    profiles["quick"]["tiny"] = {"scale": 5}
    record = book.run_book(tiny_book, build=False, build_dir=build, profiles=profiles,
                           only=["tiny"], echo=lambda *_: None)
    assert "intro read 15" in outputs_text(build / "executed" / "intro.ipynb")
    assert record["notebooks"]["intro"]["parameters"] == {"profile": "quick", "device": "cpu"}
    # papermill's injected cell is hidden like the parameters cell it follows
    nb = nbformat.read(build / "executed" / "intro.ipynb", as_version=4)
    injected_cell = next(c for c in nb.cells
                         if "injected-parameters" in c.metadata.get("tags", []))
    assert "remove-cell" in injected_cell.metadata["tags"]
    tiny = nbformat.read(build / "executed" / "tiny.ipynb", as_version=4)
    assert all(c.metadata.get("tags") == ["injected-parameters"] for c in tiny.cells
               if "injected-parameters" in c.metadata.get("tags", []))


def test_leaked_paths_finds_path_reprs_and_the_repository_path_but_not_source_listings(tmp_path):
    from pathlib import Path

    from nacode.book import leaked_paths

    html = tmp_path / "html"
    (html / "book").mkdir(parents=True)
    (html / "_modules").mkdir()
    (html / "book" / "clean.html").write_text("<p>weights/calf_nsa30.safetensors</p>")
    (html / "book" / "repr.html").write_text(f"<dt>f(out={Path('/srv/x')!r})</dt>")
    (html / "book" / "warn.html").write_text(f"<pre>{tmp_path}/.venv/x.py:1: Warning</pre>")
    (html / "_modules" / "code.html").write_text(f"<pre>{tmp_path} {Path('a')!r}</pre>")
    leaks = dict(leaked_paths(html, [tmp_path]))
    assert set(leaks) == {Path("book/repr.html"), Path("book/warn.html")}
    assert leaks[Path("book/warn.html")] == str(tmp_path)
    # no roots (or only "/"): the path repr is still found, the warning's path is not
    assert [page for page, _ in leaked_paths(html, [Path("/")])] == [Path("book/repr.html")]
