"""Per-epoch evaluation: features of the un-augmented training and test sets, accuracy, and the geometry
of the training features.

Definitions (h_i the features ``out.features`` of the model in eval mode, z_i = h_i / ||h_i||; class
means are over the TRAINING set as trained, i.e. after imbalance):

* ``delta_of``, ``delta_etf``: the SCL paper's metrics, :func:`ufm.geometry.delta_of` / ``delta_etf`` of the
  training features (uncentred / centred means of the normalised features; ``delta_etf`` is scale-free
  but moves with a common shift of the features, ``nc2_etf`` does not). A feature that is exactly zero
  (every unit of a ReLU embedding off) has no direction: it counts as the zero vector in its class mean,
  and ``zero_features`` reports the fraction of such training samples when there are any.
* The neural-collapse metrics of :mod:`ufm.geometry.neural_collapse` on the raw training features, with
  the global mean of ``config.nc_centring`` ("balanced" by default; stated in run.json): ``nc1``,
  ``nc1_colab``, ``nc1_quotient``, ``cdnv``, ``nc2_equinorm``, ``nc2_equiangular_std``, ``nc2_maxangle``,
  ``nc2_etf``, and when the loss trains the linear classifier (W, b) also ``nc2_*_w``, ``nc2_etf_w_centred``,
  ``nc3_alignment``, ``nc3_self_duality``, ``nc3_duality_var``, ``nc3_distance_mean``, ``nc4_ncc_mismatch``
  (training set) and ``bias_residual``. Each name, its definition and the reference it matches:
  theory/nc-metrics.md.
* ``ncc_acc``: TEST accuracy of the nearest class centre rule on the normalised features, centres = the
  class means of the normalised training features (not NC4, which is the training-set disagreement between
  the classifier and the nearest centre of the raw features: ``nc4_ncc_mismatch``).
* ``test_acc``, ``train_acc``: accuracy of the loss's scoring rule: ``loss.harness_predict`` scores when
  the loss gives them, else the logits when the objective trains the classifier, else the nearest
  class centre (contrastive losses); ``probe_acc`` (those losses): test accuracy of a multinomial
  logistic-regression probe trained on the normalised training features.
* Under imbalance (``minority``: the classes the imbalance made smaller): ``test_acc_minority`` / ``test_acc_majority``,
  ``cos_minority`` / ``cos_majority`` (mean pairwise cosine of the centred class means within each
  group), ``delta_seli`` (scale-free distance of the centred class-mean Gram to SELI's G_H for the
  training counts), and for a trained classifier ``cos_minority_w`` / ``cos_majority_w`` and
  ``delta_seli_w`` on the centred classifier rows (G_W), next to ``nc2_etf_w_centred``, their distance to
  the simplex ETF (the balanced prediction). SELI and minority collapse: see :mod:`ufm.geometry.seli`.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from ufm.geometry import (
    class_means,
    delta_etf_from_means,
    delta_of_from_means,
    gram_distance,
    nc_metrics,
    ncc_predict,
)
from ufm.geometry.seli import centred_gram, mean_pairwise_cosine, seli_grams

__all__ = ["extract", "linear_probe", "evaluate_geometry", "accuracy_metrics", "unit_rows"]


def _autocast(device: torch.device, amp):
    """The autocast context of ``amp``: a dtype (autocast in it on ``device``), True (float16 on CUDA,
    nothing elsewhere: the older boolean meaning), or False / None (full precision)."""
    if isinstance(amp, torch.dtype):
        return torch.autocast(device.type, dtype=amp)
    if amp is True and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


@torch.no_grad()
def extract(model, dataset, device: torch.device, loss=None, batch_size: int = 1024, amp=False):
    """Features (N, d) float64 numpy, logits (N, k) or None, loss scores (N, k) or None, labels (N,).

    ``amp``: an autocast dtype (``torch.float16`` / ``torch.bfloat16``), True (float16 on CUDA only) or
    False / None (full precision).

    The model is run in eval mode on the un-augmented, normalised inputs; ``loss.harness_predict`` is
    asked for scores when ``loss`` is given.
    """
    was_training = model.training
    model.eval()
    feats, logits, scores = [], [], []
    try:
        for s in range(0, len(dataset), batch_size):
            xb = dataset.to_input(dataset.x[s : s + batch_size].to(device))
            with _autocast(device, amp):
                out = model(xb)
            feats.append(out.features.float().cpu())
            if out.logits is not None:
                logits.append(out.logits.float().cpu())
            if loss is not None:
                sc = loss.harness_predict(out, model)
                if sc is not None:
                    scores.append(sc.float().cpu())
    finally:
        model.train(was_training)
    f = torch.cat(feats).double().numpy()
    if not np.all(np.isfinite(f)):
        raise ValueError("the model produced NaN or infinite features during evaluation (training diverged?)")
    lg = torch.cat(logits).double().numpy() if logits else None
    sc = torch.cat(scores).double().numpy() if scores else None
    return f, lg, sc, dataset.labels


def linear_probe(train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, num_classes: int,
                 weight_decay: float = 1e-4, max_iter: int = 100) -> np.ndarray:
    """Predictions of a multinomial logistic regression fitted by full-batch L-BFGS (float64, CPU,
    deterministic) on standardised training features with an L2 penalty ``weight_decay/2 ||W||^2``."""
    x = torch.as_tensor(train_z, dtype=torch.float64)
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-8)
    x = (x - mu) / sd
    y = torch.as_tensor(train_y, dtype=torch.long)
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        obj = torch.nn.functional.cross_entropy(x @ w + b, y) + 0.5 * weight_decay * (w * w).sum()
        obj.backward()
        return obj

    opt.step(closure)
    xt = (torch.as_tensor(test_z, dtype=torch.float64) - mu) / sd
    with torch.no_grad():
        return (xt @ w + b).argmax(1).numpy()


def unit_rows(features: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows scaled to unit norm; rows that are exactly zero (every unit of a ReLU embedding off) have no
    direction and stay zero. Returns the array and the number of such rows."""
    f = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    return f / np.where(zero[:, None], 1.0, norms), int(zero.sum())


def _acc(pred: np.ndarray, y: np.ndarray, classes=None) -> float:
    if classes is not None:
        mask = np.isin(y, classes)
        return float((pred[mask] == y[mask]).mean()) if mask.any() else float("nan")
    return float((pred == y).mean())


def evaluate_geometry(train_f: np.ndarray, train_y: np.ndarray, num_classes: int, weight=None, bias=None,
                      minority=None, nc_centring: str = "balanced") -> dict:
    """Geometry of the training features (module docstring); ``weight``/``bias`` the classifier when
    trained; ``minority`` the classes made minority by the imbalance (the imbalance metrics need it);
    ``nc_centring`` the global mean of the neural-collapse metrics."""
    counts = np.bincount(train_y, minlength=num_classes)
    if np.any(counts == 0):
        raise ValueError(f"classes {np.flatnonzero(counts == 0).tolist()} have no training sample")
    z, n_zero = unit_rows(train_f)
    zmeans = class_means(z, train_y, num_classes)
    out = {"delta_of": delta_of_from_means(zmeans), "delta_etf": delta_etf_from_means(zmeans)}
    if n_zero:
        out["zero_features"] = n_zero / len(train_y)
    out.update(nc_metrics(train_f, train_y, weight=weight, bias=bias, centring=nc_centring, num_classes=num_classes))
    minority = np.zeros(0, dtype=np.int64) if minority is None else np.asarray(minority, dtype=np.int64)
    if minority.size:
        majority = np.setdiff1d(np.arange(num_classes), minority)
        g = centred_gram(class_means(train_f, train_y, num_classes))
        g_h, g_w = seli_grams(counts)
        out["cos_minority"] = mean_pairwise_cosine(g, minority)
        out["cos_majority"] = mean_pairwise_cosine(g, majority)
        out["delta_seli"] = gram_distance(g, g_h)
        if weight is not None:
            gw = centred_gram(weight)
            out["cos_minority_w"] = mean_pairwise_cosine(gw, minority)
            out["cos_majority_w"] = mean_pairwise_cosine(gw, majority)
            out["delta_seli_w"] = gram_distance(gw, g_w)
    return out


def accuracy_metrics(scoring: str, train, test, num_classes: int, probe: bool, minority=None) -> dict:
    """Train / test accuracy by the scoring rule, ``ncc_acc`` and (optionally) ``probe_acc``.

    ``train``/``test``: the tuples returned by :func:`extract`. ``scoring``: "scores", "logits" or "ncc".
    """
    tr_f, tr_lg, tr_sc, tr_y = train
    te_f, te_lg, te_sc, te_y = test
    tr_z, te_z = unit_rows(tr_f)[0], unit_rows(te_f)[0]
    centres = class_means(tr_z, tr_y, num_classes)
    ncc_test = ncc_predict(te_z, centres)
    if scoring == "scores":
        tr_pred, te_pred = tr_sc.argmax(1), te_sc.argmax(1)
    elif scoring == "logits":
        tr_pred, te_pred = tr_lg.argmax(1), te_lg.argmax(1)
    elif scoring == "ncc":
        tr_pred, te_pred = ncc_predict(tr_z, centres), ncc_test
    else:
        raise ValueError(f"unknown scoring rule {scoring!r}")
    out = {"train_acc": _acc(tr_pred, tr_y), "test_acc": _acc(te_pred, te_y), "ncc_acc": _acc(ncc_test, te_y)}
    if minority is not None and len(minority):
        out["test_acc_minority"] = _acc(te_pred, te_y, np.asarray(minority))
        out["test_acc_majority"] = _acc(te_pred, te_y, np.setdiff1d(np.arange(num_classes), minority))
    if probe:
        out["probe_acc"] = _acc(linear_probe(tr_z, tr_y, te_z, num_classes), te_y)
    return out
