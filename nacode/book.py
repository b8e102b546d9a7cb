"""Execute the book's notebooks with a profile and build the HTML with Jupyter Book v1.

The flow of ``nacode book``:

1. find the notebooks: the ``_toc.yml`` entries whose ``book/<name>.md`` source is a jupytext
   MyST notebook (front matter with ``jupytext`` and ``kernelspec``);
2. pair each source to ``<build>/paired/<name>.ipynb`` (jupytext);
3. execute it with papermill into ``<build>/executed/<name>.ipynb``, injecting the profile's
   parameters (:mod:`nacode.profiles`); results go to ``<build>/results/<name>/``. Notebooks
   run in table-of-contents order, except those whose front matter says
   ``nacode: {execute: last}`` (the intro, which reads the other chapters' results): they run
   after all others (:func:`execution_order`);
4. stage a site in ``<build>/site/`` — the config, the prose and the *executed* notebooks, so
   sources and executed copies never share a folder — and build it with Jupyter Book's Sphinx
   (``execute_notebooks: off``) into ``<build>/html``;
5. record ``<build>/results/run.json``: profile, device, commit, versions, wall times.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from nacode import profiles as _profiles
from nacode.provenance import git_commit, package_versions
from nacode.results import write_json

#: Packages whose versions ``run.json`` records.
KERNEL = "python3"


class BookError(RuntimeError):
    """A notebook failed or the book could not be built; the message says where and why."""


@dataclass(frozen=True)
class Notebook:
    """A notebook source of the book: ``book/<name>.md`` in jupytext MyST format."""

    name: str
    source: Path
    runs_last: bool = False


def _toc_files(toc: dict[str, Any]) -> list[str]:
    """All ``file`` entries of a Jupyter Book v1 ``_toc.yml``, root first, in order."""
    files = [toc["root"]] if "root" in toc else []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key, []))

    walk(toc)
    return files


def front_matter(path: Path) -> dict[str, Any]:
    """The YAML front matter of a markdown file (empty if it has none)."""
    if path.suffix != ".md" or not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    return yaml.safe_load(text.split("---", 2)[1]) or {}


def is_notebook_source(path: Path) -> bool:
    """True if ``path`` is a MyST markdown file with jupytext and kernelspec front matter."""
    front = front_matter(path)
    return "jupytext" in front and "kernelspec" in front


def execution_order(notebooks: list[Notebook]) -> list[Notebook]:
    """The notebooks in the order ``nacode book`` executes them: table-of-contents order,
    with the notebooks marked ``runs_last`` moved to the end (in their own order)."""
    return ([nb for nb in notebooks if not nb.runs_last]
            + [nb for nb in notebooks if nb.runs_last])


def discover(root: Path) -> list[Notebook]:
    """Return the book's notebooks in table-of-contents order.

    Raises
    ------
    BookError
        If ``_toc.yml`` is missing or names a file that does not exist.
    """
    toc_path = root / "_toc.yml"
    if not toc_path.is_file():
        raise BookError(f"{toc_path} not found: run from the repository root or pass --root")
    notebooks = []
    for entry in _toc_files(yaml.safe_load(toc_path.read_text(encoding="utf-8"))):
        candidates = [root / f"{entry}{ext}" for ext in (".md", ".ipynb", "")]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise BookError(f"{toc_path}: entry {entry!r} has no file {entry}.md; "
                            "create it or remove the entry")
        if is_notebook_source(found):
            runs_last = (front_matter(found).get("nacode") or {}).get("execute") == "last"
            notebooks.append(Notebook(name=found.stem, source=found, runs_last=runs_last))
    return notebooks


def pair(notebook: Notebook, folder: Path) -> Path:
    """Convert a jupytext source to ``folder/<name>.ipynb`` (no outputs) and return its path."""
    import jupytext

    folder.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(notebook.source)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    target = folder / f"{notebook.name}.ipynb"
    jupytext.write(nb, target, fmt="ipynb")
    return target


def execute(notebook: Notebook, paired: Path, executed_dir: Path,
            parameters: dict[str, Any]) -> Path:
    """Execute a paired notebook with papermill, injecting ``parameters``.

    The output is written to a temporary name and renamed to ``<name>.ipynb`` on success; on
    failure it is kept as ``<name>.failed.ipynb`` (with the traceback) and :class:`BookError`
    names the notebook, the failing cell and the error.
    """
    import papermill

    executed_dir.mkdir(parents=True, exist_ok=True)
    final = executed_dir / f"{notebook.name}.ipynb"
    failed = executed_dir / f"{notebook.name}.failed.ipynb"
    partial = executed_dir / f".{notebook.name}.running.ipynb"
    try:
        papermill.execute_notebook(
            str(paired), str(partial), parameters=parameters, kernel_name=KERNEL,
            progress_bar=False, log_output=False, cwd=str(notebook.source.parent),
            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no kernel chatter on stderr
        )
    except papermill.PapermillExecutionError as exc:
        os.replace(partial, failed)
        final.unlink(missing_ok=True)
        first_line = next((ln for ln in exc.source.splitlines() if ln.strip()), "")
        raise BookError(
            f"notebook {notebook.source} failed in cell {exc.cell_index} "
            f"(execution count {exc.exec_count}): {exc.ename}: {exc.evalue}\n"
            f"    cell starts: {first_line}\n"
            f"    executed copy with the full traceback: {failed}"
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    hide_like_parameters(partial)
    os.replace(partial, final)
    failed.unlink(missing_ok=True)
    return final


def hide_like_parameters(path: Path) -> None:
    """Give papermill's ``injected-parameters`` cell the ``remove-*``/``hide-*`` tags of the
    notebook's ``parameters`` cell, so a page that hides its parameters (the intro) hides
    what papermill injected as well."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    tags = next((c.metadata.get("tags", []) for c in nb.cells
                 if "parameters" in c.metadata.get("tags", [])), [])
    extra = [t for t in tags if t.startswith(("remove-", "hide-"))]
    if not extra:
        return
    for cell in nb.cells:
        own = cell.metadata.get("tags", [])
        if "injected-parameters" in own:
            cell.metadata["tags"] = [*own, *(t for t in extra if t not in own)]
    nbformat.write(nb, path)


def stage_site(root: Path, notebooks: list[Notebook], executed_dir: Path, site: Path) -> Path:
    """Lay out the Jupyter Book source folder: config, prose and executed notebooks."""
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, site / name)
    sources = {nb.source.resolve() for nb in notebooks}
    book = root / "book"
    for path in sorted(book.rglob("*")):
        if path.is_file() and path.resolve() not in sources and path.suffix != ".ipynb":
            target = site / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    for nb in notebooks:
        executed = executed_dir / f"{nb.name}.ipynb"
        if not executed.is_file():
            raise BookError(f"{executed} missing: execute it first (nacode book --only {nb.name})")
        target = site / nb.source.relative_to(root).with_suffix(".ipynb")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(executed, target)
    return site


def _sphinx(site: str, html: str, strict: bool) -> int:
    """Jupyter Book v1's Sphinx build of ``site`` into ``html``; 0 on success."""
    from jupyter_book.sphinx import build_sphinx

    result = build_sphinx(
        site, html, noconfig=True, path_config=str(Path(site) / "_config.yml"),
        confoverrides={"latex_individualpages": False},
        warningiserror=strict, keep_going=strict, quiet=True, freshenv=True,
    )
    return 1 if isinstance(result, Exception) or result else 0


def launch_to_sources(page: str) -> str:
    """Point a page's Binder and JupyterHub launch buttons at the chapter's MyST source.

    The book is built from executed ``.ipynb`` copies that live only in ``_build``, so Jupyter
    Book's buttons would open ``book/<chapter>.ipynb``, which the repository does not hold;
    the ``.md`` source is there and jupytext (in the environment) opens it as a notebook.
    Colab opens ``.ipynb`` files only, so the book does not offer it.
    """
    import re

    return re.sub(r"(urlpath=(?:lab/tree|tree)/[^\"&]*?)\.ipynb", r"\1.md", page)


def leaked_paths(html: Path, roots: list[Path]) -> list[tuple[Path, str]]:
    """Pages of ``html`` that show a pathlib path's repr or one of the absolute paths ``roots``.

    Source listings (``_modules/``, ``_sources/``) are code, not output, and are not read.

    Returns
    -------
    list of (Path, str)
        Each offending page (relative to ``html``) with the first string found on it; empty
        when no page shows the build machine's paths.
    """
    needles = [type(Path()).__name__ + "(",  # what printing a Path object shows
               *{str(root) for root in roots if str(root) not in ("", "/")}]
    leaks = []
    for page in sorted(html.rglob("*.html")):
        if page.relative_to(html).parts[0] in ("_modules", "_sources"):
            continue
        text = page.read_text(encoding="utf-8")
        found = next((needle for needle in needles if needle in text), None)
        if found is not None:
            leaks.append((page.relative_to(html), found))
    return leaks


def build_html(site: Path, html: Path, *, strict: bool, root: Path | None = None) -> Path:
    """Build the staged site with Jupyter Book v1's Sphinx; return ``html/index.html``.

    With ``strict`` every Sphinx warning is an error (all are reported, then the build fails).
    Always an error: a page that shows a pathlib path's repr or the repository's absolute
    path ``root`` (:func:`leaked_paths`) — the build machine's paths are no reader's business.
    Sphinx runs in a fresh Python process: an extension of Jupyter Book scans every live
    object of its process (``gc.get_objects``) and fails on a dead weak proxy that numba,
    used by sigpy, leaves behind — and a fresh process keeps one build's state from the next.
    """
    import sys

    code = ("import sys; from nacode.book import _sphinx; "
            "sys.exit(_sphinx(sys.argv[1], sys.argv[2], sys.argv[3] == '1'))")
    done = subprocess.run([sys.executable, "-c", code, str(site), str(html),
                           "1" if strict else "0"], check=False)
    if done.returncode:
        raise BookError(f"Jupyter Book could not build {site} (exit {done.returncode}); the "
                        "Sphinx messages above say which page and line")
    for page in html.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        launched = launch_to_sources(text)
        if launched != text:
            page.write_text(launched, encoding="utf-8")
    leaks = leaked_paths(html, [] if root is None else [Path(root).resolve()])
    if leaks:
        page, found = leaks[0]
        raise BookError(f"{page} shows {found!r}, a path of the build machine "
                        f"({len(leaks)} page(s) in all): print a name relative to the "
                        "repository, or silence the warning that printed it")
    index = html / "index.html"
    if not index.exists():
        toc = yaml.safe_load((site / "_toc.yml").read_text(encoding="utf-8"))
        index.write_text(f'<meta http-equiv="Refresh" content="0; url={toc["root"]}.html" />\n',
                         encoding="utf-8")
    return index


def resolve_device(device: str) -> str:
    """Map ``"auto"`` to ``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_book(root: Path, *, profile: str = "quick", device: str = "cpu",
             only: list[str] | None = None, build: bool = True, strict: bool = False,
             build_dir: Path | None = None, profiles: dict | None = None,
             echo=print) -> dict[str, Any]:
    """Execute the notebooks with a profile, then build the HTML book.

    Parameters
    ----------
    root : Path
        Repository root (holds ``_toc.yml``, ``_config.yml`` and ``book/``).
    profile : {"quick", "full"}
        Parameters injected into every notebook (:func:`nacode.profiles.parameters`).
    device : {"cpu", "cuda", "auto"}
        Torch device passed to the notebooks.
    only : list of str, optional
        Execute only these notebooks (stems), and after them every notebook that runs last
        (the intro's claims table reads the other chapters' results, so it is re-executed
        whenever one of them is). The book is then built only if every other notebook
        already has an executed copy.
    build : bool
        Build the HTML after executing.
    strict : bool
        Sphinx warnings are errors.
    build_dir : Path, optional
        Output folder (default ``root/_build``).
    profiles : dict, optional
        Profile table instead of :data:`nacode.profiles.PROFILES` (tests).
    echo : callable
        Where progress lines go.

    Returns
    -------
    dict
        The run record also written to ``<build>/results/run.json``.
    """
    from tqdm.auto import tqdm

    root = Path(root).resolve()
    build_dir = Path(build_dir).resolve() if build_dir else root / "_build"
    device = resolve_device(device)
    notebooks = discover(root)
    known = {nb.name for nb in notebooks}
    unknown = sorted(set(only or []) - known)
    if unknown:
        raise BookError(f"--only {', '.join(unknown)}: no such notebook in _toc.yml "
                        f"(notebooks: {', '.join(sorted(known)) or 'none'})")
    selected = execution_order([nb for nb in notebooks
                                if not only or nb.name in only or nb.runs_last])
    # Check every notebook's parameters before spending time on any execution.
    params = {nb.name: _profiles.parameters(nb.name, profile, device, profiles)
              for nb in selected}

    run_json = build_dir / "results" / "run.json"
    record = _load_record(run_json)
    record.update(profile=profile, device=device, **git_commit(root),
                  python=sys.version.split()[0], platform=platform.platform(),
                  cpu_count=os.cpu_count(), packages=package_versions(),
                  started=datetime.now(UTC).isoformat(timespec="seconds"))
    environment = {"NACODE_ROOT": str(root), "NACODE_BUILD_DIR": str(build_dir)}
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        bar = tqdm(selected, desc="notebooks", unit="nb", file=sys.stderr)
        for nb in bar:
            bar.set_postfix_str(nb.name)
            start = time.perf_counter()
            entry = {"profile": profile, "device": device, "parameters": params[nb.name]}
            try:
                paired = pair(nb, build_dir / "paired")
                execute(nb, paired, build_dir / "executed", params[nb.name])
            except BookError:
                entry.update(status="failed", wall_s=round(time.perf_counter() - start, 2))
                record.setdefault("notebooks", {})[nb.name] = entry
                write_json(run_json, record)
                raise
            entry.update(status="ok", wall_s=round(time.perf_counter() - start, 2))
            record.setdefault("notebooks", {})[nb.name] = entry
            tqdm.write(f"  {nb.name:<24} executed in {entry['wall_s']:7.1f} s "
                       f"({profile}, {device})", file=sys.stderr)
        bar.close()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    write_json(run_json, record)

    missing = [nb.name for nb in notebooks
               if not (build_dir / "executed" / f"{nb.name}.ipynb").is_file()]
    if build and missing:
        echo(f"book build skipped: {', '.join(missing)} not executed yet (run `nacode book`)")
    elif build:
        start = time.perf_counter()
        site = stage_site(root, notebooks, build_dir / "executed", build_dir / "site")
        index = build_html(site, build_dir / "html", strict=strict, root=root)
        record["book_build_s"] = round(time.perf_counter() - start, 2)
        record["html"] = str(index)
        echo(f"book built in {record['book_build_s']:.1f} s: open {index}")
    record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(run_json, record)
    return record


def _load_record(path: Path) -> dict[str, Any]:
    import json

    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {"notebooks": previous.get("notebooks", {})} if isinstance(previous, dict) else {}
