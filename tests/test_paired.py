"""Tests of the paired bootstrap (vit1d.probing.paired) against independent references: scipy's
bootstrap, a plain scikit-learn loop, and cases whose bootstrap distribution is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from vit1d.probing.paired import (
    PairedDifference,
    paired_bootstrap,
    paired_bootstrap_tagging,
    resample_indices,
    unpaired_normal_interval,
)
from vit1d.probing.results import bootstrap_ci

N_REF = 20_000  # resamples of the comparisons with scipy
TOL = 0.05  # Monte-Carlo tolerance on interval ends, as a fraction of the half-width


def _skewed_pair(n: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Correlated, right-skewed scores, so that BCa and percentile intervals differ."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(0.0, 1.0, n)
    return base + rng.lognormal(-1.0, 1.2, n), base + rng.normal(0.0, 0.2, n)


def _scipy_ci(data: tuple, statistic, method: str) -> tuple[float, float]:
    res = stats.bootstrap(
        data,
        statistic,
        paired=True,
        vectorized=True,
        method=method,
        n_resamples=N_REF,
        confidence_level=0.95,
        random_state=np.random.default_rng(12345),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _mean_diff(x, y, axis):
    return x.mean(axis) - y.mean(axis)


def _weighted_diff(x, y, w, axis):
    return (x * w).sum(axis) / w.sum(axis) - (y * w).sum(axis) / w.sum(axis)


# ------------------------------------------------------------------------ against scipy


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_matches_scipy_unweighted(method: str) -> None:
    a, b = _skewed_pair()
    ref_lo, ref_hi = _scipy_ci((a, b), _mean_diff, "BCa" if method == "bca" else method)
    res = paired_bootstrap(a, b, n_boot=N_REF, seed=3, method=method)
    assert res.diff == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    assert res.method == method and res.n_items == 300 and res.n_seeds == 1
    assert abs(res.ci_low - ref_lo) < TOL * res.half_width
    assert abs(res.ci_high - ref_hi) < TOL * res.half_width
    if method == "bca":  # the data are skewed enough for the test to tell BCa from percentile
        pct_lo, pct_hi = _scipy_ci((a, b), _mean_diff, "percentile")
        assert max(abs(ref_lo - pct_lo), abs(ref_hi - pct_hi)) > 2 * TOL * res.half_width


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_matches_scipy_weighted(method: str) -> None:
    a, b = _skewed_pair(n=200, seed=2)
    w = np.random.default_rng(7).integers(0, 6, size=200).astype(float)  # zeros included
    ref_lo, ref_hi = _scipy_ci((a, b, w), _weighted_diff, "BCa" if method == "bca" else method)
    res = paired_bootstrap(a, b, weights=w, n_boot=N_REF, seed=4, method=method)
    assert res.diff == pytest.approx((a - b) @ w / w.sum(), abs=1e-12)
    assert abs(res.ci_low - ref_lo) < TOL * res.half_width
    assert abs(res.ci_high - ref_hi) < TOL * res.half_width


# ------------------------------------------------------------------------ tagging


def _tagging_case(s_a: int, s_b: int, n: int = 40, k: int = 5):
    rng = np.random.default_rng(0)
    y = (rng.random((n, k)) < [0.5, 0.3, 0.2, 0.4, 0.0]).astype(int)
    y[:2, 4] = 1  # a rare tag: absent from some resamples, which then skip it
    y[-1, :] = 0  # every tag has a negative
    y[0, :] = 1  # and a positive
    scores_a = [y * 1.0 + rng.normal(0, 0.8, (n, k)) for _ in range(s_a)]
    scores_b = [y * 0.6 + rng.normal(0, 0.8, (n, k)) for _ in range(s_b)]
    return y, scores_a, scores_b


def _reference_tagging(y, scores_a, scores_b, n_boot, seed):
    """Plain loop with the module's documented draw order: item indices, then seed indices
    (one set when both sides have the same number of seeds, else a's then b's)."""
    n = y.shape[0]
    rng = np.random.default_rng(seed)
    idx = resample_indices(n, n_boot, rng)
    ia = rng.integers(0, len(scores_a), size=(n_boot, len(scores_a)))
    ib = (
        ia
        if len(scores_a) == len(scores_b)
        else rng.integers(0, len(scores_b), (n_boot, len(scores_b)))
    )

    def macros(fn, yt, mats):
        """Macro score of each matrix in ``mats`` on the resample: one scikit-learn call
        on the kept tags of all matrices side by side (per-column scores)."""
        pos = yt.sum(axis=0)
        keep = (pos > 0) & (pos < yt.shape[0])
        per_tag = fn(
            np.tile(yt[:, keep], len(mats)), np.hstack([m[:, keep] for m in mats]), average=None
        )
        return per_tag.reshape(len(mats), -1).mean(axis=1)

    out = {}
    for name, fn in (("roc_auc", roc_auc_score), ("map", average_precision_score)):
        point = np.mean([fn(y, s, average="macro") for s in scores_a]) - np.mean(
            [fn(y, s, average="macro") for s in scores_b]
        )
        reps = []
        for r in range(n_boot):  # only the seeds drawn in this replicate are scored
            ua, ub = np.unique(ia[r]), np.unique(ib[r])
            mats = [scores_a[j][idx[r]] for j in ua] + [scores_b[j][idx[r]] for j in ub]
            m = macros(fn, y[idx[r]], mats)
            ma, mb = np.full(len(scores_a), np.nan), np.full(len(scores_b), np.nan)
            ma[ua], mb[ub] = m[: len(ua)], m[len(ua) :]
            reps.append(ma[ia[r]].mean() - mb[ib[r]].mean())
        out[name] = (point, *np.percentile(reps, [2.5, 97.5]))
    return out


@pytest.mark.parametrize(("s_a", "s_b", "n_boot"), [(2, 2, 50), (2, 3, 12)])
def test_tagging_matches_sklearn_loop(s_a: int, s_b: int, n_boot: int) -> None:
    # vit1d.probing.results.resampled_tag_scores divides in float32: per-tag scores agree with
    # scikit-learn to ~1e-7, not 1e-9 (a wrong draw or average would differ by ~1e-2)
    y, scores_a, scores_b = _tagging_case(s_a, s_b)
    res = paired_bootstrap_tagging(y, scores_a, scores_b, n_boot=n_boot, seed=11)
    ref = _reference_tagging(y, scores_a, scores_b, n_boot=n_boot, seed=11)
    assert set(res) == {"roc_auc", "map"}
    for name, (point, lo, hi) in ref.items():
        r = res[name]
        assert (r.diff, r.ci_low, r.ci_high) == pytest.approx((point, lo, hi), abs=1e-6)
        assert r.n_items == 40 and r.n_seeds == s_a and r.n_boot == n_boot
        assert r.method == "percentile" and r.ci_low < r.ci_high


def test_tagging_errors() -> None:
    y, scores_a, scores_b = _tagging_case(2, 2)
    with pytest.raises(ValueError, match=r"\(39, 5\).*\(40, 5\)"):
        paired_bootstrap_tagging(y, scores_a, [s[:-1] for s in scores_b], n_boot=5)
    with pytest.raises(NotImplementedError):
        paired_bootstrap_tagging(y, scores_a, scores_b, n_boot=5, method="bca")


# ------------------------------------------------------------------------ pairing and seeds


def test_paired_narrower_than_unpaired_on_correlated_scores() -> None:
    rng = np.random.default_rng(5)
    n, true_diff = 500, -0.02
    a = rng.normal(0.6, 0.25, n)  # large item-to-item variance
    b = a + 0.02 + rng.normal(0.0, 0.01, n)  # shared difficulty, small own noise
    paired = paired_bootstrap(a, b, n_boot=2000, seed=0)
    unpaired = unpaired_normal_interval(a, b, n_boot=2000, seed=0)
    assert paired.diff == pytest.approx(unpaired.diff, abs=1e-12)
    assert paired.ci_low < true_diff < paired.ci_high
    assert unpaired.ci_low < true_diff < unpaired.ci_high
    assert paired.half_width < 0.1 * unpaired.half_width
    assert unpaired.method == "unpaired-normal"


def test_unpaired_normal_combines_each_sides_interval() -> None:
    rng = np.random.default_rng(8)
    a, b, w = rng.random((3, 60)), rng.random((2, 60)), rng.random(60)
    ma, lo_a, hi_a = bootstrap_ci(a, w, n_boot=500, seed=1)
    mb, lo_b, hi_b = bootstrap_ci(b, w, n_boot=500, seed=1)
    half = np.sqrt(((hi_a - lo_a) / 2) ** 2 + ((hi_b - lo_b) / 2) ** 2)  # z cancels
    res = unpaired_normal_interval(a, b, weights=w, n_boot=500, seed=1)
    assert (res.diff, res.ci_low, res.ci_high) == pytest.approx(
        (ma - mb, ma - mb - half, ma - mb + half), abs=1e-12
    )
    assert res.n_seeds == 3


def test_seed_resampling_distribution_is_known() -> None:
    # Scores constant within a seed: item resampling changes nothing, the replicate is the
    # mean of two seeds drawn from {0, 1}: 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4.
    a = np.repeat([[0.0], [1.0]], 30, axis=1)
    b = np.zeros((1, 30))
    res = paired_bootstrap(a, b, n_boot=2000, seed=0)
    assert (res.diff, res.ci_low, res.ci_high) == pytest.approx((0.5, 0.0, 1.0))
    # Same number of seeds: one set of seed indices for both sides, so a constant offset
    # between seed s of a and seed s of b leaves no spread at all.
    res = paired_bootstrap(a, a + 0.1, n_boot=2000, seed=0)
    assert (res.diff, res.ci_low, res.ci_high) == pytest.approx((-0.1, -0.1, -0.1))
    # Different numbers of seeds: drawn separately, the spread comes back.
    b3 = np.repeat([[0.1], [1.1], [0.6]], 30, axis=1)
    assert paired_bootstrap(a, b3, n_boot=2000, seed=0).half_width > 0.3


def test_identical_seeds_match_one_seed() -> None:
    a, b = _skewed_pair(n=200, seed=9)
    one = paired_bootstrap(a, b, n_boot=8000, seed=1)
    three = paired_bootstrap(np.tile(a, (3, 1)), np.tile(b, (3, 1)), n_boot=8000, seed=2)
    assert three.diff == pytest.approx(one.diff, abs=1e-12)
    assert abs(three.ci_low - one.ci_low) < 0.1 * one.half_width
    assert abs(three.ci_high - one.ci_high) < 0.1 * one.half_width
    assert three.n_seeds == 3


# ------------------------------------------------------------------------ weights, edges


def test_weighted_point_estimate() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random((2, 25)), rng.random((3, 25))
    w = rng.integers(1, 5, size=25)
    res = paired_bootstrap(a, b, weights=w, n_boot=10)
    expect = np.mean(a @ w / w.sum()) - np.mean(b @ w / w.sum())
    assert res.diff == pytest.approx(expect, abs=1e-12)
    # Integer weights: the point estimate of the data with item i repeated w_i times
    rep = paired_bootstrap(np.repeat(a, w, axis=1), np.repeat(b, w, axis=1), n_boot=10)
    assert rep.diff == pytest.approx(expect, abs=1e-12)
    # Zero-weight items with arbitrary scores leave the point estimate unchanged
    a0 = np.concatenate([a, rng.random((2, 7)) * 100], axis=1)
    b0 = np.concatenate([b, -rng.random((3, 7)) * 100], axis=1)
    w0 = np.concatenate([w, np.zeros(7)])
    assert paired_bootstrap(a0, b0, weights=w0, n_boot=10).diff == pytest.approx(expect, abs=1e-12)


def test_same_seed_same_result() -> None:
    a, b = _skewed_pair(n=50, seed=4)
    r1 = paired_bootstrap(a, b, n_boot=300, seed=7, method="bca")
    assert r1 == paired_bootstrap(a, b, n_boot=300, seed=7, method="bca")
    assert r1 != paired_bootstrap(a, b, n_boot=300, seed=8, method="bca")
    assert isinstance(r1, PairedDifference)
    assert r1.half_width == pytest.approx((r1.ci_high - r1.ci_low) / 2)


def test_resample_indices() -> None:
    idx = resample_indices(7, 1000, np.random.default_rng(0))
    assert idx.shape == (1000, 7) and idx.min() == 0 and idx.max() == 6
    assert resample_indices(0, 4, np.random.default_rng(0)).shape == (4, 0)


def test_empty_items_give_nans() -> None:
    res = paired_bootstrap(np.zeros((2, 0)), np.zeros((2, 0)), n_boot=10)
    assert np.isnan([res.diff, res.ci_low, res.ci_high]).all() and res.n_items == 0


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\(2, 10\).*\(2, 9\)"):
        paired_bootstrap(np.zeros((2, 10)), np.zeros((2, 9)))
    with pytest.raises(ValueError, match=r"weights \(9,\).*10 items"):
        paired_bootstrap(np.zeros(10), np.zeros(10), weights=np.ones(9))
    with pytest.raises(ValueError, match=r"\(1, 10\).*\(1, 9\)"):
        unpaired_normal_interval(np.zeros(10), np.zeros(9))
    with pytest.raises(ValueError, match=r"weights \(9,\)"):
        unpaired_normal_interval(np.zeros(10), np.zeros(10), weights=np.ones(9))
    with pytest.raises(ValueError, match="method"):
        paired_bootstrap(np.zeros(10), np.zeros(10), method="basic")
