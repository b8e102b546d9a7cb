"""``data_manifest.yaml``: every dataset and artifact the book uses, and its verification.

Each entry has ``id``, ``kind`` (``bundled`` | ``procedural`` | ``external-optional`` |
``artifact``), ``description``, ``source``, ``citation``, ``licence``, ``location`` and
``chapters``; files also have ``sha256`` and ``size`` (bytes). A location is one of

``package:<distribution>/<path>``
    a file shipped inside an installed Python package (e.g. nilearn's MNI152 templates);
``repo:<path>``
    a file in this repository, relative to the manifest's folder (e.g. trained weights);
``env:<VARIABLE>``
    an external folder the user points to (e.g. ``NACODE_FASTMRI_DIR``);
``generator:<module>:<function>``
    a procedural dataset made from a seed by a nacode function.

:func:`verify` checks every entry; ``nacode data verify`` prints the table and exits non-zero
when a required entry is missing or any checksum differs. A missing optional dataset is
reported, not an error. An entry marked ``status: planned`` names a generator that a later
issue implements; it is reported as planned until the generator exists.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KINDS = ("bundled", "procedural", "external-optional", "artifact")
REQUIRED_FIELDS = (
    "id", "kind", "description", "source", "citation", "licence", "location", "chapters",
)
FILE_FIELDS = ("sha256", "size")
#: Statuses that make ``nacode data verify`` fail.
ERROR_STATUSES = ("missing", "mismatch", "error")


class ManifestError(ValueError):
    """The manifest itself is unreadable or an entry is malformed."""


@dataclass(frozen=True)
class Check:
    """Outcome of verifying one manifest entry."""

    id: str
    kind: str
    status: str  # ok | missing | mismatch | error | absent | planned
    detail: str
    path: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ERROR_STATUSES


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Return the hex SHA-256 digest of a file, read in ``chunk``-byte blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read and validate the manifest; return its entries.

    Raises
    ------
    ManifestError
        If the file is missing, is not YAML, or an entry lacks a field or has a bad kind.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found; run from the repository root "
                            "or pass --manifest PATH") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ManifestError(f"{path}: not valid YAML{where} ({problem}); fix the syntax") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ManifestError(f"{path}: expected a top-level 'entries:' list")
    seen: set[str] = set()
    for number, entry in enumerate(entries, 1):
        name = entry.get("id", f"#{number}") if isinstance(entry, dict) else f"#{number}"
        if not isinstance(entry, dict):
            raise ManifestError(f"{path}: entry {name} is not a mapping")
        missing = [field for field in REQUIRED_FIELDS if field not in entry]
        if entry.get("location", "").split(":", 1)[0] in ("package", "repo"):
            missing += [field for field in FILE_FIELDS if field not in entry]
        if missing:
            raise ManifestError(f"{path}: entry {name} lacks {', '.join(missing)}")
        if entry["kind"] not in KINDS:
            raise ManifestError(f"{path}: entry {name} has kind {entry['kind']!r}; "
                                f"expected one of {', '.join(KINDS)}")
        if name in seen:
            raise ManifestError(f"{path}: entry id {name} appears twice")
        seen.add(name)
    return entries


def resolve_file(location: str, base: Path) -> Path:
    """Return the file a ``package:`` or ``repo:`` location points to (it may not exist)."""
    scheme, _, rest = location.partition(":")
    if scheme == "repo":
        return (base / rest).resolve()
    if scheme == "package":
        package, _, inner = rest.partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"package {package!r} is not installed")
        return Path(next(iter(spec.submodule_search_locations))) / inner
    raise ManifestError(f"location {location!r} is not a file location (package: or repo:)")


def _fix_hint(location: str, path: Path) -> str:
    scheme, _, rest = location.partition(":")
    if scheme == "package":
        package = rest.partition("/")[0]
        return (f"reinstall it: pip install --force-reinstall --no-deps "
                f"-c requirements.lock {package}")
    return f"restore it with `git checkout -- {rest}` or regenerate it"


def _check_file(entry: dict[str, Any], base: Path) -> Check:
    ident, kind, location = entry["id"], entry["kind"], entry["location"]
    try:
        path = resolve_file(location, base)
    except FileNotFoundError as exc:
        return Check(ident, kind, "missing", f"{exc}; install the pinned environment (make book)")
    if not path.is_file():
        return Check(ident, kind, "missing",
                     f"{path} not found; {_fix_hint(location, path)}", str(path))
    size = path.stat().st_size
    if size != int(entry["size"]):
        return Check(ident, kind, "mismatch",
                     f"{path}: size {size} B, manifest says {entry['size']} B; "
                     f"{_fix_hint(location, path)}", str(path))
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        return Check(ident, kind, "mismatch",
                     f"{path}: sha256 {digest[:12]}…, manifest says {entry['sha256'][:12]}…; "
                     f"{_fix_hint(location, path)}", str(path))
    return Check(ident, kind, "ok", f"{size / 1e6:.1f} MB, sha256 matches", str(path))


def is_dicom(path: Path) -> bool:
    """True if ``path`` carries the DICOM preamble magic (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _check_env(entry: dict[str, Any]) -> Check:
    ident, kind = entry["id"], entry["kind"]
    variable = entry["location"].partition(":")[2]
    value = os.environ.get(variable)
    optional = kind == "external-optional"
    if not value:
        status = "absent" if optional else "missing"
        return Check(ident, kind, status,
                     f"${variable} is not set" + (" (optional: chapters use their default data)"
                                                  if optional else f"; set {variable}"))
    folder = Path(value)
    if not folder.is_dir():
        return Check(ident, kind, "error", f"${variable}={value} is not a folder; point it to "
                     "the dataset's folder or unset it", value)
    count = sum(1 for p in folder.rglob("*") if p.is_file() and is_dicom(p))
    if entry.get("format") == "dicom" and count == 0:
        return Check(ident, kind, "error", f"${variable}={value} holds no DICOM files; point it "
                     "to the folder of the DICOM set or unset it", value)
    return Check(ident, kind, "ok", f"${variable}: {count} DICOM files", value)


def _check_generator(entry: dict[str, Any]) -> Check:
    ident, kind = entry["id"], entry["kind"]
    target = entry["location"].partition(":")[2]
    module, _, function = target.partition(":")
    planned = entry.get("status") == "planned"
    try:
        found = callable(getattr(importlib.import_module(module), function))
    except ImportError:
        found = False
    except AttributeError:
        found = False
    if found:
        return Check(ident, kind, "ok", f"generator {target} importable, seed {entry.get('seed')}")
    if planned:
        return Check(ident, kind, "planned", f"generator {target} not implemented yet "
                     f"({entry.get('planned_in', 'a later issue')})")
    return Check(ident, kind, "missing", f"generator {target} cannot be imported; "
                 "reinstall nacode (pip install -e .)")


def check_entry(entry: dict[str, Any], base: Path) -> Check:
    """Verify one manifest entry relative to the manifest folder ``base``."""
    scheme = entry["location"].partition(":")[0]
    if scheme in ("package", "repo"):
        return _check_file(entry, base)
    if scheme == "env":
        return _check_env(entry)
    if scheme == "generator":
        return _check_generator(entry)
    return Check(entry["id"], entry["kind"], "error",
                 f"unknown location scheme in {entry['location']!r}; "
                 "use package:, repo:, env: or generator:")


def verify(path: str | os.PathLike) -> list[Check]:
    """Verify every entry of the manifest at ``path``; see :func:`check_entry`."""
    path = Path(path).resolve()
    return [check_entry(entry, path.parent) for entry in load_manifest(path)]


def format_table(checks: list[Check]) -> str:
    """Render checks as a fixed-width text table (id, kind, status, detail)."""
    rows = [("id", "kind", "status", "detail")]
    rows += [(c.id, c.kind, c.status.upper() if c.failed else c.status, c.detail) for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3] for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)


def update_artifact(path: str | os.PathLike, entry_id: str, file: str | os.PathLike, *,
                    description: str | None = None) -> None:
    """Rewrite one entry's ``sha256`` and ``size`` (and ``description``) for ``file``.

    The rest of the manifest — comments, order, other entries — is kept as written; the new
    text is validated with :func:`load_manifest` before it replaces the file (atomically).

    Raises
    ------
    ManifestError
        If there is no entry ``entry_id`` or it has no ``sha256``/``size`` lines.
    """
    import textwrap

    from nacode.results import atomic_write

    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    try:
        start = lines.index(f"  - id: {entry_id}\n")
    except ValueError:
        raise ManifestError(f"{path}: no entry {entry_id}; add it before promoting") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("  - id:")),
               len(lines))
    block = lines[start:end]
    fields = {"sha256": sha256_file(file), "size": Path(file).stat().st_size}
    for key, value in fields.items():
        where = [i for i, line in enumerate(block) if line.startswith(f"    {key}:")]
        if not where:
            raise ManifestError(f"{path}: entry {entry_id} has no {key} line")
        block[where[0]] = f"    {key}: {value}\n"
    if description is not None:
        first = next(i for i, line in enumerate(block) if line.startswith("    description:"))
        last = first + 1
        while last < len(block) and block[last].startswith("      "):
            last += 1
        wrapped = textwrap.wrap(description, width=88)
        block[first:last] = ["    description: >-\n", *(f"      {w}\n" for w in wrapped)]
    text = "".join(lines[:start] + block + lines[end:])
    with atomic_write(path.with_name(f".{path.name}.check"), "w", encoding="utf-8") as handle:
        handle.write(text)
    try:
        load_manifest(path.with_name(f".{path.name}.check"))
    finally:
        path.with_name(f".{path.name}.check").unlink(missing_ok=True)
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)
