"""The "Your own data" chapter's helpers: scoring aTSC maps and running nacode commands."""

from __future__ import annotations

import numpy as np
import pytest

from nacode.studies import own_data


def _write(folder, name, volume):
    own_data._nifti(folder / f"{name}.nii.gz", np.asarray(volume), 4.0)
    return folder / f"{name}.nii.gz"


def test_score_known_errors(tmp_path):
    shape = (12, 12, 12)
    truth = np.full(shape, 40.0, np.float32)
    brain = np.zeros(shape, np.uint8)
    brain[3:9, 3:9, 3:9] = 1
    labels = np.zeros(shape, np.int16)
    for k in range(1, 5):
        labels[0, k * 2, :2] = k
    truth[labels > 0] = np.array(own_data.TUBES_MM)[labels[labels > 0] - 1]
    reference = truth + 1.0
    for name, volume in (("truth_mm", truth), ("reference_mm", reference), ("brain", brain),
                         ("tubes", labels)):
        _write(tmp_path, name, volume)
    shifted = truth.copy()
    shifted[brain > 0] += 3.0  # +3 mM in the brain: RMSE 3, bias +3, 2 from the reference
    shifted[labels == 4] -= 5.0  # the 100 mM tube 5 mM low
    table = own_data.score({"exact": _write(tmp_path, "exact", truth),
                            "shifted": _write(tmp_path, "shifted", shifted)}, tmp_path)
    exact, moved = table.iloc[0], table.iloc[1]
    assert exact.rmse_truth_mM == pytest.approx(0, abs=1e-6)
    assert exact.rmse_reference_mM == pytest.approx(1.0, rel=1e-6)
    assert moved.rmse_truth_mM == pytest.approx(3.0, rel=1e-6)
    assert moved.bias_truth_mM == pytest.approx(3.0, rel=1e-6)
    assert moved.rmse_reference_mM == pytest.approx(2.0, rel=1e-6)
    assert moved.tube_max_error_mM == pytest.approx(5.0, rel=1e-6)


def test_run_prints_and_raises(capsys):
    own_data.run("nacode --version")
    assert capsys.readouterr().out.startswith("$ nacode --version\nnacode ")
    with pytest.raises(RuntimeError, match="not found"):
        own_data.run("nacode recon /nonexistent/raw.h5 /tmp/never.nii")
    with pytest.raises(ValueError, match="not a nacode command"):
        own_data.run("rm -rf /")
