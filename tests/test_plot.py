"""Figures of nacode.plot that must read at page width."""

from __future__ import annotations

import pandas as pd


def test_ranking_figure_reads_at_page_width():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nacode import plot

    methods = ["dTV (1H)", "CS-TV", "DIP-Fusion", "calf CNN", "NLM", "Gaussian", "DIP"]
    gains = pd.DataFrame([{"study": study, "snr": snr, "method": m, "psnr_gain": 1.0 - i}
                          for study in ("calf", "brain", "breast") for snr in (5, 10)
                          for i, m in enumerate(methods)])
    fig = plot.ranking_plot(gains, {s: methods for s in ("calf", "brain", "breast")})
    width = fig.get_size_inches()[0]
    assert width <= 7.5  # shown at page width (~7 in), points are points
    texts = [t for ax in fig.axes for t in (*ax.get_yticklabels(), *ax.get_xticklabels(),
                                           ax.xaxis.label, ax.title) if t.get_text()]
    assert texts and min(t.get_fontsize() for t in texts) * 7.0 / width >= 9.0
    plt.close(fig)


def test_ranking_figure_prints_each_rank_interval_after_its_method():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nacode import plot

    gains = pd.DataFrame([{"study": "calf", "snr": 5, "method": m, "psnr_gain": g}
                          for m, g in (("CS-TV", 2.0), ("NLM", 1.0))])
    fig = plot.ranking_plot(gains, {"calf": ["CS-TV", "NLM"]},
                            intervals={("calf", "CS-TV"): (1.0, 1.5)})
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["1. CS-TV  [rank 1.0–1.5]", "2. NLM"]  # no interval given: name only
    plt.close(fig)
