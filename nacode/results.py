"""Where the book's results go, and atomic writes of tables and figures.

Every chapter writes its tables (CSV) and figures (PNG) under
``<build dir>/results/<chapter>/``. The build directory is ``$NACODE_BUILD_DIR`` when set
(``nacode book --build-dir`` sets it for the notebooks it executes), else ``_build`` in the
project root, found by walking up from the working directory to the folder holding both
``_toc.yml`` and ``data_manifest.yaml``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

ROOT_MARKERS = ("_toc.yml", "data_manifest.yaml")


def project_root(start: str | os.PathLike | None = None) -> Path:
    """Return the project root: ``$NACODE_ROOT`` or the nearest folder with the root markers.

    Parameters
    ----------
    start : path-like, optional
        Folder to start the upward search from (default: the working directory).

    Raises
    ------
    FileNotFoundError
        If no folder above ``start`` holds ``_toc.yml`` and ``data_manifest.yaml``.
    """
    env = os.environ.get("NACODE_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if all((folder / marker).is_file() for marker in ROOT_MARKERS):
            return folder
    raise FileNotFoundError(
        f"no nacode project root above {here}: expected a folder holding "
        f"{' and '.join(ROOT_MARKERS)}; run from inside the repository or set NACODE_ROOT"
    )


def build_dir() -> Path:
    """Return the build directory: ``$NACODE_BUILD_DIR`` or ``<project root>/_build``."""
    env = os.environ.get("NACODE_BUILD_DIR")
    return Path(env).resolve() if env else project_root() / "_build"


def results_dir(chapter: str) -> Path:
    """Return (and create) ``<build dir>/results/<chapter>``."""
    if not chapter or not chapter.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"chapter name {chapter!r} must be letters, digits, '_' or '-'")
    path = build_dir() / "results" / chapter
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` and move it into place only on success.

    A crash or exception inside the ``with`` block leaves ``path`` untouched (no partial file).
    The file gets the permissions a plain :func:`open` would give it (``0666`` less the
    umask), not the temporary file's ``0600``.

    Parameters
    ----------
    path : path-like
        Final destination.
    mode : {"w", "wb"}
        Text or binary mode.
    **kwargs
        Passed to :func:`open` (e.g. ``encoding``, ``newline``).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask (read by setting it and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically; return the path."""
    with atomic_write(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False, default=str)
        handle.write("\n")
    return Path(path)


def save_table(table, chapter: str, name: str, *, index: bool = False) -> Path:
    """Write a :class:`pandas.DataFrame` to ``results/<chapter>/<name>.csv`` atomically.

    Parameters
    ----------
    table : pandas.DataFrame
        The table to save.
    chapter, name : str
        Chapter folder and file stem.
    index : bool
        Whether to write the index column.

    Returns
    -------
    pathlib.Path
        The CSV written.
    """
    path = results_dir(chapter) / f"{name}.csv"
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        table.to_csv(handle, index=index, float_format="%.6g")
    return path


def save_figure(fig, chapter: str, name: str, *, dpi: int = 150) -> Path:
    """Write a matplotlib figure to ``results/<chapter>/<name>.png`` atomically."""
    path = results_dir(chapter) / f"{name}.png"
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=dpi, bbox_inches="tight")
    return path


def check_output(input_path: str | os.PathLike, output_path: str | os.PathLike, *,
                 force: bool = False, offer_force: bool = True) -> None:
    """Refuse, before any work, an output that is the input (unless ``force``; the message
    offers ``--force`` when ``offer_force``), a folder, or in a folder that cannot be written.

    An input folder (a DICOM series) is written as a new folder, so its output must not exist.
    """
    src, dst = Path(input_path), Path(output_path)
    if src.is_dir():  # a DICOM series: written as a new folder
        if dst.exists():
            raise ValueError(f"{dst}: exists; a series is written into a new folder")
    elif dst.is_dir():
        raise ValueError(f"{dst}: is a folder; give an output file name")
    same = dst.exists() and src.exists() and os.path.samefile(src, dst)
    if same and not force:
        hint = " (or --force to overwrite the input)" if offer_force else ""
        raise ValueError(f"{dst}: is the input; give another output file{hint}")
    folder = dst.parent if str(dst.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"{dst}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{dst}: folder {folder} is not writable; choose another output")
