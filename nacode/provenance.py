"""Provenance shared by every writer: the book runner, the trainers, ``nacode bench`` and
the image writers of :mod:`nacode.io` (version, commit, package versions)."""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

#: Packages whose versions results record.
RECORDED_PACKAGES = (
    "nacode", "numpy", "scipy", "pandas", "torch", "sigpy", "finufft", "nilearn", "nibabel",
    "pydicom", "scikit-image", "pingouin", "matplotlib", "papermill", "jupytext",
    "jupyter-book", "myst-nb", "sphinx",
)
ROOT = Path(__file__).resolve().parents[1]


def git_commit(root: Path = ROOT) -> dict[str, Any]:
    """Return ``{"commit": sha, "dirty": bool}`` of the repository at ``root``.

    Outside a git checkout (a copy sent to a GPU machine) the commit is taken from the
    environment variable ``NACODE_COMMIT`` if set, else ``"unknown"``.
    """
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, check=True).stdout
        return {"commit": sha, "dirty": bool(dirty.strip())}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": os.environ.get("NACODE_COMMIT", "unknown"), "dirty": None}


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`RECORDED_PACKAGES` (``"not installed"`` if absent)."""
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def nacode_version() -> str:
    """The installed nacode's version (``"unknown"`` when it is not installed)."""
    try:
        return metadata.version("nacode")
    except metadata.PackageNotFoundError:
        return "unknown"
