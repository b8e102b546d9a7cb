"""The pinned environment: requirements.lock, environment.yml and the README's two commands."""

from __future__ import annotations

import re

import yaml

from conftest import ROOT

REQUIRED = ("torch", "jupyter-book", "jupytext", "papermill", "nbval", "sigpy", "numpy",
            "matplotlib", "seaborn", "pingouin", "nilearn", "nibabel", "pydicom", "h5py",
            "scikit-image", "tqdm", "pyyaml", "safetensors", "sphinxcontrib-bibtex")


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_lock_pins_every_required_package_exactly():
    pins = lock_pins()
    for name in REQUIRED:
        assert name in pins, f"{name} is not pinned in requirements.lock"
    assert pins["torch"] == "2.13.0"
    assert pins["jupyter-book"].startswith("1.")


def test_environment_yml_mirrors_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    pins = lock_pins()
    mirrored = [line for line in pip if "==" in line]
    assert {line.split("==")[0] for line in mirrored} >= set(REQUIRED)
    for line in mirrored:
        name, version = line.split("==")
        assert pins[name.lower()] == version, f"environment.yml {line} != lock {pins[name]}"
    assert "python=3.11" in env["dependencies"]


def test_readme_gives_exactly_two_setup_commands_and_ci_calls_make_test():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\s*(make \w+)\s*$", setup, flags=re.M)
    assert commands == ["make book", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
