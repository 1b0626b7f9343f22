"""Paired bootstrap intervals of the difference between two models scored on the same test set.

**Statistic.** A probe seed ``s`` gives item ``i`` (a clip, or a track weighted by its
duration ``w_i``) the score ``x_si``; a model's metric is the mean over its ``S`` seeds of the
weighted item mean, ``m = (1/S) sum_s sum_i w_i x_si / sum_i w_i``, and a comparison is
``d = m(a) - m(b)`` with both models scored on the same ``N`` items in the same order.

**Resampling.** Each replicate draws ``N`` item indices with replacement, the *same* indices for
both sides (paired: an item that is hard for one model is usually hard for the other, and the
pairing cancels that shared variance), and recomputes ``d``. Seeds are resampled too: one set of
``S`` seed indices for both sides when they have the same number of seeds (seed ``s`` of both
models shares its probe initialisation), else one set per side. Tagging's macro ROC-AUC and AP
do not decompose over clips, so each replicate recomputes them on the resampled clips from one
multiplicity matrix shared by both sides (:func:`vit1d.probing.results.resampled_tag_scores`).

**Draw order** (so that a loop can reproduce it): ``rng = np.random.default_rng(seed)``; per
chunk of ``c = max(1, CHUNK // N)`` replicates (all of them when ``n_boot <= c``; tagging uses
one chunk), first ``resample_indices(N, c, rng)``, then ``rng.integers(0, S, (c, S))`` for
shared seeds, or ``rng.integers(0, S_a, (c, S_a))`` then ``rng.integers(0, S_b, (c, S_b))``.

**Intervals.** With replicates ``d*_1..d*_B`` and ``alpha = (1 - level) / 2``:

* percentile: the ``alpha`` and ``1 - alpha`` quantiles of ``d*`` (linear interpolation);
* BCa (Efron 1987, JASA 82:171; DiCiccio & Efron 1996, Stat. Sci. 11:189): the quantiles
  ``Phi(z0 + (z0 + z_q) / (1 - a (z0 + z_q)))`` for ``z_q = Phi^-1(alpha), Phi^-1(1 - alpha)``,
  with bias correction ``z0 = Phi^-1((#{d* < d} + #{d* <= d}) / 2B)`` (the fraction clipped to
  ``[1/2B, 1 - 1/2B]``) and acceleration from the jackknife over items,
  ``a = sum_i u_i^3 / (6 (sum_i u_i^2)^(3/2))``, ``u_i = mean_j d_(j) - d_(i)``, where ``d_(i)``
  leaves item ``i`` out (both sides, all seeds). This is ``scipy.stats.bootstrap``'s BCa.

:func:`unpaired_normal_interval` is the older comparison of :mod:`vit1d.ledger.claims`: each side's
own percentile interval (:func:`vit1d.probing.results.bootstrap_ci`), combined as
``d +- z sqrt(se_a^2 + se_b^2)`` with ``se = (high - low) / 2z``; it ignores the pairing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from vit1d.probing.metrics import tagging_scores
from vit1d.probing.results import bootstrap_ci, resampled_tag_scores

#: Index entries per chunk of replicates (bounds memory to a few tens of MB).
CHUNK = 1_000_000
_NAN = float("nan")


@dataclass(frozen=True)
class PairedDifference:
    """A difference ``metric(a) - metric(b)`` and its bootstrap interval."""

    diff: float  # point estimate on all items (mean over seeds)
    ci_low: float
    ci_high: float
    n_items: int
    n_seeds: int  # seeds of side a
    n_boot: int
    method: str  # "percentile", "bca" or "unpaired-normal"

    @property
    def half_width(self) -> float:
        """Half the interval's width."""
        return (self.ci_high - self.ci_low) / 2.0


def resample_indices(n_items: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n_items)`` item indices drawn with replacement."""
    if n_items == 0:
        return np.empty((n_boot, 0), dtype=np.int64)
    return rng.integers(0, n_items, size=(n_boot, n_items))


def _counts(idx: np.ndarray, n_items: int) -> np.ndarray:
    """Multiplicity of each item in each resample, ``(B, N)`` floats."""
    b = idx.shape[0]
    flat = (idx + n_items * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n_items).reshape(b, n_items).astype(float)


def _seed_draws(rng: np.random.Generator, b: int, s_a: int, s_b: int):
    """Seed indices of both sides for ``b`` replicates (shared when ``s_a == s_b``)."""
    ia = rng.integers(0, s_a, size=(b, s_a))
    return (ia, ia) if s_a == s_b else (ia, rng.integers(0, s_b, size=(b, s_b)))


def _as_pair(a, b, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``a``, ``b`` as ``(seeds, items)`` float arrays and the weights (default 1), checked."""
    a, b = (np.asarray(x, dtype=float) for x in (a, b))
    a, b = (x[None, :] if x.ndim == 1 else x for x in (a, b))
    if a.ndim != 2 or b.ndim != 2 or not a.shape[0] or not b.shape[0]:
        raise ValueError(f"a {a.shape} and b {b.shape} must be (seeds, items), seeds >= 1")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a {a.shape} and b {b.shape} must score the same number of items")
    n = a.shape[1]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (n,):
        raise ValueError(f"weights {w.shape} do not match the {n} items of a {a.shape}")
    return a, b, w


def _interval(
    stats: np.ndarray, point: float, level: float, method: str, jack: np.ndarray | None = None
) -> tuple[float, float]:
    """Percentile or BCa ends from replicates ``stats`` (NaN replicates dropped)."""
    stats = stats[np.isfinite(stats)]
    if stats.size == 0 or not np.isfinite(point):
        return _NAN, _NAN
    alpha = (1.0 - level) / 2.0
    q = np.array([alpha, 1.0 - alpha])
    if method == "bca":
        n = stats.size
        frac = (np.count_nonzero(stats < point) + np.count_nonzero(stats <= point)) / (2 * n)
        z0 = ndtri(np.clip(frac, 1 / (2 * n), 1 - 1 / (2 * n)))
        u = jack[np.isfinite(jack)] if jack is not None else np.zeros(0)
        u = u.mean() - u if u.size else u
        den = 6.0 * np.sum(u**2) ** 1.5
        acc = float(np.sum(u**3) / den) if den > 0 else 0.0
        zq = z0 + ndtri(q)
        q = ndtr(z0 + zq / (1.0 - acc * zq))
    elif method != "percentile":
        raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")
    lo, hi = np.quantile(stats, q)
    return float(lo), float(hi)


def _jackknife(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(N,)`` statistic of one side with item ``i`` left out (NaN when nothing is left)."""
    total, wsum = x @ w, w.sum()
    rest = wsum - w
    with np.errstate(divide="ignore", invalid="ignore"):
        vals = (total[:, None] - x * w[None, :]) / np.where(rest > 0, rest, np.nan)
    return vals.mean(axis=0)


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    weights: np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
) -> PairedDifference:
    """``metric(a) - metric(b)`` with a paired bootstrap interval (percentile or BCa).

    ``a`` ``(S_a, N)`` and ``b`` ``(S_b, N)``: per-seed per-item scores on the same items in
    the same order (1-D: one seed); ``weights`` ``(N,)`` (default 1). NaNs when ``N == 0``.
    """
    a, b, w = _as_pair(a, b, weights)
    (s_a, n), s_b = a.shape, b.shape[0]
    if method not in ("percentile", "bca"):
        raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")
    if n == 0 or w.sum() <= 0:
        return PairedDifference(_NAN, _NAN, _NAN, n, s_a, n_boot, method)
    point = float(np.mean(a @ w) / w.sum() - np.mean(b @ w) / w.sum())
    if n_boot <= 0:
        return PairedDifference(point, _NAN, _NAN, n, s_a, n_boot, method)
    rng = np.random.default_rng(seed)
    wa, wb = (a * w).T, (b * w).T  # (N, S): weighted scores
    stats = np.empty(n_boot)
    chunk = max(1, CHUNK // n)
    for start in range(0, n_boot, chunk):
        c = min(chunk, n_boot - start)
        counts = _counts(resample_indices(n, c, rng), n)
        ia, ib = _seed_draws(rng, c, s_a, s_b)
        total = counts @ w
        total[total <= 0] = np.nan  # only zero-weight items drawn: no statistic
        rows = np.arange(c)[:, None]
        ma = (counts @ wa / total[:, None])[rows, ia].mean(axis=1)
        mb = (counts @ wb / total[:, None])[rows, ib].mean(axis=1)
        stats[start : start + c] = ma - mb
    jack = _jackknife(a, w) - _jackknife(b, w) if method == "bca" else None
    lo, hi = _interval(stats, point, level, method, jack)
    return PairedDifference(point, lo, hi, n, s_a, n_boot, method)


def _macro(per_tag: np.ndarray) -> np.ndarray:
    """Mean over the defined (finite) tags of each row; NaN when none is defined."""
    ok = np.isfinite(per_tag)
    n = ok.sum(axis=1)
    return np.where(n > 0, np.where(ok, per_tag, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)


def paired_bootstrap_tagging(
    y_true: np.ndarray,
    scores_a: Sequence[np.ndarray],
    scores_b: Sequence[np.ndarray],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
) -> dict[str, PairedDifference]:
    """Differences of macro ROC-AUC and macro AP with a paired bootstrap over clips.

    ``y_true`` ``(N, K)`` multi-hot; ``scores_a``, ``scores_b``: one ``(N, K)`` matrix per
    seed. The point estimate is the difference of the mean over seeds of scikit-learn's macro
    scores on all clips (:func:`vit1d.probing.metrics.tagging_scores`); each replicate averages, per
    seed, the tags defined in its resample (as :func:`vit1d.probing.results.bootstrap_tagging`).
    Returns ``{"roc_auc": ..., "map": ...}``. Only the percentile method is implemented.
    """

    if method != "percentile":
        raise NotImplementedError(f"tagging supports method='percentile' only, got {method!r}")
    y_true = np.asarray(y_true)
    sa = [np.asarray(s, dtype=float) for s in scores_a]
    sb = [np.asarray(s, dtype=float) for s in scores_b]
    if not sa or not sb:
        raise ValueError(f"need at least one seed per side, got {len(sa)} and {len(sb)}")
    for name, mats in (("scores_a", sa), ("scores_b", sb)):
        for s in mats:
            if s.shape != y_true.shape:
                raise ValueError(f"{name} matrix {s.shape} does not match y_true {y_true.shape}")
    n, n_b = y_true.shape[0], max(n_boot, 0)
    if n == 0:
        empty = PairedDifference(_NAN, _NAN, _NAN, 0, len(sa), n_boot, method)
        return {"roc_auc": empty, "map": empty}
    full = [[tagging_scores(y_true, s) for s in side] for side in (sa, sb)]
    rng = np.random.default_rng(seed)
    counts = _counts(resample_indices(n, n_b, rng), n)  # one matrix for both sides
    ia, ib = _seed_draws(rng, n_b, len(sa), len(sb))
    per = [[resampled_tag_scores(y_true, s, counts) for s in side] for side in (sa, sb)]
    rows = np.arange(n_b)[:, None]
    out = {}
    for m, name in enumerate(("roc_auc", "map")):
        pa, pb = ([v[name].mean() if v[name].size else _NAN for v in f] for f in full)
        d = float(np.mean(pa) - np.mean(pb))
        mac_a, mac_b = (np.stack([_macro(p[m]) for p in side], axis=1) for side in per)
        stats = mac_a[rows, ia].mean(axis=1) - mac_b[rows, ib].mean(axis=1)
        lo, hi = _interval(stats, d, level, method)
        out[name] = PairedDifference(d, lo, hi, n, len(sa), n_boot, method)
    return out


def unpaired_normal_interval(
    a: np.ndarray,
    b: np.ndarray,
    weights: np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """The unpaired comparison: each side's percentile interval
    (:func:`vit1d.probing.results.bootstrap_ci`, both with ``seed``), combined by the normal
    approximation ``d +- z sqrt(se_a^2 + se_b^2)``, ``se = (high - low) / 2z``."""

    a, b, _ = _as_pair(a, b, weights)
    ma, lo_a, hi_a = bootstrap_ci(a, weights, n_boot=n_boot, level=level, seed=seed)
    mb, lo_b, hi_b = bootstrap_ci(b, weights, n_boot=n_boot, level=level, seed=seed)
    z = float(ndtri(1.0 - (1.0 - level) / 2.0))
    half = z * np.hypot((hi_a - lo_a) / (2 * z), (hi_b - lo_b) / (2 * z))
    d = ma - mb
    n, s_a = a.shape[1], a.shape[0]
    return PairedDifference(d, float(d - half), float(d + half), n, s_a, n_boot, "unpaired-normal")
