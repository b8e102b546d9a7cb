"""The command line: entry points, help and one-line errors."""

from __future__ import annotations

import subprocess
import sys

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
