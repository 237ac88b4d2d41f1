"""Bad input to the solvers layer (and the shared device argument): one row per case, a clear error naming the
argument and the value.

A new public function joins by adding a row to ``CASES``: ``pytest.param(call, error type, message regex,
id=...)``. Every row runs in milliseconds: each is refused before a solver starts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ufm.batching import epoch_batcher
from ufm.device import default_device
from ufm.geometry import ClassMoments, pedcc
from ufm.losses import SupConLoss
from ufm.solvers import (
    TEMPERATURE_MIN,
    large_margin_ufm_run,
    solve_ce_ufm,
    train_free_features,
    SolverError,
    certify_class_gram,
    certify_gram,
    class_gram_to_gram,
    max_departure,
    of_objective,
    reduced_objective,
    scl_feature_objective,
    scl_gram_objective,
    solve_conic,
    solve_gd,
    solve_reduced,
    solve_sdp,
    steps_to_of,
)

Y = np.repeat(np.arange(3), 4)  # 12 samples, 3 classes of 4
COUNTS = (4, 4, 4)
H = torch.rand(12, 4, dtype=torch.float64)

# every public function of the solvers that takes a temperature: name -> call(temperature)
TEMPERATURE_TAKERS = {
    "solve_reduced": lambda t: solve_reduced(COUNTS, temperature=t),
    "solve_sdp": lambda t: solve_sdp(Y, temperature=t),
    "solve_gd": lambda t: solve_gd(Y, 4, temperature=t, steps=1),
    "steps_to_of": lambda t: steps_to_of(Y, 4, batch_size=6, binding=False, seed=0, temperature=t, max_steps=1),
    "max_departure": lambda t: max_departure(Y, None, temperature=t),
    "certify_class_gram": lambda t: certify_class_gram(np.eye(3), COUNTS, temperature=t),
    "certify_gram": lambda t: certify_gram(np.eye(12), Y, temperature=t),
    "reduced_objective": lambda t: reduced_objective(np.eye(3), COUNTS, temperature=t),
    "scl_gram_objective": lambda t: scl_gram_objective(np.eye(12), Y, temperature=t),
    "of_objective": lambda t: of_objective(Y, temperature=t),
    "scl_feature_objective": lambda t: scl_feature_objective(H, Y, temperature=t),
}
# the solvers (not the objective evaluations) refuse temperatures below TEMPERATURE_MIN
SOLVERS = ("solve_reduced", "solve_sdp", "solve_gd", "steps_to_of", "max_departure", "certify_class_gram",
           "certify_gram")
BAD_TEMPERATURES = [
    ("abc", TypeError, r"temperature must be a real number, got 'abc' \(str\)"),
    (None, TypeError, r"temperature must be a real number, got None"),
    (0.0, ValueError, r"temperature must be positive and finite, got 0\.0"),
    (-0.1, ValueError, r"temperature must be positive and finite, got -0\.1"),
    (float("nan"), ValueError, r"temperature must be positive and finite, got nan"),
    (float("inf"), ValueError, r"temperature must be positive and finite, got inf"),
]
TEMPERATURE_CASES = [
    pytest.param(lambda f=f, t=t: TEMPERATURE_TAKERS[f](t), err, match, id=f"{f}-temperature-{t}")
    for f in TEMPERATURE_TAKERS for t, err, match in BAD_TEMPERATURES
] + [
    pytest.param(lambda f=f: TEMPERATURE_TAKERS[f](1e-300), ValueError,
                 r"temperature must be >= 1e-06 and finite, got 1e-300: below it float64 cannot resolve",
                 id=f"{f}-temperature-1e-300")
    for f in SOLVERS
]

CASES = [
    # ---- the device argument (ufm.device.check_device: every device argument of the project)
    pytest.param(lambda: solve_gd(Y, 4, device="gpu", steps=1), ValueError,
                 r"device must be one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'.*; got 'gpu'", id="gd-device-gpu"),
    pytest.param(lambda: default_device("tpu"), ValueError, r"device must be one of .*got 'tpu'", id="device-tpu"),
    pytest.param(lambda: default_device("meta"), ValueError, r"device must be one of .*got 'meta'", id="device-meta"),
    pytest.param(lambda: default_device(0), TypeError, r"device must be a string .*got 0 \(int\)", id="device-int"),
    pytest.param(lambda: ClassMoments(3, 4, device="gpu"), ValueError, r"device must be one of .*got 'gpu'",
                 id="class-moments-device"),
    pytest.param(lambda: pedcc(3, 4, device="gpu"), ValueError, r"device must be one of .*got 'gpu'", id="pedcc-device"),
]
CASES += TEMPERATURE_CASES
CASES += [
    # ---- a batching in which no batch has an anchor (issue 15: `solve --method gd --batch-size 1` was a no-op)
    pytest.param(lambda: solve_gd(Y, 4, batches=epoch_batcher(Y, 1, 0), optimizer="adam", steps=5), ValueError,
                 r"no batch of epoch 0 of the batching has an anchor.*largest batch holds 1 sample.*batch_size",
                 id="gd-stochastic-batch-size-1"),
    pytest.param(lambda: steps_to_of(Y, 4, batch_size=1, binding=False, seed=0, max_steps=5), ValueError,
                 r"no batch of epoch 0 .*has an anchor.*batch_size", id="steps-to-of-batch-size-1"),
    pytest.param(lambda: solve_gd(Y, 4, batches=[np.array([0, 4]), np.array([1, 8])], steps=5), ValueError,
                 r"no batch of the batching has an anchor.*largest batch holds 2 sample.*batch_size",
                 id="gd-fixed-no-anchor"),
    pytest.param(lambda: solve_sdp(Y, [np.array([i]) for i in range(12)]), ValueError,
                 r"no batch of the batching has an anchor.*largest batch holds 1 sample.*batch_size", id="sdp-batch-size-1"),
    pytest.param(lambda: max_departure(Y, [np.array([i]) for i in range(12)]), ValueError,
                 r"no batch of the batching has an anchor.*batch_size", id="departure-batch-size-1"),
    pytest.param(lambda: solve_sdp([0, 0, 0]), ValueError, r"labels must hold at least two classes.*3 samples of class 0",
                 id="sdp-one-class"),
    pytest.param(lambda: solve_sdp(np.arange(4)), ValueError, r"no class of labels has two samples \(4 samples, 4 classes\)",
                 id="sdp-no-class-pair"),
    # ---- sizes and labels
    pytest.param(lambda: solve_reduced((5, 0, 3)), ValueError, r"classes \[1\] have counts \[0\]", id="reduced-count-zero"),
    pytest.param(lambda: solve_gd(Y, -1), ValueError, r"dim must be a positive integer, got -1", id="gd-dim-negative"),
    pytest.param(lambda: solve_sdp(np.array([0, 0, -1, 1])), ValueError, r"labels must be non-negative.*-1",
                 id="sdp-labels-negative"),
    pytest.param(lambda: solve_gd(np.array([0.5, 1.0, 1.0]), 4), ValueError, r"labels must be integers", id="gd-labels-float"),
    pytest.param(lambda: scl_feature_objective(torch.full((12, 4), float("nan"), dtype=torch.float64), Y), ValueError,
                 r"features contain NaN", id="feature-objective-nan"),
    pytest.param(lambda: solve_ce_ufm(Y, dim=-1), ValueError, r"dim must be an integer >= 1, got -1", id="ce-ufm-dim"),
    pytest.param(lambda: solve_ce_ufm(Y, max_iter=0), ValueError, r"max_iter must be an integer >= 1, got 0",
                 id="ce-ufm-max-iter-0"),
    pytest.param(lambda: solve_ce_ufm(Y, weight_decay="a"), ValueError, r"weight_decay must be a positive .*got 'a'",
                 id="ce-ufm-weight-decay-str"),
    pytest.param(lambda: train_free_features(SupConLoss(), Y, -2), ValueError, r"dim must be an integer >= 1, got -2",
                 id="free-features-dim"),
    pytest.param(lambda: train_free_features(SupConLoss(), Y, 4, steps="10"), TypeError, r"steps must be an integer, got '10'",
                 id="free-features-steps-str"),
    pytest.param(lambda: train_free_features(SupConLoss(), Y, 4, lr=float("nan")), ValueError, r"lr must be positive.*got nan",
                 id="free-features-lr-nan"),
    pytest.param(lambda: train_free_features(SupConLoss(), Y, 4, device="gpu"), ValueError, r"device must be one of .*'gpu'",
                 id="free-features-device"),
    pytest.param(lambda: large_margin_ufm_run(0.5, 1.5, per_class=-1), ValueError, r"per_class must be an integer >= 1, got -1",
                 id="large-margin-ufm-per-class"),
    # ---- scalars of the solvers
    pytest.param(lambda: solve_reduced(COUNTS, tol="a"), TypeError, r"tol must be a real number, got 'a'", id="reduced-tol-str"),
    pytest.param(lambda: solve_reduced(COUNTS, max_ip_k=-1), ValueError, r"max_ip_k must be an integer >= 0, got -1",
                 id="reduced-max-ip-k"),
    pytest.param(lambda: solve_reduced("abc"), ValueError, r"counts must be a 1-D sequence of class sizes, got 'abc'",
                 id="reduced-counts-str"),
    pytest.param(lambda: solve_reduced(COUNTS, solver="NOPE"), ValueError,
                 r"solver \(an installed cvxpy solver\) must be one of 'CLARABEL'.*got 'NOPE'", id="reduced-solver"),
    pytest.param(lambda: solve_sdp(Y, solver="NOPE"), ValueError, r"solver .*got 'NOPE'", id="sdp-solver"),
    pytest.param(lambda: solve_sdp(Y, max_n="a"), TypeError, r"max_n must be an integer, got 'a'", id="sdp-max-n-str"),
    pytest.param(lambda: solve_sdp(Y, method="low-rank", rank=0), ValueError, r"rank must be an integer >= 1, got 0",
                 id="sdp-rank-0"),
    pytest.param(lambda: certify_class_gram(np.eye(3), COUNTS, tol="a"), TypeError, r"tol must be a real number, got 'a'",
                 id="certify-class-gram-tol"),
    pytest.param(lambda: class_gram_to_gram(np.eye(2), COUNTS), ValueError, r"class_gram must be \(3, 3\) for 3 classes, got \(2, 2\)",
                 id="class-gram-to-gram-shape"),
    pytest.param(lambda: max_departure(Y, None, reference=np.full((12, 12), np.nan)), ValueError,
                 r"reference contain NaN", id="departure-reference-nan"),
    pytest.param(lambda: solve_gd(Y, 4, record_every="a"), TypeError, r"record_every must be an integer, got 'a'",
                 id="gd-record-every-str"),
    pytest.param(lambda: solve_gd(Y, 4, tol=float("nan")), ValueError, r"tol must be >= 0\.0 and finite, got nan",
                 id="gd-tol-nan"),
    pytest.param(lambda: solve_gd(Y, 4, seed="a"), TypeError, r"seed must be an integer, got 'a'", id="gd-seed-str"),
    pytest.param(lambda: solve_gd(Y, 4, history_size=0), ValueError, r"history_size must be an integer >= 1, got 0",
                 id="gd-history-size"),
    pytest.param(lambda: solve_gd(Y, 4, batches=3), TypeError, r"batches must be None or a list .*got int 3", id="gd-batches-int"),
    pytest.param(lambda: steps_to_of(Y, 4, 6, False, 0, threshold="a"), TypeError, r"threshold must be a real number, got 'a'",
                 id="steps-to-of-threshold"),
    pytest.param(lambda: scl_gram_objective(np.eye(11), Y), ValueError, r"gram must be \(12, 12\) for 12 labels, got \(11, 11\)",
                 id="gram-objective-shape"),
]
if not torch.cuda.is_available():
    CASES.append(pytest.param(lambda: default_device("cuda:0"), ValueError,
                              r"device 'cuda:0' was asked for but CUDA is not available", id="device-cuda-absent"))


@pytest.mark.parametrize("call,error,match", CASES)
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_device_accepts_what_it_lists():
    assert default_device("cpu") == torch.device("cpu")
    assert default_device(torch.device("cpu")) == torch.device("cpu")
    assert default_device("auto").type in ("cpu", "cuda")
    assert default_device(None) == default_device("auto")


def test_temperature_min_is_the_documented_bound():
    assert TEMPERATURE_MIN == 1e-6
    assert solve_reduced(COUNTS, temperature=TEMPERATURE_MIN).geometry.verdict == "exact"


def test_a_conic_failure_names_the_temperature():
    """A solver failure (here an infeasible program) says at which temperature and what to try."""
    import cvxpy as cp

    x = cp.Variable()
    prob = cp.Problem(cp.Minimize(x), [x >= 1, x <= 0])
    with pytest.raises(SolverError, match=r"status infeasible \(temperature=1e-05: .*try a larger temperature"):
        solve_conic(prob, "CLARABEL", "a test program", temperature=1e-5)
    with pytest.raises(SolverError, match=r"status infeasible \(temperature=0\.1: [^;]*\)$"):  # no advice at 0.1
        solve_conic(prob, "CLARABEL", "a test program", temperature=0.1)


def test_gd_on_one_class_reports_no_delta_etf():
    """Convention (GDResult docstring): Delta_ETF compares classes, so a one-class run has None, never NaN."""
    res = solve_gd([0, 0, 0], 2, steps=2)
    assert res.delta_etf is None and res.history["delta_etf"] == [None] * len(res.history["step"])
    assert res.delta_of == 0.0
