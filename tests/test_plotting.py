"""ufm.plotting: figures per profile, curves with a 95% band over seeds, phase diagrams of a study table."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from ufm.plotting import epoch_band, figures_dir, phase_diagram, plot_curves, savefig  # noqa: E402


def _table() -> pd.DataFrame:
    """A study table: keys a in {1, 2} x b in {0.1, 0.5}, 3 seeds, 4 epochs; acc = a + b + seed/10 + epoch/100."""
    rows = []
    for a in (1, 2):
        for b in (0.1, 0.5):
            for seed in range(3):
                for epoch in range(1, 5):
                    rows.append({"run_id": f"a{a}_b{b}_s{seed}", "a": a, "b": b, "seed": seed, "status": "complete",
                                 "epoch": epoch, "acc": a + b + seed / 10 + epoch / 100,
                                 "sparse": 1.0 if epoch % 2 == 0 else None})
    df = pd.DataFrame(rows)
    df.attrs["keys"] = ["a", "b"]
    return df


def test_figures_go_where_their_profile_says(tmp_path, monkeypatch):
    monkeypatch.setenv("UFM_FIGURES", str(tmp_path / "figs"))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    assert savefig(fig, "x", "ci") == tmp_path / "figs" / "x.png"
    paper = savefig(fig, "x", "paper")
    assert paper.parent.parts[-3:] == ("runs", "figures", "paper") and paper.exists()
    assert paper.read_bytes() == (tmp_path / "figs" / "x.png").read_bytes()  # no timestamp in the file
    plt.close(fig)
    with pytest.raises(ValueError, match="profile must be a profile name"):
        figures_dir("")


def test_epoch_band_is_the_t_interval_over_seeds():
    df = _table()
    part = df[(df["a"] == 1) & (df["b"] == 0.1)]
    band = epoch_band(part, "acc")
    x = np.array([1.1 + s / 10 + 0.03 for s in range(3)])  # epoch 3
    lo, hi = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
    row = band[band["epoch"] == 3].iloc[0]
    assert row["mean"] == pytest.approx(x.mean()) and row["low"] == pytest.approx(lo) and row["high"] == pytest.approx(hi)
    sparse = epoch_band(part, "sparse")
    assert list(sparse["epoch"]) == [2, 4] and (sparse["low"] == sparse["high"]).all()  # equal values: no width


def test_curves_and_phase_diagram():
    df = _table()
    fig, (ax1, ax2) = plt.subplots(1, 2)
    plot_curves(df, "acc", by="a", ax=ax1)
    assert len(ax1.lines) == 2 and [t.get_text() for t in ax1.get_legend().get_texts()] == ["a = 1", "a = 2"]
    ax, grid = phase_diagram(df, "a", "b", "acc", ax=ax2)
    # final epoch 4: mean over seeds of a + b + seed/10 + 0.04
    assert grid.loc[0.5, 2] == pytest.approx(2 + 0.5 + 0.1 + 0.04)
    assert grid.shape == (2, 2) and len(ax.texts) == 4 and "±" in ax.texts[0].get_text()
    plt.close(fig)
    with pytest.raises(ValueError, match="not a swept key"):
        phase_diagram(df, "a", "seed", "acc")
    with pytest.raises(ValueError, match="metric 'nope' is not in the table"):
        plot_curves(df, "nope")
