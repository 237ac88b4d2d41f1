"""Reference frames and geometry metrics: exact values on constructed geometries."""

import numpy as np
import pytest
import torch

from ufm.geometry import (
    class_means,
    delta_etf,
    delta_etf_from_means,
    delta_of,
    gram_distance,
    nc_metrics,
    orthogonal_frame,
    orthogonal_frame_gram,
    sample_gram,
    simplex_etf,
    simplex_etf_gram,
)


def collapsed(frame, counts, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    x = frame[y] + noise * rng.standard_normal((y.size, frame.shape[1]))
    return x, y


@pytest.mark.parametrize("k,d", [(2, 1), (3, 2), (5, 4), (10, 9), (10, 64)])
def test_simplex_etf_is_exact(k, d):
    e = simplex_etf(k, d, seed=3)
    assert e.shape == (k, d)
    np.testing.assert_allclose(e @ e.T, simplex_etf_gram(k), atol=1e-12)
    np.testing.assert_allclose(e.sum(0), 0, atol=1e-12)
    assert np.linalg.matrix_rank(e) == k - 1


def test_frames_need_enough_dimensions():
    with pytest.raises(ValueError, match="d >= k"):
        orthogonal_frame(5, 4)
    with pytest.raises(ValueError, match="k-1"):
        simplex_etf(5, 3)
    with pytest.raises(ValueError, match="k >= 2"):
        simplex_etf_gram(1)


def test_orthogonal_frame_rotation_keeps_gram():
    f = orthogonal_frame(4, 7, seed=1)
    np.testing.assert_allclose(f @ f.T, np.eye(4), atol=1e-12)
    assert np.all(orthogonal_frame(4, 7) >= 0)


@pytest.mark.parametrize("counts", [(5, 5, 5), (50, 5, 5, 1), (100, 10, 1)])
def test_delta_of_zero_on_orthogonal_frame_any_sizes(counts):
    k = len(counts)
    x, y = collapsed(3.0 * orthogonal_frame(k, k + 2, seed=0), counts)
    assert delta_of(x, y) < 1e-12
    # centring an orthogonal frame gives a simplex ETF, whatever the class sizes
    assert delta_etf(x, y) < 1e-12


def test_delta_of_positive_on_etf_and_matches_closed_form():
    k = 4
    x, y = collapsed(simplex_etf(k, 6, seed=0), (3, 3, 3, 3))
    # uncentred ETF means have Gram = ETF Gram; its distance to I/sqrt(k) in closed form
    g = simplex_etf_gram(k)
    expected = np.linalg.norm(g / np.linalg.norm(g) - np.eye(k) / np.sqrt(k))
    assert delta_of(x, y) == pytest.approx(expected, rel=1e-12)
    assert delta_etf(x, y) < 1e-12


def test_delta_of_scale_invariant_per_sample_and_accepts_torch():
    x, y = collapsed(orthogonal_frame(3, 5, seed=2), (4, 4, 4), noise=0.1)
    scales = np.linspace(0.5, 3, x.shape[0])[:, None]
    assert delta_of(x * scales, y) == pytest.approx(delta_of(x, y), rel=1e-12)
    assert delta_of(torch.tensor(x), torch.tensor(y)) == pytest.approx(delta_of(x, y), rel=1e-12)


def test_metrics_reject_bad_input():
    x, y = collapsed(orthogonal_frame(3, 5), (2, 2, 2))
    with pytest.raises(ValueError, match="length"):
        delta_of(x, y[:-1])
    x_nan = x.copy()
    x_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        delta_of(x_nan, y)
    with pytest.raises(ValueError, match="zero norm"):
        delta_of(np.zeros_like(x), y)
    with pytest.raises(ValueError, match="integers"):
        delta_of(x, y.astype(float) + 0.5)
    with pytest.raises(ValueError, match="no sample"):
        class_means(x, y, num_classes=4)
    with pytest.raises(ValueError, match="shape"):
        delta_of(x[None], y)


def test_gram_distance_and_sample_gram():
    y = np.array([0, 0, 1, 2])
    g = orthogonal_frame_gram(y)
    assert gram_distance(5 * g, g) < 1e-15
    np.testing.assert_array_equal(sample_gram(y, np.eye(3)), g)
    assert gram_distance(g, np.eye(4)) > 0.1
    with pytest.raises(ValueError, match="shapes"):
        gram_distance(g, np.eye(3))


def test_nc_metrics_on_collapse_and_self_duality():
    k = 4
    frame = simplex_etf(k, 8, seed=0)
    x, y = collapsed(frame, (6, 6, 6, 6), noise=1e-6, seed=1)
    nc = nc_metrics(x, y, weight=frame, bias=np.zeros(k))
    assert nc["nc1"] < 1e-9
    assert nc["nc2_equinorm"] < 1e-5 and nc["nc2_equiangular_std"] < 1e-5 and nc["nc2_etf"] < 1e-5
    assert nc["nc3_alignment"] < 1e-5 and nc["nc3_self_duality"] < 1e-5 and nc["nc4_ncc_mismatch"] == 0.0
    # noisy features: NC1 grows like noise^2 / separation^2
    x2, _ = collapsed(frame, (6, 6, 6, 6), noise=0.3, seed=1)
    assert nc_metrics(x2, y)["nc1"] > 1e-2


def test_delta_etf_from_means_detects_imbalance_geometry():
    # means of unequal norms are not an ETF after centring
    m = np.diag([1.0, 1.0, 0.2])
    assert delta_etf_from_means(m) > 0.1
