"""Atomic writes and the results folder contract."""

from __future__ import annotations

import pandas as pd
import pytest

from nacode import results


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), results.atomic_write(target, "w") as handle:
        handle.write("half-written")
        raise RuntimeError("crash in the middle")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind


def test_atomic_write_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"), results.atomic_write(tmp_path / "x", "a"):
        pass


def test_save_table_round_trip_and_location(tmp_path, monkeypatch):
    monkeypatch.setenv("NACODE_BUILD_DIR", str(tmp_path / "build"))
    table = pd.DataFrame({"tissue": ["GM", "WM"], "volume_ml": [996.0158601857945, 670.3]})
    path = results.save_table(table, "chapter", "volumes")
    assert path == tmp_path / "build" / "results" / "chapter" / "volumes.csv"
    back = pd.read_csv(path)
    assert list(back["tissue"]) == ["GM", "WM"]
    assert back["volume_ml"].tolist() == pytest.approx([996.016, 670.3], rel=1e-6)


def test_save_figure_writes_png(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("NACODE_BUILD_DIR", str(tmp_path))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = results.save_figure(fig, "chapter", "line")
    plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad", ["", "../escape", "a/b", "sp ace"])
def test_results_dir_rejects_bad_chapter_names(tmp_path, monkeypatch, bad):
    monkeypatch.setenv("NACODE_BUILD_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="chapter name"):
        results.results_dir(bad)


def test_project_root_found_from_a_subfolder(tmp_path, monkeypatch):
    monkeypatch.delenv("NACODE_ROOT", raising=False)
    for marker in results.ROOT_MARKERS:
        (tmp_path / marker).write_text("", encoding="utf-8")
    deep = tmp_path / "_build" / "executed"
    deep.mkdir(parents=True)
    assert results.project_root(deep) == tmp_path.resolve()


def test_project_root_missing_names_the_markers(tmp_path, monkeypatch):
    monkeypatch.delenv("NACODE_ROOT", raising=False)
    with pytest.raises(FileNotFoundError, match=r"_toc\.yml"):
        results.project_root(tmp_path)


def test_atomic_write_gives_the_permissions_of_a_plain_open(tmp_path):
    """mkstemp's 0600 used to stay on every file nacode wrote (images, weights, JSON)."""
    import os
    import stat

    from nacode.results import atomic_write

    previous = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.json") as handle:
            handle.write("{}")
        os.umask(0o077)
        with atomic_write(tmp_path / "b.bin", "wb") as handle:
            handle.write(b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600
