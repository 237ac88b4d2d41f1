"""ufm.study: grid expansion and run ids, resumable studies (a second call trains nothing, an interrupted
run resumes exactly), local and Ray executors giving the same metrics, results tables, paired
comparisons, the sweep / report command line, and clear errors for bad specs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from ufm.cli import main as cli_main
from ufm.study import (
    IncompleteStudyWarning,
    Study,
    StudySpec,
    collect,
    compare,
    final_rows,
    format_summary,
    parse_grid,
    run_study,
    summarise,
)
from ufm.study.executors import LocalExecutor, RayExecutor, make_executor
from ufm.train import read_metrics, train

TINY_YAML = """\
dataset: digits
model: mlp
model_kwargs: {widths: [16]}
loss: large_margin
loss_kwargs: {delta_d: 1.5, delta_v: 0.5}
scoring: logits
device: cpu
amp: false
augment: false
profiles:
  ci: {epochs: 3, batch_size: 128, lr: 0.05}
  paper: {epochs: 200}
"""


@pytest.fixture
def tiny(tmp_path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_YAML)
    return str(path)


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _finals(study: Study) -> dict:
    return {r.run_id: _strip(read_metrics(study.run_dir(r))) for r in study.runs}


# ----------------------------------------------------------------------------- spec, grid and ids
def test_grid_expands_to_every_point_and_seed_with_stable_ids(tiny):
    spec = StudySpec(tiny, "ci", ["epochs=2"], {"loss_kwargs.delta_d": [1.0, 1.5], "lr": [0.05, 0.1]}, seeds=3)
    runs = spec.expand()
    assert len(runs) == 2 * 2 * 3 and len({r.run_id for r in runs}) == 12
    assert [r.params for r in runs[:3]] == [{"loss_kwargs.delta_d": 1.0, "lr": 0.05}] * 3
    assert [r.seed for r in runs[:3]] == [0, 1, 2]
    r = runs[4]  # delta_d 1.0, lr 0.1, seed 1
    assert r.config.loss_kwargs == {"delta_d": 1.0, "delta_v": 0.5} and r.config.lr == 0.1 and r.config.seed == 1
    assert r.config.epochs == 2 and r.run_id.startswith("delta_d=1.0_lr=0.1_s1-")
    # stable: the same spec gives the same ids; where it runs does not change them; what it computes does
    assert [x.run_id for x in StudySpec(tiny, "ci", ["epochs=2"], dict(spec.grid), 3).expand()] == [x.run_id for x in runs]
    assert [x.run_id for x in StudySpec(tiny, "ci", ["epochs=2", "device=cuda"], dict(spec.grid), 3).expand()] == \
        [x.run_id for x in runs]
    assert StudySpec(tiny, "ci", ["epochs=3"], dict(spec.grid), 3).expand()[0].run_id != runs[0].run_id
    # the spec survives its JSON record
    assert StudySpec.from_dict(json.loads(json.dumps(spec.to_dict()))).expand()[5].run_id == runs[5].run_id


def test_parse_grid_reads_yaml_values_and_brackets():
    grid = parse_grid(["loss_kwargs.temperature=0.1,0.5", "milestones=[5, 8],[10]", "final_relu=true,false",
                       "weight_decay=1e-4,5e-4"])
    assert grid == {"loss_kwargs.temperature": [0.1, 0.5], "milestones": [[5, 8], [10]],
                    "final_relu": [True, False], "weight_decay": [1e-4, 5e-4]}


@pytest.mark.parametrize("kwargs, msg", [
    (dict(grid={"lr_typo": [0.1]}), "grid point lr_typo=0.1: config: unknown field 'lr_typo'"),
    (dict(grid={"lr": []}), r"grid\['lr'\] is empty"),
    (dict(grid={"lr": [0.1, 0.1]}), "repeats a value"),
    (dict(grid={"lr": [-1.0]}), "grid point lr=-1.0: config: lr must be a positive number"),
    (dict(grid={"seed": [1, 2]}), "'seed' cannot be a grid key"),
    (dict(seeds=0), "seeds must be >= 1"),
    (dict(seeds=[1, 1]), "seeds must be distinct"),
    (dict(overrides=["lr=0.1"], grid={"lr": [0.2]}), "both a base override"),
    (dict(grid={"loss_kwargs": [1]}), "config: loss_kwargs must be a mapping"),
])
def test_bad_specs_say_what_is_wrong(tiny, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        StudySpec(tiny, "ci", **kwargs).expand()


def test_bad_grid_text_and_executor_options():
    with pytest.raises(ValueError, match="empty value"):
        parse_grid(["lr=0.1,,0.2"])
    with pytest.raises(ValueError, match="KEY=V1,V2"):
        parse_grid(["lr"])
    with pytest.raises(ValueError, match="given twice"):
        parse_grid(["lr=0.1", "lr=0.2"])
    with pytest.raises(ValueError, match="jobs must be an integer >= 1, got 0"):
        make_executor("local", jobs=0)
    with pytest.raises(ValueError, match="threads must be an integer >= 1, got -2"):
        LocalExecutor(2, threads=-2)
    with pytest.raises(ValueError, match="backend must be one of"):
        make_executor("slurm")
    with pytest.raises(ValueError, match="--address is for the ray backend"):
        make_executor("local", address="127.0.0.1:6379")
    assert LocalExecutor(jobs=2, threads=None).threads >= 1


def test_an_unreachable_ray_address_fails_within_seconds():
    t0 = time.time()
    with pytest.raises(ValueError, match="cannot reach a Ray cluster at 127.0.0.1:9"):
        list(RayExecutor("127.0.0.1:9").run([object()]))
    assert time.time() - t0 < 10
    with pytest.raises(ValueError, match="HOST:PORT"):
        list(RayExecutor("nohostport").run([object()]))
    with pytest.raises(ValueError, match="needs the address"):
        RayExecutor(None)


# ----------------------------------------------------------------------------- running and resuming
def test_a_study_runs_once_and_a_second_call_trains_nothing(tiny, tmp_path):
    spec = StudySpec(tiny, "ci", grid={"loss_kwargs.delta_d": [1.0, 1.5]}, seeds=2)
    study = run_study(spec, tmp_path / "s", jobs=1, threads=1, progress=False)
    assert [o.status for o in study.last_outcomes] == ["complete"] * 4
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("checkpoint.pt")}
    again = run_study(spec, tmp_path / "s", jobs=1, threads=1, progress=False)
    assert again.last_outcomes == [] and {p: p.stat().st_mtime_ns for p in stamps} == stamps
    record = json.loads((tmp_path / "s" / "study.json").read_text())
    assert record["spec"]["grid"] == {"loss_kwargs.delta_d": [1.0, 1.5]} and len(record["runs"]) == 4
    # each run is exactly `train` of its config in its folder
    r = study.runs[3]
    assert _strip(train(r.config, tmp_path / "ref", log=None)) == _strip(read_metrics(study.run_dir(r)))
    # growing the study (another seed) runs only the new runs
    more = run_study(StudySpec(tiny, "ci", grid={"loss_kwargs.delta_d": [1.0, 1.5]}, seeds=3), tmp_path / "s",
                     jobs=1, threads=1, progress=False)
    assert sorted(o.run_id for o in more.last_outcomes) == sorted(r.run_id for r in more.runs if r.seed == 2)


def test_interrupted_runs_resume_exactly_and_stale_temporaries_go(tiny, tmp_path):
    spec = StudySpec(tiny, "ci", grid={"lr": [0.05, 0.1]}, seeds=1)
    reference = run_study(spec, tmp_path / "ref", jobs=1, threads=1, progress=False)
    study = Study(spec, tmp_path / "cut")
    study.prepare()
    cut = study.runs[1]
    train(cut.config, study.run_dir(cut), stop_after=1, log=None)  # killed after its first epoch
    (study.run_dir(cut) / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    assert [s.status for s in study.states().values()] == ["new", "partial"]
    outcomes = study.run("local", jobs=1, threads=1, progress=False)
    assert len(outcomes) == 2 and not list(study.run_dir(cut).glob(".*.tmp"))
    assert list(_finals(study).values()) == list(_finals(reference).values())


def test_a_sweep_killed_mid_run_resumes_to_the_same_metrics(tiny, tmp_path):
    """A real kill (SIGKILL of the sweep and its workers mid-study), then the same command again."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ufm", "sweep", "--config", tiny, "--grid", "lr=0.05,0.1", "--seeds", "2",
           "--jobs", "2", "--threads", "1", "--out", str(out), "--quiet", "epochs=8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(
                len((p.read_text().splitlines())) >= 2 for p in out.glob("*/metrics.jsonl")):
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    study = Study.open(out)
    states = study.states()
    assert any(s.status != "complete" for s in states.values()), "the kill came after the whole study"
    assert subprocess.run(cmd, timeout=300).returncode == 0
    reference = run_study(study.spec, tmp_path / "ref", jobs=1, threads=1, progress=False)
    assert _finals(study) == _finals(reference)


def test_folders_holding_another_study_or_config_are_refused(tiny, tmp_path):
    spec = StudySpec(tiny, "ci", grid={"lr": [0.05]}, seeds=1)
    study = run_study(spec, tmp_path / "s", jobs=1, threads=1, progress=False)
    with pytest.raises(ValueError, match=r"another spec \(overrides: \{\} in the folder vs \{'epochs': 2\} now\)"):
        Study(StudySpec(tiny, "ci", ["epochs=2"], {"lr": [0.05]}, 1), tmp_path / "s").prepare()
    with pytest.raises(ValueError, match="grid keys"):
        Study(StudySpec(tiny, "ci", grid={"momentum": [0.5]}, seeds=1), tmp_path / "s").prepare()
    # a run folder whose run.json holds another config
    run_json = study.run_dir(study.runs[0]) / "run.json"
    record = json.loads(run_json.read_text())
    record["config"]["weight_decay"] = 0.1
    run_json.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="holds another config.*weight_decay: 0.1 there vs 0.0005 now"):
        study.prepare()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a study folder"):
        Study(spec, tmp_path / "other").prepare()
    with pytest.raises(ValueError, match="not a study folder"):
        Study.open(tmp_path / "other")


def test_one_driver_per_study_folder(tiny, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    study = Study(StudySpec(tiny, "ci", grid={"lr": [0.05]}, seeds=1), tmp_path / "s")
    study.prepare()
    with open(tmp_path / "s" / ".study.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="another sweep is running"):
            study.run(progress=False)


def test_a_failing_run_is_reported_and_the_others_finish(tiny, tmp_path):
    spec = StudySpec(tiny, "ci", grid={"lr": [0.05, 1e6]}, seeds=1)  # lr 1e6 diverges
    study = run_study(spec, tmp_path / "s", jobs=1, threads=1, progress=False)
    status = {o.run_id: o for o in study.last_outcomes}
    bad = study.runs[1].run_id
    assert status[bad].status == "failed" and "diverged" in status[bad].error
    assert status[study.runs[0].run_id].status == "complete"
    assert "Traceback" in (study.run_dir(study.runs[1]) / "error.txt").read_text()
    with pytest.warns(IncompleteStudyWarning, match="failed"):
        df = collect(study)
    assert df.attrs["failed"] == [bad] and set(final_rows(df)["run_id"]) == {study.runs[0].run_id}


# ----------------------------------------------------------------------------- results and statistics
def test_collect_summarise_and_compare(tiny, tmp_path):
    # milestones: the per-epoch lr differs from the swept lr, and must not overwrite it
    spec = StudySpec(tiny, "ci", ["milestones=[2]"], {"loss_kwargs.delta_d": [1.0, 1.5], "lr": [0.05, 0.1]}, seeds=3)
    study = run_study(spec, tmp_path / "s", jobs=2, threads=1, progress=False)
    df = collect(study)
    assert len(df) == 12 * 3 and (tmp_path / "s" / "results.csv").exists()
    assert list(df.columns[:6]) == ["run_id", "loss_kwargs.delta_d", "lr", "seed", "status", "epoch"]
    assert df.attrs["missing"] == [] and set(df["seed"]) == {0, 1, 2}
    assert set(df["lr"]) == {0.05, 0.1} and df["metric_lr"].min() == pytest.approx(0.005)  # lr x0.1 from epoch 3
    summary = summarise(df, ["test_acc"])
    assert [e["params"] for e in summary] == [p for p in spec.points()]
    fin = final_rows(df)
    cell = fin[(fin["loss_kwargs.delta_d"] == 1.5) & (fin["lr"] == 0.1)]["test_acc"].to_numpy()
    s = summary[3]["metrics"]["test_acc"]
    assert s["n"] == 3 and s["mean"] == pytest.approx(cell.mean()) and s["low"] < s["mean"] < s["high"]
    assert "±" in format_summary(summary)
    # paired by seed within each lr
    res = compare(df, "loss_kwargs.delta_d", 1.0, 1.5, "test_acc")
    assert [r["params"] for r in res] == [{"lr": 0.05}, {"lr": 0.1}]
    a = fin[(fin["loss_kwargs.delta_d"] == 1.0) & (fin["lr"] == 0.1)].sort_values("seed")["test_acc"].to_numpy()
    b = fin[(fin["loss_kwargs.delta_d"] == 1.5) & (fin["lr"] == 0.1)].sort_values("seed")["test_acc"].to_numpy()
    assert res[1]["mean_diff"] == pytest.approx((b - a).mean()) and res[1]["seeds"] == [0, 1, 2]
    assert res[1]["n_b_higher"] + res[1]["n_a_higher"] + res[1]["n_ties"] == 3
    with pytest.raises(ValueError, match="not swept"):
        compare(df, "momentum", 0.9, 0.5)
    with pytest.raises(ValueError, match="has no complete run"):
        compare(df, "lr", 0.05, 0.2)
    with pytest.raises(ValueError, match="unknown metric"):
        summarise(df, ["accuracy"])


def test_a_half_finished_study_can_be_read(tiny, tmp_path):
    spec = StudySpec(tiny, "ci", grid={"lr": [0.05, 0.1]}, seeds=2)
    study = Study(spec, tmp_path / "s")
    study.prepare()
    train(study.runs[0].config, study.run_dir(study.runs[0]), log=None)
    train(study.runs[1].config, study.run_dir(study.runs[1]), stop_after=2, log=None)
    with pytest.warns(IncompleteStudyWarning, match=r"2 of 4 runs not started.*1 unfinished"):
        df = collect(study)
    assert df.attrs["missing"] == [study.runs[2].run_id, study.runs[3].run_id]
    assert df.attrs["partial"] == [study.runs[1].run_id]
    assert len(df) == 3 + 2 and len(final_rows(df)) == 1
    summary = summarise(df, ["test_acc"])
    assert summary[0]["n"] == 1 and summary[0]["metrics"]["test_acc"]["low"] is None


# ----------------------------------------------------------------------------- command line
def test_sweep_and_report_commands(tiny, tmp_path, capsys):
    out = tmp_path / "dd"
    argv = ["sweep", "--config", tiny, "--grid", "loss_kwargs.delta_d=1.0,1.5", "--seeds", "3", "--jobs", "1",
            "--threads", "1", "--out", str(out), "--json", "--quiet"]
    assert cli_main(argv) == 0
    first = capsys.readouterr().out
    data = json.loads(first)
    assert len(data["runs"]) == 6 and {r["status"] for r in data["runs"]} == {"complete"}
    run = data["runs"][4]
    assert run["params"] == {"loss_kwargs.delta_d": 1.5} and run["seed"] == 1 and run["final"]["epoch"] == 3
    assert [s["params"] for s in data["summary"]] == [{"loss_kwargs.delta_d": 1.0}, {"loss_kwargs.delta_d": 1.5}]
    acc = [r["final"]["test_acc"] for r in data["runs"][:3]]
    t = data["summary"][0]["metrics"]["test_acc"]
    assert t["n"] == 3 and t["mean"] == pytest.approx(sum(acc) / 3) and t["low"] < t["mean"] < t["high"]
    t0 = time.time()
    assert cli_main(argv) == 0
    assert capsys.readouterr().out == first and time.time() - t0 < 30  # trains nothing, prints the same
    assert cli_main(["report", str(out), "--compare", "loss_kwargs.delta_d=1.0,1.5", "--metric", "test_acc", "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)["comparisons"][0]
    assert cmp["n"] == 3 and cmp["a"] == 1.0 and cmp["b"] == 1.5
    assert cmp["low"] <= cmp["mean_diff"] <= cmp["high"] and {"p_t", "p_wilcoxon"} <= set(cmp)
    assert cli_main(["report", str(out), "--metric", "test_acc"]) == 0
    table = capsys.readouterr().out
    assert "delta_d" in table and "test_acc" in table and "±" in table


@pytest.mark.parametrize("argv, msg", [
    (["--grid", "lr_typo=0.1"], "unknown field 'lr_typo'"),
    (["--grid", "lr="], "empty value"),
    (["--jobs", "0"], "jobs must be an integer >= 1, got 0"),
    (["--backend", "ray", "--address", "127.0.0.1:9"], "cannot reach a Ray cluster"),
])
def test_sweep_errors_are_one_line(tiny, tmp_path, capsys, argv, msg):
    assert cli_main(["sweep", "--config", tiny, "--out", str(tmp_path / "x"), "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_sweep_rejects_bad_seed_counts(tiny, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["sweep", "--config", tiny, "--out", str(tmp_path / "x"), "--seeds", "0"])
    assert "--seeds must be >= 1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- Ray
def _ray_bin() -> Path:
    return Path(sys.executable).with_name("ray")


class _Deadline:
    """Raise TimeoutError in the main thread after ``seconds`` (bounds a test that talks to a server)."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __enter__(self):
        def fire(*_):
            raise TimeoutError(f"the test ran past {self.seconds} s")

        self.old = signal.signal(signal.SIGALRM, fire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)


@pytest.mark.ray
def test_ray_backend_gives_the_local_metrics(tiny, tmp_path):
    """A Ray head on 127.0.0.1 only, the same study on it and locally: identical metrics (CPU, 1 thread)."""
    import importlib.util
    import socket

    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'ufm[ray]')")
    psutil = pytest.importorskip("psutil")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # on Linux Ray binds its servers to the node's external address unless told the node is local-only
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_bin = str(_ray_bin())
    spec = StudySpec(tiny, "ci", grid={"loss_kwargs.delta_d": [1.0, 1.5]}, seeds=2)
    try:
        subprocess.run([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                        "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats"],
                       env=env, check=True, timeout=120, capture_output=True)
        listening = [c.laddr.ip for p in psutil.process_iter() if p.name() in ("gcs_server", "raylet")
                     for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip in listening), listening
        with _Deadline(300):
            on_ray = run_study(spec, tmp_path / "ray", "ray", address=f"127.0.0.1:{port}", threads=1, progress=False)
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, timeout=120, capture_output=True)
    assert not [p for p in psutil.process_iter() if p.name() in ("gcs_server", "raylet")]  # the head is gone
    assert [o.status for o in on_ray.last_outcomes] == ["complete"] * 4
    local = run_study(spec, tmp_path / "local", jobs=2, threads=1, progress=False)
    assert _finals(on_ray) == _finals(local)
    assert (tmp_path / "ray" / "results.csv").exists() is False  # written by collect, not by running
    df = collect(on_ray)
    assert (tmp_path / "ray" / "results.csv").exists() and len(df) == 4 * 3


def test_an_unguarded_script_gets_a_clear_error(tiny, tmp_path):
    """Worker processes import the main script first: a study started at its top level says what to do."""
    script = tmp_path / "unguarded.py"
    script.write_text("from ufm.study import StudySpec, run_study\n"
                      f"run_study(StudySpec({tiny!r}, 'ci', [], {{'lr': [0.05, 0.1]}}, seeds=1), {str(tmp_path / 'out')!r}, "
                      "jobs=2, threads=1, progress=False)\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "if __name__ == '__main__':" in res.stderr.splitlines()[-1]


def test_a_shared_run_cache_trains_each_computation_once(tiny, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = run_study(StudySpec(tiny, "ci", grid={"lr": [0.05, 0.1]}, seeds=1), tmp_path / "a", jobs=1, threads=1,
                      progress=False, cache=cache)
    assert [o.status for o in first.last_outcomes] == ["complete"] * 2 and len(list(cache.iterdir())) == 2
    # another study, another folder, one run in common (lr = 0.1, seed 0): only the new one trains
    monkeypatch.setenv("UFM_RUN_CACHE", str(cache))
    second = run_study(StudySpec(tiny, "ci", grid={"lr": [0.1, 0.2]}, seeds=1), tmp_path / "b", jobs=1, threads=1,
                       progress=False)
    assert [o.run_id for o in second.last_outcomes] == [second.runs[1].run_id]
    shared_a, shared_b = first.run_dir(first.runs[1]), second.run_dir(second.runs[0])
    assert _strip(read_metrics(shared_a)) == _strip(read_metrics(shared_b))
    # another thread count is another computation on a CPU: not taken from the cache
    third = run_study(StudySpec(tiny, "ci", grid={"lr": [0.1]}, seeds=1), tmp_path / "c", jobs=1, threads=2,
                      progress=False)
    assert len(third.last_outcomes) == 1 and len(list(cache.iterdir())) == 4


def test_a_worker_reads_a_run_finished_beside_it_and_shares_its_own_at_once(tiny, tmp_path, monkeypatch):
    """Two studies running side by side (the test command's streams): the worker looks in the cache just before it
    trains, and puts a run there as soon as it is complete, not at the end of its study."""
    import ufm.train as train_module
    from ufm.study.worker import execute_run

    cache = tmp_path / "cache"
    a = Study(StudySpec(tiny, "ci", grid={"lr": [0.1]}, seeds=1), tmp_path / "a")
    a.prepare()
    (task,) = a.tasks(a.runs, threads=1, cache=cache)
    assert execute_run(task).status == "complete"
    assert [p.name for p in cache.iterdir()] == [task.cache_key]  # stored by the worker itself
    b = Study(StudySpec(tiny, "ci", grid={"lr": [0.1, 0.2]}, seeds=1), tmp_path / "b")
    b.prepare()
    shared = b.tasks(b.runs, threads=1, cache=cache)[0]
    assert shared.cache_key == task.cache_key

    def no_training(*args, **kwargs):
        raise AssertionError("a run the cache holds complete was trained again")

    monkeypatch.setattr(train_module, "train", no_training)
    outcome = execute_run(shared)
    assert outcome.status == "complete" and outcome.epochs_done == shared.config["epochs"]
    assert _strip(read_metrics(Path(shared.run_dir))) == _strip(read_metrics(Path(task.run_dir)))


def test_a_worker_that_cannot_write_the_cache_still_returns_its_complete_run(tiny, tmp_path):
    from ufm.study.worker import execute_run

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    study = Study(StudySpec(tiny, "ci", grid={"lr": [0.1]}, seeds=1), tmp_path / "s")
    study.prepare()
    (task,) = study.tasks(study.runs, threads=1, cache=blocked)
    outcome = execute_run(task)  # never raises: the store error is the driver's to report
    assert outcome.status == "complete" and outcome.epochs_done == task.config["epochs"]
