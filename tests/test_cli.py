"""The command line: entry points, help and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT


def nacode(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "nacode", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_version_and_help():
    assert nacode("--version").stdout.startswith("nacode ")
    help_text = nacode("book", "--help").stdout
    for option in ("--profile", "--device", "--only", "--strict"):
        assert option in help_text


def test_project_manifest_verifies_from_the_cli():
    result = nacode("data", "verify")
    assert result.returncode == 0, result.stderr
    assert "mni152_t1" in result.stdout and "0 failed" in result.stdout


def test_outside_a_project_the_error_is_one_line(tmp_path):
    result = nacode("data", "verify", cwd=tmp_path)
    assert result.returncode == 1
    assert "_toc.yml" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unknown_notebook_is_one_line(tmp_path):
    result = nacode("book", "--only", "nope", "--no-build", "--build-dir", str(tmp_path))
    assert result.returncode == 1
    assert "no such notebook" in result.stderr and "Traceback" not in result.stderr


def test_bad_profile_is_rejected_by_argparse():
    result = nacode("book", "--profile", "slow")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_train_refuses_bad_epochs_and_nsa_before_any_work(tmp_path):
    """--epochs 0 used to train 100 epochs, -1 to 'succeed'; --nsa 7 was a KeyError traceback
    after the data were built. Each is now one line and nothing is written."""
    for args, message in ((("--epochs", "0"), "--epochs must be at least 1, got 0"),
                          (("--epochs", "-1"), "--epochs must be at least 1, got -1"),
                          (("--nsa", "7", "--nsa", "30"), "--nsa 7: the calf study trains")):
        result = nacode("train", "calf", *args, "--out", str(tmp_path / "w"), "--device", "cpu")
        assert result.returncode == 1, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()


def test_a_trial_records_the_quick_profile_and_a_paper_run_the_full_one():
    from nacode.cli import train_profile

    assert train_profile("calf", None, None) == "full"
    assert train_profile("calf", 100, None) == "full"
    assert train_profile("calf", 4, None) == "quick"
    assert train_profile("calf", None, 6) == "quick"
    assert train_profile("brain", 100, None) == "quick" and train_profile("brain", 200, None) \
        == "full"


def test_promotion_copies_weights_and_updates_the_manifest(tmp_path):
    """Retrained weights used to overwrite weights/ by default and then fail their checksum."""
    import shutil

    import yaml

    from nacode import manifest
    from nacode.cli import calf_description, promote

    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(ROOT / "data_manifest.yaml", tmp_path / "data_manifest.yaml")
    for name in (f"calf_nsa{n}" for n in (10, 20, 30, 40, 50)):  # the others, unchanged
        for suffix in (".safetensors", ".json"):
            shutil.copy(ROOT / "weights" / f"{name}{suffix}", weights)
    trained = tmp_path / "cache"
    trained.mkdir()
    raw = bytearray((ROOT / "weights" / "calf_nsa30.safetensors").read_bytes())
    raw[-1] ^= 0x01  # "new" weights: a different file
    (trained / "calf_nsa30.safetensors").write_bytes(bytes(raw))
    record = {"nsa": 30, "device": "cuda", "epochs_trained": 100, "wall_s": 61.0,
              "best_val_loss": 0.1, "best_epoch": 97}
    (trained / "calf_nsa30.json").write_text("{}", encoding="utf-8")
    before = (tmp_path / "data_manifest.yaml").read_text(encoding="utf-8")
    promote(["calf_nsa30"], trained, {"calf_nsa30": calf_description(record)},
            weights_dir=weights)
    entries = {e["id"]: e for e in manifest.load_manifest(tmp_path / "data_manifest.yaml")}
    new_digest = manifest.sha256_file(trained / "calf_nsa30.safetensors")
    assert entries["calf_nsa30"]["sha256"] == new_digest
    assert "for 100 epochs (61 s" in entries["calf_nsa30"]["description"]
    old = {e["id"]: e for e in yaml.safe_load(before)["entries"]}
    assert all(entries[k] == old[k] for k in old if k != "calf_nsa30")  # the rest untouched
    assert (weights / "calf_nsa30.safetensors").read_bytes() == bytes(raw)
    with pytest.raises(FileNotFoundError, match="train calf_nsa20 first"):
        promote(["calf_nsa20"], trained, weights_dir=weights)
    with pytest.raises(manifest.ManifestError, match="no entry calf_nsa7"):
        manifest.update_artifact(tmp_path / "data_manifest.yaml", "calf_nsa7",
                                 trained / "calf_nsa30.safetensors")
