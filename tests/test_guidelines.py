"""Phase tables (``ufm.guidelines``) and the ``phase`` command: the theorems' numbers cell by cell, the
table's shape, and clear errors for unknown knobs and values out of range."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ufm.cli import main
from ufm.guidelines import check_grid, get_phase_loss, phase_table
from ufm.guidelines.supcon import class_cosines, step_counts
from ufm.study.results import summarise


def test_with_relu_every_temperature_and_imbalance_gives_the_orthogonal_frame():
    df = phase_table("supcon", {"temperature": [0.05, 0.1, 0.5], "ratio": [1, 10, 100]}, relu=True)
    assert len(df) == 9 and set(df["solver_status"]) == {"exact"}
    assert df["delta_of"].abs().max() < 1e-9                      # Theorem 1 at every cell
    assert np.abs(df[["cos_majority", "cos_minority", "cos_across"]].to_numpy()).max() < 1e-9


def test_without_relu_balanced_is_the_etf_and_imbalance_bends_the_minorities_together():
    df = phase_table("supcon", {"temperature": [0.1, 0.5], "ratio": [1, 10, 100]}, relu=False)
    assert set(df["solver_status"]) == {"exact"}
    bal = df[df["ratio"] == 1]
    assert bal["delta_etf"].abs().max() < 1e-8                      # Theorem 3: equal counts -> simplex ETF
    assert np.allclose(bal["cos_minority"], -1 / 3, atol=1e-8)
    for tau, part in df.groupby("temperature"):
        cos = part.sort_values("ratio")["cos_minority"].to_numpy()
        assert np.all(np.diff(cos) > 1e-3), (tau, cos)              # minority means pulled together as R grows
    hot, cold = (df[(df["ratio"] == 100) & (df["temperature"] == t)]["cos_minority"].item() for t in (0.5, 0.1))
    assert hot > 0.9 > 0.0 > cold                                   # tau = 0.5: minorities nearly collapse


def test_exact_cells_run_once_and_the_table_reads_like_a_study():
    df = phase_table("supcon", {"ratio": [1, 10]}, seeds=3, relu=False)
    assert len(df) == 2 and df.attrs["keys"] == ["ratio"] and set(df["status"]) == {"complete"}
    cells = summarise(df, ["delta_of"])
    assert [c["params"]["ratio"] for c in cells] == [1.0, 10.0] and all(c["n"] == 1 for c in cells)


def test_helpers():
    assert step_counts(10) == [50, 50, 5, 5] and step_counts(2.5, classes=3, minority=4) == [10, 4, 4]
    g = np.eye(4)
    g[0, 1] = g[1, 0] = 0.5
    cos = class_cosines(g, 2)
    assert cos["cos_majority"] == 0.5 and cos["cos_minority"] == 0.0 and cos["cos_across"] == 0.0


@pytest.mark.parametrize("grid, message", [
    ({"tau": [0.1]}, "unknown knob 'tau' for loss 'supcon'; its knobs: temperature"),
    ({"temperature": [0.0]}, "knob temperature=0.0 is out of range; accepted: float in [0.01, 100]"),
    ({"temperature": ["hot"]}, "knob temperature='hot' is not a float"),
    ({"ratio": [0.5]}, "knob ratio=0.5 is out of range; accepted: float in [1, 1000]"),
    ({"batch_size": [2.5]}, "knob batch_size=2.5 is not an int"),
    ({"binding": ["maybe"]}, "knob binding='maybe' is not a bool; accepted: true or false"),
    ({"ratio": [1, 1]}, "knob 'ratio' has repeated values"),
    ({"batch_size": [0, 1]}, "knob batch_size=1: a batch of one sample has no positive pair"),
])
def test_bad_knobs_are_clear_errors(grid, message):
    with pytest.raises(ValueError) as err:
        check_grid(get_phase_loss("supcon"), grid)
    assert message in str(err.value)


def test_binding_without_mini_batches_and_steps_without_relu_are_refused():
    with pytest.raises(ValueError, match="binding=true needs batch_size > 0"):
        phase_table("supcon", {"binding": [True]})
    with pytest.raises(ValueError, match="measured with --relu only"):
        phase_table("supcon", {"batch_size": [8]})


def test_mini_batch_cells_are_seeded_and_count_steps_to_the_frame():
    df = phase_table("supcon", {"batch_size": [10], "binding": [False, True]}, seeds=2, relu=True)
    assert len(df) == 4 and set(df["seed"]) == {0, 1}
    reached = df[df["reached"] == 1.0]
    assert set(df["solver_status"]) <= {"reached", "censored"}
    assert (reached["steps"] > 0).all() and df.loc[df["reached"] == 0, "steps"].isna().all()


def test_phase_command_prints_cells_and_writes_table_and_heatmaps(tmp_path, capsys):
    out = tmp_path / "phase"
    rc = main(["phase", "--loss", "supcon", "--grid", "temperature=0.05,0.1,0.5", "--grid", "ratio=1,10,100",
               "--relu", "--out", str(out), "--json", "--quiet"])
    assert rc == 0
    obj = json.loads(capsys.readouterr().out)
    assert len(obj["cells"]) == 9
    assert all(c["solver_status"] == ["exact"] and abs(c["delta_of"]) < 1e-9 for c in obj["cells"])
    assert (out / "phase.csv").exists() and (out / "delta_of.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["--loss", "nope"], "unknown loss 'nope'"),
    (["--loss", "supcon", "--grid", "tau=1"], "unknown knob 'tau'"),
    (["--loss", "supcon", "--grid", "ratio=0"], "knob ratio='0' is out of range"),
])
def test_phase_command_errors_are_one_line(tmp_path, capsys, argv, message):
    rc = main(["phase", *argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and message in err and "Traceback" not in err


def test_pod_cells_put_every_sample_at_the_predicted_norm_whatever_the_counts():
    df = phase_table("pod", {"delta": [0.05, 2.0], "weight_decay": [1e-3, 1e-1], "ratio": [1, 10]})
    assert set(df["solver_status"]) == {"converged"}, df[["delta", "weight_decay", "norm_error"]]
    assert df["norm_error"].max() < 1e-4                        # Claim 3: ||h_i|| = r*(Delta, lambda)
    assert df["delta_etf"].max() < 1e-5                         # class means: the ETF, also at R = 10
    small = df[(df["weight_decay"] == 1e-3) & (df["ratio"] == 1)].set_index("delta")["r_star"]
    assert small[2.0] > small[0.05]                             # the norm grows with Delta at fixed decay


def test_atlas_rows_against_their_frames():
    from ufm.guidelines.atlas import geometry_atlas

    df = geometry_atlas(ratios=(1, 10), seeds=1, losses=("SCL + ReLU", "SCL", "CE + decay", "POD"))
    d = df.set_index(["loss", "ratio"])
    assert d.loc[("SCL + ReLU", 1.0), "distance"] < 1e-9 and d.loc[("SCL + ReLU", 10.0), "distance"] < 1e-9
    assert d.loc[("POD", 10.0), "distance"] < 1e-5 and d.loc[("SCL", 1.0), "distance"] < 1e-8
    assert d.loc[("SCL", 10.0), "distance"] > 0.05                # no ReLU: imbalance bends the ETF
    assert d.loc[("CE + decay", 1.0), "etf_distance"] < 1e-7      # balanced CE: the ETF
    assert 0.05 < d.loc[("CE + decay", 10.0), "distance"] < d.loc[("CE + decay", 10.0), "etf_distance"]
    assert set(df["status"]) <= {"exact", "stationary", "converged"}


def test_gini_kl_cells_split_a_filter_where_the_two_class_boundary_says_and_never_beat_its_minimum():
    df = phase_table("gini_kl", {"lambda_kl": [0.2, 5.0], "ratio": [3.0], "filters_per_class": [1]}, seeds=4)
    assert np.allclose(df["rho_star"], df["rho_star"].iloc[0]) and 1.5 < df["rho_star"].iloc[0] < 2.5
    assert (df["train_acc"] == 1.0).all()
    assert (df["terms"] >= df["terms_minimum"] - 1e-6).all()            # Claim 5: no state beats the minimum
    above = df[df["lambda_kl"] == 5.0]                                   # rho = 10 > rho*: one filter split
    assert (above["impure_filters"] == 1.0).all() and (above["terms"] - above["terms_minimum"]).max() < 1e-3
    below = df[df["lambda_kl"] == 0.2]                                   # rho = 0.4 < rho*: the minimiser is pure
    reached = below[below["terms"] - below["terms_minimum"] < 1e-3]
    assert len(reached) >= 1 and (reached["impure_filters"] == 0.0).all()
    stuck = below[below["terms"] - below["terms_minimum"] >= 1e-3]     # a shared filter: not the minimiser
    assert (stuck["impure_filters"] >= 1.0).all()


def test_large_margin_cells_keep_theorem_1_and_refuse_two_ways_to_set_delta_d():
    df = phase_table("large_margin", {"ratio": [0.5, 3.0], "lambda": [100.0]})
    assert (df["min_gap"] >= -1e-6).all()                       # Theorem 1 holds in every trained cell
    three = df[df["ratio"] == 3.0].iloc[0]
    assert three["train_acc"] == 1.0 and three["margin_over_dv"] > 1.0  # ratio 3: margin >= (3 - 1) delta_v - slack
    with pytest.raises(ValueError, match="knobs delta_d and ratio both set delta_d"):
        phase_table("large_margin", {"ratio": [1.0], "delta_d": [1.0]})


def test_large_margin_without_the_margin_term_drifts_to_the_trivial_solution():
    """beta = 0 leaves L_c + L_r, minimised by every feature and centre at the origin: where L_dis dominates
    (lambda = 100) features and centres shrink towards it (only CE holds them out); gamma acts at gamma (1 - m)."""
    df = phase_table("large_margin", {"beta": [0.0, 1.0], "lambda": [100.0], "momentum": [0.9]}, seeds=2)
    for seed, part in df.groupby("seed"):
        off, on = (part[part["beta"] == b].iloc[0] for b in (0.0, 1.0))
        assert off["feature_norm"] < 0.8 * on["feature_norm"] and off["centre_norm"] < 0.8 * on["centre_norm"]
        assert on["train_acc"] == 1.0
    assert np.allclose(df["gamma_effective"], 1e-3 * (1 - 0.9))


@pytest.mark.parametrize("loss, grid, quantity", [
    ("pod", ["delta=0.5", "weight_decay=0.01,0.1"], "norm_error"),
    ("gini_kl", ["lambda_kl=5"], "impure_filters"),
    ("large_margin", ["delta_d=1.5"], "min_gap"),
])
def test_phase_command_for_every_loss(tmp_path, capsys, loss, grid, quantity):
    argv = ["phase", "--loss", loss, "--out", str(tmp_path), "--json", "--quiet"]
    for g in grid:
        argv += ["--grid", g]
    assert main(argv) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["loss"] == loss and len(obj["cells"]) == len(grid[-1].split(","))
    assert all(quantity in c and c["solver_status"] for c in obj["cells"]) and (tmp_path / "phase.csv").exists()
