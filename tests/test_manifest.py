"""data_manifest.yaml and `nacode data verify`."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from nacode import manifest

MANIFEST = ROOT / "data_manifest.yaml"


def run_verify(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nacode", "data", "verify", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def file_entry(path, ident="weights", **extra):
    data = path.read_bytes()
    entry = {"id": ident, "kind": "artifact", "description": "d", "source": "s",
             "citation": [], "licence": "l", "location": f"repo:{path.name}",
             "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "chapters": []}
    entry.update(extra)
    return entry


def write_manifest(folder, entries):
    path = folder / "data_manifest.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "entries": entries}), encoding="utf-8")
    return path


def test_project_manifest_is_complete_and_verifies():
    entries = manifest.load_manifest(MANIFEST)
    ids = {entry["id"] for entry in entries}
    assert {"mni152_t1", "mni152_gm", "mni152_wm", "fastmri_knee_dicom",
            "calf_anatomy", "breast_anatomy"} <= ids
    kinds = {entry["id"]: entry["kind"] for entry in entries}
    assert kinds["fastmri_knee_dicom"] == "external-optional"
    assert kinds["mni152_t1"] == "bundled"
    checks = {check.id: check for check in manifest.verify(MANIFEST)}
    assert all(not check.failed for check in checks.values()), checks
    assert checks["mni152_t1"].status == "ok"


def test_every_citation_key_is_in_the_bibliography():
    bib = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    for entry in manifest.load_manifest(MANIFEST):
        for key in entry["citation"]:
            assert "{" + key + "," in bib, f"{entry['id']} cites {key}, absent from references.bib"


def test_one_changed_byte_fails_and_names_the_file(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(bytes(range(256)) * 64)
    path = write_manifest(tmp_path, [file_entry(weights)])
    assert run_verify("--manifest", str(path)).returncode == 0
    data = bytearray(weights.read_bytes())
    data[1000] ^= 0x01
    weights.write_bytes(bytes(data))
    result = run_verify("--manifest", str(path))
    assert result.returncode == 1
    assert "model.safetensors" in result.stderr and "sha256" in result.stderr
    assert "git checkout" in result.stderr  # the fix


def test_tampered_copy_of_a_bundled_template_is_caught(tmp_path):
    entry = next(e for e in manifest.load_manifest(MANIFEST) if e["id"] == "mni152_gm")
    source = manifest.resolve_file(entry["location"], ROOT)
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    good = dict(entry, location=f"repo:{copy.name}")
    assert manifest.check_entry(good, tmp_path).status == "ok"
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    check = manifest.check_entry(good, tmp_path)
    assert check.status == "mismatch" and copy.name in check.detail


def test_truncated_file_is_a_size_mismatch(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"x" * 100)
    entry = file_entry(weights)
    weights.write_bytes(b"x" * 50)
    check = manifest.check_entry(entry, tmp_path)
    assert check.status == "mismatch" and "size 50 B" in check.detail


def test_missing_required_file_fails(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"abc")
    path = write_manifest(tmp_path, [file_entry(weights)])
    weights.unlink()
    result = run_verify("--manifest", str(path))
    assert result.returncode == 1 and "w.bin not found" in result.stderr


def test_optional_dataset_absent_is_reported_not_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NACODE_FASTMRI_DIR", raising=False)
    entry = next(e for e in manifest.load_manifest(MANIFEST) if e["id"] == "fastmri_knee_dicom")
    check = manifest.check_entry(entry, ROOT)
    assert check.status == "absent" and not check.failed


def test_optional_dataset_pointing_nowhere_is_an_error(tmp_path, monkeypatch):
    entry = next(e for e in manifest.load_manifest(MANIFEST) if e["id"] == "fastmri_knee_dicom")
    monkeypatch.setenv("NACODE_FASTMRI_DIR", str(tmp_path / "nowhere"))
    check = manifest.check_entry(entry, ROOT)
    assert check.failed and "NACODE_FASTMRI_DIR" in check.detail
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("NACODE_FASTMRI_DIR", str(empty))
    assert "no DICOM files" in manifest.check_entry(entry, ROOT).detail


def test_optional_dicom_folder_is_counted(tmp_path, monkeypatch):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for i in range(3):
        ds = FileDataset(str(tmp_path / f"im{i}"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SeriesDescription = "AX PD FS"
        ds.save_as(tmp_path / f"im{i}", enforce_file_format=True)
    (tmp_path / "notes.txt").write_text("not dicom", encoding="utf-8")
    assert pydicom.dcmread(tmp_path / "im0").SeriesDescription == "AX PD FS"
    entry = next(e for e in manifest.load_manifest(MANIFEST) if e["id"] == "fastmri_knee_dicom")
    monkeypatch.setenv("NACODE_FASTMRI_DIR", str(tmp_path))
    check = manifest.check_entry(entry, ROOT)
    assert check.status == "ok" and "3 DICOM files" in check.detail


def test_generator_entries(tmp_path):
    base = {"id": "g", "kind": "procedural", "description": "d", "source": "s", "citation": [],
            "licence": "l", "chapters": []}
    real = dict(base, location="generator:nacode.anatomy.mni152:load_mni152")
    assert manifest.check_entry(real, tmp_path).status == "ok"
    gone = dict(base, location="generator:nacode.anatomy.nothing:make")
    assert manifest.check_entry(gone, tmp_path).status == "missing"
    planned = dict(gone, status="planned")
    assert manifest.check_entry(planned, tmp_path).status == "planned"


@pytest.mark.parametrize(("text", "message"), [
    ("entries: [", "not valid YAML"),
    ("version: 1\n", "entries"),
    ("entries:\n  - id: a\n    kind: bundled\n", "lacks"),
    ("entries:\n  - {id: a, kind: weird, description: d, source: s, citation: [], licence: l,"
     " location: 'env:X', chapters: []}\n", "kind 'weird'"),
])
def test_malformed_manifest_is_one_line_exit_2(tmp_path, text, message):
    path = tmp_path / "data_manifest.yaml"
    path.write_text(text, encoding="utf-8")
    result = run_verify("--manifest", str(path))
    assert result.returncode == 2
    assert message in result.stderr and str(path) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_manifest_names_the_path(tmp_path):
    result = run_verify("--manifest", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "nope.yaml" in result.stderr
