"""Neural-collapse metrics against independent transcriptions of the three references' definitions.

The references (transcribed below, in float64, from what their code computes; not imported):
* the Colab code of Papyan, Han and Donoho (2020): class means M (d x C), the plain mean of the class means
  as global mean, Sw over all samples / N, Sb = M_ M_^T / C, Sw_invSb = tr(Sw Sb^-1) with Sb inverted on its
  top C-1 singular triplets (svds), norm CoVs with torch.std (ddof = 1), coherence = mean |cos + 1/(C-1)|,
  W_M_dist squared, NCC mismatch with the network's logits (bias included);
* tding1/Neural-Collapse: sample-weighted global mean, collapse metric tr(Sw pinv(Sb)) / K (scipy pinv),
  W-H relation of W M_ against the ETF, ETF metric of the uncentred W W^T, residual ||W mu_G + b||;
* rhubarbwu/neural-collapse: accumulators with the plain mean of the class means (``weighted=False``),
  covariance_ratio (pinv, quotient), CDNV over the upper triangle, simplex_etf_error, self_duality_error,
  similarities(...).var(), distance_norms (normalised with + eps), clf_ncc_agreement (no bias).

Each project metric must equal the reference it names to 1e-12 on fixed synthetic sets (balanced,
imbalanced, exactly collapsed, shifted, near-collapsed); the documented differences between them are
asserted too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg as scilin
import torch
from scipy.sparse.linalg import svds

from ufm.geometry import (
    ClassMoments,
    class_stats,
    delta_etf,
    nc3_distance_norms,
    nc4_ncc_mismatch,
    nc_metrics,
    simplex_etf,
)

TOL = 1e-12


# ----------------------------------------------------------------------------- fixed synthetic sets
def _make(name: str):
    """(features (N, d), labels (N,), W (K, d), b (K,)) of a named synthetic set."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name in ("balanced", "imbalanced"):
        k, d = (4, 8) if name == "balanced" else (5, 16)
        counts = [12] * k if name == "balanced" else [30, 20, 10, 5, 3]
        y = np.repeat(np.arange(k), counts)
        centres = rng.normal(size=(k, d)) * 2
        h = centres[y] + rng.normal(size=(y.size, d))
        return h, y, rng.normal(size=(k, d)), rng.normal(size=k)
    k, d = (3, 6) if name.startswith("collapsed") else (6, 12)
    counts = {"collapsed_balanced": [6, 6, 6], "collapsed_imbalanced": [20, 5, 2], "shifted": [20, 5, 2],
              "near_collapsed": [40, 40, 20, 10, 5, 2]}[name]
    if name == "shifted":
        k, d = 3, 6
    y = np.repeat(np.arange(k), counts)
    etf = 3.0 * simplex_etf(k, d, seed=1)  # (K, d) exactly collapsed class means, zero mean
    h = etf[y].copy()
    if name == "shifted":
        h += rng.normal(size=d) * 2  # a common offset of every feature
    if name == "near_collapsed":
        h += 1e-4 * rng.normal(size=h.shape)
    return h, y, etf / 3.0, np.zeros(k)


SETS = ["balanced", "imbalanced", "collapsed_balanced", "collapsed_imbalanced", "shifted", "near_collapsed"]


def _close(ours: float, ref: float) -> bool:
    return abs(ours - ref) <= TOL * max(1.0, abs(ref))


# ----------------------------------------------------------------------------- the Colab code
def colab_reference(h, y, W, b) -> dict:
    H, Y = torch.tensor(h, dtype=torch.float64), torch.tensor(y)
    Wt = torch.tensor(W, dtype=torch.float64)
    C = int(Y.max()) + 1
    N = [int((Y == c).sum()) for c in range(C)]
    M = torch.stack([H[Y == c].sum(0) / N[c] for c in range(C)]).T  # (d, C)
    Sw = sum(((H[Y == c] - M[:, c]).unsqueeze(-1) @ (H[Y == c] - M[:, c]).unsqueeze(1)).sum(0) for c in range(C)) / sum(N)
    net_pred = torch.argmax(H @ Wt.T + torch.tensor(b), dim=1)
    ncc_pred = torch.stack([torch.norm(H[i] - M.T, dim=1) for i in range(H.shape[0])]).argmin(1)
    mismatch = 1 - int((ncc_pred == net_pred).sum()) / sum(N)
    muG = M.mean(dim=1, keepdim=True)
    M_ = M - muG
    Sb = (M_ @ M_.T / C).numpy()
    M_norms, W_norms = torch.norm(M_, dim=0), torch.norm(Wt.T, dim=0)
    eigvec, eigval, _ = svds(Sb, k=C - 1, random_state=0)
    inv_Sb = eigvec @ np.diag(eigval ** (-1)) @ eigvec.T

    def coherence(V):
        G = V.T @ V + torch.ones(C, C, dtype=torch.float64) / (C - 1)
        G = G - torch.diag(torch.diag(G))
        return float(G.abs().sum()) / (C * (C - 1))

    return {"Sw_invSb": float(np.trace(Sw.numpy() @ inv_Sb)),
            "norm_M_CoV": float(torch.std(M_norms) / torch.mean(M_norms)),
            "norm_W_CoV": float(torch.std(W_norms) / torch.mean(W_norms)),
            "W_M_dist": float(torch.norm(Wt.T / torch.norm(Wt) - M_ / torch.norm(M_)) ** 2),
            "cos_M": coherence(M_ / M_norms), "cos_W": coherence(Wt.T / W_norms), "NCC_mismatch": mismatch}


# ----------------------------------------------------------------------------- tding1/Neural-Collapse
def tding1_reference(h, y, W, b) -> dict:
    K = int(y.max()) + 1
    mu_G = h.sum(0) / h.shape[0]
    mu_c = {c: h[y == c].sum(0) / (y == c).sum() for c in range(K)}
    Sigma_W = sum(np.outer(h[i] - mu_c[y[i]], h[i] - mu_c[y[i]]) for i in range(h.shape[0])) / h.shape[0]
    Sigma_B = sum(np.outer(mu_c[c] - mu_G, mu_c[c] - mu_G) for c in range(K)) / K
    sub = 1 / np.sqrt(K - 1) * (np.eye(K) - np.ones((K, K)) / K)
    Mcols = np.stack([mu_c[c] - mu_G for c in range(K)], axis=1)  # (d, K)
    WH = W @ Mcols
    WWT = W @ W.T
    return {"collapse_metric": float(np.trace(Sigma_W @ scilin.pinv(Sigma_B)) / K),
            "WH_relation_metric": float(np.linalg.norm(WH / np.linalg.norm(WH, "fro") - sub, "fro")),
            "ETF_metric": float(np.linalg.norm(WWT / np.linalg.norm(WWT, "fro") - sub, "fro")),
            "residual": float(np.linalg.norm(W @ mu_G + b))}


# ----------------------------------------------------------------------------- rhubarbwu/neural-collapse
def rhubarbwu_reference(h, y, W) -> dict:
    X, Y = torch.tensor(h, dtype=torch.float64), torch.tensor(y)
    Wt = torch.tensor(W, dtype=torch.float64)
    K = int(Y.max()) + 1
    onehot = (Y[:, None] == torch.arange(K)).to(torch.float64)  # (N, K)
    ns = onehot.sum(0)
    eps = torch.finfo(torch.float64).eps
    means = (onehot.T @ X) / (ns + eps)[:, None]  # MeanAccumulator.compute()
    mG = means.mean(dim=0)  # weighted=False
    diff = X - means[Y]
    V_intra = diff.T @ diff / (ns.sum() + eps)  # CovarAccumulator
    var_norms = (onehot.T @ diff**2).sum(-1) / (ns + eps)  # VarNormAccumulator
    Mc = means - mG
    V_inter = Mc.T @ Mc / K
    ideal_shift = 1 / K / math.sqrt(K - 1)

    def structure_error(A, B):
        s = B @ A.T
        s = s / torch.linalg.matrix_norm(s) + ideal_shift
        s = s - torch.eye(K, dtype=torch.float64) / math.sqrt(K - 1)
        return float(torch.linalg.matrix_norm(s))

    grid = ((var_norms[:, None] + var_norms[None, :]) / 2) / ((means[:, None] - means[None, :]) ** 2).sum(-1)
    iu = torch.triu_indices(K, K, offset=1)
    normalize = lambda v: v / (torch.linalg.norm(v, dim=-1, keepdim=True) + eps)
    ncc = ((X**2).sum(1)[:, None] + (means**2).sum(1)[None, :] - 2 * X @ means.T).argmin(1)
    agree = float(((X @ Wt.T).argmax(1) == ncc).to(torch.float64).sum() / ns.sum())
    return {"nc1_pinv": float(torch.trace(torch.linalg.pinv(V_inter) @ V_intra)) / K,
            "nc1_quot": float(torch.trace(V_intra) / torch.trace(V_inter)),
            "nc1_cdnv": float(grid[iu[0], iu[1]].mean()),
            "nc2_etf_err": structure_error(Mc, Mc), "nc3_dual_err": structure_error(Mc, Wt),
            "nc3u_uni_dual": float((Wt * Mc).sum(1).var()),
            "distance_norms": (normalize(Wt) - normalize(Mc)).norm(dim=-1).numpy(), "nc4_agree": agree}


# ----------------------------------------------------------------------------- the project against each
# project name -> the reference's name, and the centring the reference uses
MATCHES = {
    "colab": ("balanced", {"nc1_colab": "Sw_invSb", "nc2_equinorm": "norm_M_CoV", "nc2_equinorm_w": "norm_W_CoV",
                           "nc2_maxangle": "cos_M", "nc2_maxangle_w": "cos_W", "nc3_alignment": "W_M_dist",
                           "nc4_ncc_mismatch": "NCC_mismatch"}),
    "tding1": ("weighted", {"nc1": "collapse_metric", "nc3_self_duality": "WH_relation_metric", "nc2_etf_w": "ETF_metric",
                            "bias_residual": "residual"}),
    "rhubarbwu": ("balanced", {"nc1": "nc1_pinv", "nc1_quotient": "nc1_quot", "cdnv": "nc1_cdnv", "nc2_etf": "nc2_etf_err",
                               "nc3_self_duality": "nc3_dual_err", "nc3_duality_var": "nc3u_uni_dual"}),
}
REFERENCES = {"colab": colab_reference, "tding1": tding1_reference,
              "rhubarbwu": lambda h, y, W, b: rhubarbwu_reference(h, y, W)}


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("reference", list(MATCHES))
def test_metrics_equal_the_reference_they_name(name, reference):
    h, y, W, b = _make(name)
    centring, pairs = MATCHES[reference]
    ours, ref = nc_metrics(h, y, W, b, centring=centring), REFERENCES[reference](h, y, W, b)
    for project, theirs in pairs.items():
        assert _close(ours[project], ref[theirs]), (name, project, ours[project], ref[theirs])


@pytest.mark.parametrize("name", SETS)
def test_per_class_distances_and_the_agreement_equal_rhubarbwu(name):
    h, y, W, b = _make(name)
    ref, stats = rhubarbwu_reference(h, y, W), class_stats(h, y)
    assert np.allclose(nc3_distance_norms(W, stats), ref["distance_norms"], atol=TOL, rtol=0)
    assert _close(nc_metrics(h, y, W, b)["nc3_distance_mean"], float(ref["distance_norms"].mean()))
    assert _close(1 - nc4_ncc_mismatch(h, stats.means, W, bias=None), ref["nc4_agree"])


# ----------------------------------------------------------------------------- the documented differences
@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("centring", ["balanced", "weighted"])
def test_colab_trace_is_k_times_nc1(name, centring):
    """Either centring leaves one linear relation among the K centred means (sum_c mu~_c = 0, or
    sum_c n_c mu~_c = 0), so Sigma_B has rank K-1 and its top-(K-1) inverse is its pseudo-inverse."""
    h, y, W, b = _make(name)
    m = nc_metrics(h, y, W, b, centring)
    k = int(y.max()) + 1
    assert _close(m["nc1_colab"], k * m["nc1"])


def test_the_two_centrings_differ_under_imbalance_only():
    h, y, W, b = _make("collapsed_imbalanced")  # exactly collapsed simplex-ETF features, ETF classifier
    bal, wtd = nc_metrics(h, y, W, b, "balanced"), nc_metrics(h, y, W, b, "weighted")
    for key in ("nc2_etf", "nc2_equinorm", "nc2_maxangle", "nc3_self_duality", "nc3_alignment"):
        assert bal[key] < 1e-12, (key, bal[key])  # the collapsed ETF is recognised whatever the class sizes
    assert wtd["nc2_etf"] > 0.7 and wtd["nc2_equinorm"] > 0.5 and wtd["nc3_self_duality"] > 0.5  # 0.78, 0.55, 0.55
    h, y, W, b = _make("imbalanced")
    bal, wtd = nc_metrics(h, y, W, b, "balanced"), nc_metrics(h, y, W, b, "weighted")
    assert abs(bal["nc1"] - wtd["nc1"]) > 1e-3 * bal["nc1"] and abs(bal["nc2_etf"] - wtd["nc2_etf"]) > 1e-3
    h, y, W, b = _make("collapsed_balanced")
    bal, wtd = nc_metrics(h, y, W, b, "balanced"), nc_metrics(h, y, W, b, "weighted")
    assert all(_close(bal[key], wtd[key]) for key in bal)  # balanced data: one global mean


def test_nc3_alignment_is_the_square_of_the_distance():
    h, y, W, b = _make("imbalanced")
    stats = class_stats(h, y)
    mc = stats.means - stats.means.mean(0)
    dist = np.linalg.norm(W / np.linalg.norm(W) - mc / np.linalg.norm(mc))
    assert _close(nc_metrics(h, y, W, b)["nc3_alignment"], dist**2) and dist > 0.5


def test_delta_etf_depends_on_a_shift_and_nc2_etf_does_not():
    h, y, W, b = _make("collapsed_balanced")
    offset = np.full(h.shape[1], 1.5)
    assert delta_etf(h, y) < 1e-12 and delta_etf(h + offset, y) > 0.1  # normalising after a shift moves directions
    assert nc_metrics(h + offset, y)["nc2_etf"] < 1e-12  # the raw centred means do not move
    shifted, plain = nc_metrics(*_make("shifted")[:2]), nc_metrics(*_make("collapsed_imbalanced")[:2])
    assert all(_close(shifted[k], plain[k]) for k in ("nc1", "nc2_etf", "nc2_equinorm", "cdnv"))


def test_collapse_is_zero_and_random_features_are_not():
    h, y, W, b = _make("collapsed_imbalanced")
    m = nc_metrics(h, y, W, b)
    assert m["nc1"] < 1e-20 and m["cdnv"] < 1e-20 and m["nc4_ncc_mismatch"] == 0.0 and m["bias_residual"] < 1e-12
    r = nc_metrics(*_make("imbalanced"))
    assert r["nc1"] > 0.01 and r["nc2_etf"] > 0.1 and r["cdnv"] > 0.01


# ----------------------------------------------------------------------------- streaming statistics
def test_streaming_moments_equal_the_in_memory_statistics():
    h, y, W, b = _make("imbalanced")
    whole = class_stats(h, y)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    acc = ClassMoments(5, h.shape[1])
    start = 0
    while start < len(y):  # batches of 1-7 samples: most batches miss most classes
        stop = start + int(rng.integers(1, 8))
        acc.update(torch.tensor(h[order[start:stop]]), y[order[start:stop]])
        start = stop
    s = acc.stats()
    assert np.array_equal(s.counts, whole.counts)
    for a, b_ in ((s.means, whole.means), (s.within_cov, whole.within_cov), (s.variances, whole.variances)):
        assert np.allclose(a, b_, rtol=1e-12, atol=1e-13)


def test_streaming_keeps_the_digits_of_a_nearly_collapsed_class():
    """Features far from the origin with tiny spread: the merge keeps Sigma_W exact where the one-pass
    ``sum h h^T - n mu mu^T`` cancels every digit."""
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 200)
    h = 1e4 + simplex_etf(3, 4, seed=0)[y] + 1e-6 * rng.normal(size=(600, 4))
    acc = ClassMoments(3, 4)
    for i in range(0, 600, 64):
        acc.update(h[i:i + 64], y[i:i + 64])
    exact = class_stats(h, y).within_cov  # two-pass on all the data
    # the data themselves carry |h| eps = 1e-12 of rounding against a spread of 1e-6: 1e-6 relative is exact
    assert np.linalg.norm(acc.stats().within_cov - exact) <= 1e-5 * np.linalg.norm(exact)
    one_pass = (h.T @ h - sum((y == c).sum() * np.outer(h[y == c].mean(0), h[y == c].mean(0)) for c in range(3))) / 600
    assert np.linalg.norm(one_pass - exact) > 1e3 * np.linalg.norm(exact)  # what the merge avoids


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_streaming_on_the_gpu_equals_the_cpu():
    h, y, W, b = _make("balanced")
    gpu = ClassMoments(4, h.shape[1]).update(torch.tensor(h, device="cuda"), y).stats()
    assert np.allclose(gpu.within_cov, class_stats(h, y).within_cov, rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_is_named():
    h, y, W, b = _make("balanced")
    with pytest.raises(ValueError, match="centring must be one of"):
        nc_metrics(h, y, centring="global")
    with pytest.raises(ValueError, match=r"classes \[3\] have no sample"):
        nc_metrics(h[y < 3], y[y < 3], num_classes=4)
    with pytest.raises(ValueError, match=r"weight must have shape \(K, d\) = \(4, 8\)"):
        nc_metrics(h, y, W[:3])
    with pytest.raises(ValueError, match="NaN or infinite"):
        ClassMoments(4, 8).update(np.full((2, 8), np.nan), [0, 1])
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        ClassMoments(1, 8)
    with pytest.raises(ValueError, match=r"features must have shape \(B, dim=8\)"):
        ClassMoments(4, 8).update(np.zeros((2, 7)), [0, 1])
    with pytest.raises(ValueError, match="no batch was added"):
        ClassMoments(4, 8).stats()


def test_undefined_metrics_are_none_with_a_reason_never_nan():
    """Early in training two class means can coincide (or span fewer than K-1 directions): the metrics that
    are undefined there are None and say why; the others are still computed."""
    y = np.repeat(np.arange(4), 5)
    h = np.zeros((20, 6))
    h[y == 1, 0] = 1.0  # classes 0, 2 and 3 share the mean 0: Sigma_B has rank 1 < K-1 = 3
    h += 1e-3 * np.random.default_rng(0).normal(size=h.shape)
    h[y == 2] = h[y == 3]  # classes 2 and 3: the same samples, the same mean
    m = nc_metrics(h, y, np.eye(4, 6), np.zeros(4))
    assert m["cdnv"] is None and "cdnv: two class means coincide" in m["nc_undefined"]
    assert m["nc1_colab"] is None and "nc1_colab: Sigma_B has fewer than K-1 directions" in m["nc_undefined"]
    assert m["nc1"] is not None and np.isfinite(m["nc1"]) and m["nc4_ncc_mismatch"] is not None
    assert not any(isinstance(v, float) and not np.isfinite(v) for v in m.values())


def test_equiangular_std_is_the_papers_std_of_cosines_and_zero_for_any_equiangular_set():
    """Papyan et al. (2020), equiangularity panel: Std over pairs c != c' of cos(mu~_c, mu~_c') (sample std)."""
    from ufm.geometry import equiangular_std, max_angle, orthogonal_frame

    h, y, W, b = _make("imbalanced")
    mc = class_stats(h, y).means - class_stats(h, y).means.mean(0)
    u = mc / np.linalg.norm(mc, axis=1, keepdims=True)
    cos = [u[i] @ u[j] for i in range(5) for j in range(i + 1, 5)]
    assert _close(nc_metrics(h, y)["nc2_equiangular_std"], float(np.std(cos, ddof=1)))
    frame = orthogonal_frame(4, 6)  # equiangular at 90 degrees: not the simplex ETF
    assert equiangular_std(frame) == 0.0 and _close(max_angle(frame), 1 / 3)


def test_nc2_etf_w_centred_is_the_centred_classifier_gram_and_ignores_a_common_offset():
    from ufm.geometry import gram_distance, nc2_etf_w, nc2_etf_w_centred

    h, y, W, b = _make("imbalanced")
    wc = W - W.mean(0)
    assert _close(nc2_etf_w_centred(W), gram_distance(wc @ wc.T, np.eye(5) - 1 / 5))  # the former delta_etf_w
    etf = simplex_etf(5, 8, seed=0) + 0.7  # a simplex ETF with every row shifted
    assert nc2_etf_w_centred(etf) < 1e-12 and nc2_etf_w(etf) > 0.5  # tding1's uncentred metric sees the shift


def test_equiangularity_of_two_classes_is_undefined_not_a_nan_with_a_warning():
    import warnings

    y = np.repeat([0, 1], 5)
    h = np.random.default_rng(0).standard_normal((10, 3)) + 3 * y[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = nc_metrics(h, y)
    assert out["nc2_equiangular_std"] is None and "nc2_equiangular_std: equiangularity needs at least 3 classes" in out["nc_undefined"]
