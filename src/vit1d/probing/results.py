"""Probe results on disk: one tidy CSV, a summary with bootstrap CIs, and run provenance.

Files in a results folder (every later figure and verdict reads these, never typed numbers):

* ``probes.csv``: one row per (model, checkpoint, corpus, task, layer, pooling, seed, split,
  metric) with its ``value``; also ``step`` (training step of the checkpoint; 0 for random
  init, empty for log-mel), ``n`` (test units), ``precision`` and ``run_id``.
* ``probes_summary.csv``: per (model, checkpoint, corpus, task, layer, pooling, split, metric)
  the mean over seeds, a 95 % bootstrap confidence interval (``ci_low``, ``ci_high``), the
  standard deviation over seeds, the number of seeds and of units, and the unit resampled.
* ``probes_runs.json``: ``run_id`` -> provenance (models and weight hashes, corpus manifests
  and hashes, hardware, precision, seeds, probe settings, library versions, timings).

A run replaces the rows of the (model, checkpoint, corpus, task, layer, pooling) it computed
and keeps every other row, so baselines, checkpoints and tasks can be probed separately.
Writes are atomic (temporary file, then rename). Each write reads the file, merges and
writes it back while holding :func:`results_lock` on the folder, so two runs writing one
results folder at once (two ``vit1d probe`` commands, say) keep the rows of both.

**Bootstrap.** The metric of a probe is a weighted mean over units (clips, or tracks weighted
by duration): ``m_s = sum_i w_i x_si / sum_i w_i`` for seed ``s``. The summary's point
estimate is the mean over seeds ``(1/S) sum_s m_s``; each bootstrap replicate resamples seeds
and units with replacement (units paired across seeds, since every seed is scored on the same
test set) and recomputes that statistic; the interval is the 2.5th and 97.5th percentiles of
1000 replicates. Tagging's macro ROC-AUC and AP do not decompose over clips, so each replicate
recomputes them on the resampled clips (:func:`bootstrap_tagging`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vit1d.core import atomic
from vit1d.probing.metrics import tagging_scores

try:
    import fcntl
except ImportError:  # Windows: no flock; writers in one process still take turns
    fcntl = None

COLUMNS = [
    "model",
    "checkpoint",
    "step",
    "corpus",
    "task",
    "layer",
    "pooling",
    "seed",
    "split",
    "metric",
    "value",
    "n",
    "precision",
    "run_id",
]
SUMMARY_COLUMNS = [
    "model",
    "checkpoint",
    "step",
    "corpus",
    "task",
    "layer",
    "pooling",
    "split",
    "metric",
    "mean",
    "ci_low",
    "ci_high",
    "std_seeds",
    "n_seeds",
    "n",
    "unit",
    "run_id",
]
#: Rows a new run replaces: same values of these columns.
REPLACE_KEY = ["model", "checkpoint", "corpus", "task", "layer", "pooling"]
PROBES_CSV = "probes.csv"
SUMMARY_CSV = "probes_summary.csv"
RUNS_JSON = "probes_runs.json"
#: The file in a results folder that writers lock (empty; safe to delete when no run writes).
LOCK_FILE = ".results.lock"


class _FolderLock:
    """One process's hold on a folder's lock file: the threads of the process take turns
    (``turn``), and the first to enter takes the inter-process ``flock``."""

    def __init__(self) -> None:
        self.turn = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_held: dict[str, _FolderLock] = {}
_held_guard = threading.Lock()


@contextlib.contextmanager
def results_lock(folder: str | Path) -> Iterator[None]:
    """Hold the results folder's lock (``fcntl.flock`` on :data:`LOCK_FILE`) for a
    read-merge-write of its files. Reentrant within a process, so the writers below can
    take it inside one another (an ``flock`` on a second descriptor would wait on itself)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    with _held_guard:
        lock = _held.setdefault(key, _FolderLock())
    with lock.turn:
        if lock.depth == 0:
            fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
            lock.fd = fd
        lock.depth += 1
        try:
            yield
        finally:
            lock.depth -= 1
            if lock.depth == 0 and lock.fd is not None:
                os.close(lock.fd)  # closing the descriptor releases the flock
                lock.fd = None


def bootstrap_ci(
    scores: np.ndarray,
    weights: np.ndarray | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean over seeds of the weighted unit mean, and its percentile bootstrap interval.

    ``scores`` ``(S, N)``: seed ``s``'s score on unit ``i``; ``weights`` ``(N,)`` (default 1).
    Returns ``(mean, low, high)``; NaNs when there are no units.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    n_seeds, n_units = scores.shape
    w = np.ones(n_units) if weights is None else np.asarray(weights, dtype=float)
    if n_units == 0 or w.sum() <= 0:
        return float("nan"), float("nan"), float("nan")
    point = float(np.mean(scores @ w / w.sum()))
    if n_boot <= 0:
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    chunk = max(1, 4_000_000 // max(1, n_seeds * n_units))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        s_idx = rng.integers(0, n_seeds, size=(b, n_seeds))
        u_idx = rng.integers(0, n_units, size=(b, n_units))
        ww = w[u_idx]  # (b, N)
        vals = scores[s_idx[:, :, None], u_idx[:, None, :]]  # (b, S, N)
        total = ww.sum(axis=1)
        total[total <= 0] = np.nan
        per_seed = (vals * ww[:, None, :]).sum(axis=2) / total[:, None]
        stats[start : start + b] = per_seed.mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(stats, [alpha, 1.0 - alpha])
    return point, float(lo), float(hi)


def resampled_tag_scores(
    y_true: np.ndarray, y_score: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-tag ROC-AUC and average precision of bootstrap resamples given as example
    multiplicities ``counts`` ``(B, N)``; ``(B, K)`` arrays, NaN where a resample has no
    positive or no negative example of a tag.

    The same quantities scikit-learn computes on the resampled data (``roc_auc_score`` as the
    Mann-Whitney statistic; ``average_precision_score`` as ``sum_n (R_n - R_{n-1}) P_n`` over
    score thresholds), without materialising the resamples: examples are sorted once per tag
    and each resample only reweights them. Copies of one example share a threshold, as in
    scikit-learn; distinct examples with exactly equal scores are treated as ordered (float
    logits practically never tie).
    """
    y_true = np.asarray(y_true, dtype=np.float32)
    y_score = np.asarray(y_score, dtype=float)
    c = np.asarray(counts, dtype=np.float32)  # counts and partial sums are exact in float32
    n_boot, (_, n_tags) = c.shape[0], y_true.shape
    c_t = np.ascontiguousarray(c.T)  # (N, B): examples as rows, so gathers copy whole rows
    auc = np.full((n_boot, n_tags), np.nan)
    ap = np.full((n_boot, n_tags), np.nan)
    for k in range(n_tags):
        order = np.argsort(-y_score[:, k], kind="stable")  # descending scores
        y = y_true[order, k][:, None]
        ck = c_t[order]
        pos_w = ck * y
        n_pos = pos_w.sum(axis=0)
        n_neg = ck.sum(axis=0) - n_pos
        ok = (n_pos > 0) & (n_neg > 0)
        seen = np.cumsum(ck, axis=0)  # copies ranked at or above each example
        hits = np.cumsum(pos_w, axis=0)  # positives among them
        # AUC: each positive beats the negatives ranked below it (descending order)
        neg_below = n_neg[None, :] - (seen - hits)
        auc[ok, k] = (pos_w * neg_below).sum(axis=0)[ok] / (n_pos * n_neg)[ok]
        # AP: precision at each example's threshold (all its copies included)
        ap[ok, k] = (pos_w * hits / np.maximum(seen, 1e-12)).sum(axis=0)[ok] / n_pos[ok]
    return auc, ap


def bootstrap_tagging(
    y_true: np.ndarray,
    scores: Sequence[np.ndarray],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    points: Sequence[dict[str, np.ndarray]] | None = None,
) -> dict[str, tuple[float, float, float]]:
    """Macro ROC-AUC and macro AP over seeds with a bootstrap over test clips.

    ``y_true`` ``(N, K)``, ``scores`` one ``(N, K)`` matrix per seed. The point estimate is
    the mean over seeds of scikit-learn's macro averages (tags with both classes in the test
    set); each replicate resamples clips (the same clips for every seed) and seeds, and
    averages the macro scores of the tags defined in that resample. Returns
    ``{"roc_auc": (mean, low, high), "map": (...)}``. ``points``: each seed's
    :func:`vit1d.probing.metrics.tagging_scores`, where the caller has them already.
    """

    y_true = np.asarray(y_true)
    n = y_true.shape[0]
    if points is None:
        points = [tagging_scores(y_true, s) for s in scores]
    elif len(points) != len(scores):
        raise ValueError(f"{len(points)} seeds' point scores for {len(scores)} seeds' scores")
    out = {}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    seed_idx = rng.integers(0, len(scores), size=(n_boot, len(scores)))
    per_seed = [resampled_tag_scores(y_true, s, counts) for s in scores]
    alpha = (1.0 - level) / 2.0
    for m, name in enumerate(("roc_auc", "map")):
        macro = np.stack([np.nanmean(ps[m], axis=1) for ps in per_seed])  # (S, B)
        stats = macro[seed_idx, np.arange(n_boot)[:, None]].mean(axis=1)
        point = float(np.mean([p[name].mean() for p in points]))
        lo, hi = np.nanquantile(stats, [alpha, 1.0 - alpha]) if n_boot else (np.nan, np.nan)
        out[name] = (point, float(lo), float(hi))
    return out


def summary_row(
    scores: np.ndarray, weights: np.ndarray | None, unit: str, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The statistics of one summary row from a ``(seeds, units)`` score matrix."""
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    mean, lo, hi = bootstrap_ci(scores, weights, n_boot=n_boot, seed=seed)
    w = np.ones(scores.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    per_seed = scores @ w / w.sum() if scores.shape[1] and w.sum() > 0 else np.full(1, np.nan)
    std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
    return {
        "mean": mean,
        "ci_low": lo,
        "ci_high": hi,
        "std_seeds": std,
        "n_seeds": int(scores.shape[0]),
        "n": int(scores.shape[1]),
        "unit": unit,
    }


def _atomic_csv(df: Any, path: Path) -> None:
    atomic.write_text(path, df.to_csv(index=False, float_format="%.6g"))


def upsert_csv(path: str | Path, rows: Sequence[dict[str, Any]], columns: list[str]) -> Any:
    """Merge ``rows`` into the CSV at ``path``: rows with the same :data:`REPLACE_KEY` as a
    new row are dropped, the new rows appended, the file rewritten atomically. Returns the
    merged DataFrame."""
    path = Path(path)
    new = pd.DataFrame(list(rows), columns=columns)
    with results_lock(path.parent):
        if path.is_file() and path.stat().st_size > 0:
            old = pd.read_csv(path, dtype={"checkpoint": str, "run_id": str})
            for col in columns:
                if col not in old.columns:
                    old[col] = np.nan
            key_new = set(map(tuple, new[REPLACE_KEY].astype(str).to_numpy()))
            keep = [tuple(r) not in key_new for r in old[REPLACE_KEY].astype(str).to_numpy()]
            merged = pd.concat([old.loc[keep, columns], new], ignore_index=True)
        else:
            merged = new
        _atomic_csv(merged, path)
    return merged


def record_run(results_dir: str | Path, run_id: str, provenance: dict[str, Any]) -> None:
    """Add one run's provenance to ``probes_runs.json`` (atomically)."""
    path = Path(results_dir) / RUNS_JSON
    runs: dict[str, Any] = {}
    with results_lock(path.parent):
        if path.is_file():
            try:
                runs = json.loads(path.read_text())
            except json.JSONDecodeError:
                runs = {}
        runs[run_id] = provenance
        atomic.write_json(path, runs, indent=2, sort_keys=True, default=str)


def write_results(
    results_dir: str | Path,
    rows: Sequence[dict[str, Any]],
    summary: Sequence[dict[str, Any]],
    run_id: str,
    provenance: dict[str, Any],
) -> dict[str, Path]:
    """Merge a run's rows and summary rows into the results folder and record provenance."""
    folder = Path(results_dir)
    with results_lock(folder):  # the three files of one run go in together
        upsert_csv(folder / PROBES_CSV, rows, COLUMNS)
        upsert_csv(folder / SUMMARY_CSV, summary, SUMMARY_COLUMNS)
        record_run(folder, run_id, provenance)
    return {
        "probes": folder / PROBES_CSV,
        "summary": folder / SUMMARY_CSV,
        "runs": folder / RUNS_JSON,
    }


def read_results(results_dir: str | Path) -> tuple[Any, Any]:
    """``(probes, summary)`` DataFrames of a results folder (empty frames when absent)."""
    folder = Path(results_dir)
    out = []
    for name, cols in ((PROBES_CSV, COLUMNS), (SUMMARY_CSV, SUMMARY_COLUMNS)):
        path = folder / name
        if path.is_file() and path.stat().st_size > 0:
            out.append(pd.read_csv(path, dtype={"checkpoint": str, "run_id": str}))
        else:
            out.append(pd.DataFrame(columns=cols))
    return out[0], out[1]


def best_layers(summary: Any, split: str = "test") -> Any:
    """Per (model, checkpoint, task, pooling, metric), the layer with the highest mean."""
    s = summary[summary["split"] == split]
    if s.empty:
        return s
    idx = s.groupby(["model", "checkpoint", "task", "pooling", "metric"])["mean"].idxmax()
    return s.loc[idx.dropna()].reset_index(drop=True)
