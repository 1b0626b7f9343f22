"""Choosing a probe on the validation split and comparing two probes on the same test items.

The claims ledger (:mod:`vit1d.ledger.claims`), the probe tables and the emergence curves
(:mod:`vit1d.book.tables`, :mod:`vit1d.book.examples`) all read probe results through these
functions, so the book states one protocol:

* **Choose on validation, report on test.** A model's layer and pooling for a task are those
  with the highest *validation* mean of the metric (:func:`best_row`); the number reported is
  the *test* score at that choice. Choosing on the test split would flatter every model by its
  own noise; results written before the validation split was scored fall back to the test
  split and say so (``chosen_on``).
* **Paired comparisons.** Two probes of one corpus are scored on the same test items, so the
  interval of a difference ``a - b`` comes from resampling those items (and seeds) for both
  sides at once (:func:`probe_difference`, :mod:`vit1d.probing.paired`), from the per-item results
  (:mod:`vit1d.probing.items`). Without them (older results) the normal approximation of the two
  summary intervals is used instead (:func:`normal_diff`), which ignores the pairing and is
  wider.
* **Chance.** :func:`chance_levels` reads the score of the prior-only predictor (the training
  split's most frequent class for every test item; constant scores for tagging) that
  :mod:`vit1d.probing.probe` writes as model ``chance``.

Used by :mod:`vit1d.ledger.claims`, :mod:`vit1d.book.tables`, :mod:`vit1d.book.examples` and
``notebooks/09_claims.ipynb``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from vit1d.probing.items import ItemStore
from vit1d.probing.paired import PairedDifference, paired_bootstrap, paired_bootstrap_tagging

#: z of a two-sided 95 % interval.
Z95 = 1.959964
#: Bootstrap replicates of a paired comparison (tagging recomputes macro AUC/AP per replicate).
N_BOOT = 2000
N_BOOT_TAGGING = 1000
#: The metric each task is judged on (the first of the paper's metrics for it).
PRIMARY_METRIC = {
    "tagging": "map",
    "key": "weighted",
    "pitch": "accuracy",
    "instrument": "accuracy",
    "tempo": "acc1",
    "chords": "majmin",
    "beats": "f_measure",
}
#: The model name of the prior-only predictor's rows in the probe summary.
CHANCE = "chance"


def final_rows(summary: Any, model: str, split: str | None = "test") -> Any:
    """The summary rows of ``model``'s final checkpoint on ``split`` (``None``: the valid
    and test rows): emergence snapshots left out; when several checkpoints remain, the one
    with the highest step, then the most recent run. ``None`` when there are none."""
    if summary is None or summary.empty:
        return None
    s = summary[summary["model"] == model]
    s = s[s["split"] == split] if split is not None else s[s["split"].isin(["valid", "test"])]
    s = s[~s["checkpoint"].astype(str).str.contains("snapshots/", regex=False)]
    if s.empty:
        return None
    s = s.assign(_step=pd.to_numeric(s["step"], errors="coerce").fillna(-1))
    ckpts = s.groupby("checkpoint").agg(step=("_step", "max"), run=("run_id", "max"))
    best = ckpts.sort_values(["step", "run"]).index[-1]
    return s[s["checkpoint"] == best].drop(columns="_step")


def best_row(
    rows: Any,
    task: str,
    poolings: Sequence[str] | None = None,
    metric: str | None = None,
    min_layer: int = 0,
) -> Any:
    """The test row of ``task``'s ``metric`` (default: the primary one) at the layer and
    pooling with the highest validation mean, among ``poolings`` and layers from
    ``min_layer`` on. The row carries ``chosen_on`` (``valid``, or ``test`` for results
    without validation rows) and ``valid_mean``; ``None`` when there is no test row."""
    if rows is None or rows.empty:
        return None
    metric = metric or PRIMARY_METRIC.get(task, "")
    r = rows[(rows["task"] == task) & (rows["metric"] == metric)]
    r = r[r["layer"].astype(int) >= min_layer]
    if poolings is not None:
        r = r[r["pooling"].isin(list(poolings))]
    r = r[np.isfinite(r["mean"].astype(float))]
    split = r["split"] if "split" in r else pd.Series("test", index=r.index)
    test, valid = r[split == "test"], r[split == "valid"]
    if test.empty:
        return None
    key = ["layer", "pooling"]
    t = test.drop_duplicates(key).set_index(key, drop=False)
    v = valid.drop_duplicates(key).set_index(key)["mean"].astype(float)
    v = v[v.index.isin(t.index)]
    if len(v):
        choice = v.idxmax()
        row = t.loc[choice].copy()
        row["chosen_on"], row["valid_mean"] = "valid", float(v.loc[choice])
        return row
    row = t.loc[t["mean"].astype(float).idxmax()].copy()
    row["chosen_on"], row["valid_mean"] = "test", float("nan")
    return row


def normal_diff(a: Any, b: Any) -> tuple[float, float, float]:
    """Difference of two summary rows (``mean``, ``ci_low``, ``ci_high``) and its 95 %
    interval by the normal approximation ``d +- 1.96 sqrt(se_a^2 + se_b^2)``, with
    ``se = (ci_high - ci_low) / 3.92``: ignores the pairing, so it errs toward unclear."""
    d = float(a["mean"]) - float(b["mean"])
    se_a = (float(a["ci_high"]) - float(a["ci_low"])) / (2 * Z95)
    se_b = (float(b["ci_high"]) - float(b["ci_low"])) / (2 * Z95)
    half = Z95 * math.sqrt(max(se_a, 0.0) ** 2 + max(se_b, 0.0) ** 2)
    return d, d - half, d + half


def _align(items_a: list, items_b: list) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the items both sides were scored on, in one order."""
    pos_b = {it: j for j, it in enumerate(items_b)}
    both = [(i, pos_b[it]) for i, it in enumerate(items_a) if it in pos_b]
    if not both:
        return np.zeros(0, int), np.zeros(0, int)
    ia, ib = zip(*both, strict=True)
    return np.asarray(ia), np.asarray(ib)


def probe_difference(
    a: Any, b: Any, items: ItemStore | None, seed: int = 0
) -> PairedDifference | None:
    """Paired bootstrap of ``a - b`` for two summary rows (the same task and metric) over the
    test items both were scored on; ``None`` without per-item results for both."""
    if items is None:
        return None
    if str(a["task"]) == "tagging":
        pa, pb = items.tagging(a), items.tagging(b)
        if pa is None or pb is None:
            return None
        (ya, sa, ia_names, _), (_, sb, ib_names, _) = pa, pb
        ia, ib = _align(ia_names, ib_names)
        if len(ia) == 0:
            return None
        res = paired_bootstrap_tagging(
            ya[ia], [s[ia] for s in sa], [s[ib] for s in sb], n_boot=N_BOOT_TAGGING, seed=seed
        )
        return res.get(str(a["metric"]))
    pa, pb = items.scores(a), items.scores(b)
    if pa is None or pb is None:
        return None
    (ma, wa, na, _), (mb, _, nb, _) = pa, pb
    ia, ib = _align(na, nb)
    if len(ia) == 0:
        return None
    return paired_bootstrap(ma[:, ia], mb[:, ib], weights=wa[ia], n_boot=N_BOOT, seed=seed)


def chance_levels(summary: Any, split: str = "test") -> dict[tuple[str, str], float]:
    """``{(task, metric): score}`` of the prior-only predictor (model ``chance``)."""
    if summary is None or summary.empty:
        return {}
    s = summary[(summary["model"] == CHANCE) & (summary["split"] == split)]
    return {(str(r.task), str(r.metric)): float(r.mean) for r in s.itertuples()}


def versus_chance(
    summary: Any, task: str, models: Sequence[str], metric: str | None = None
) -> dict[str, Any] | None:
    """The best of ``models`` (each at its view chosen on validation) on ``task``'s
    ``metric`` against the prior-only predictor: ``model``, ``value``, ``chance`` and
    ``ratio``; ``None`` when either is missing."""
    metric = metric or PRIMARY_METRIC.get(task, "")
    level = chance_levels(summary).get((task, metric))
    rows = {m: best_row(final_rows(summary, m, split=None), task, metric=metric) for m in models}
    rows = {m: r for m, r in rows.items() if r is not None}
    if level is None or not rows or level <= 0:
        return None
    model, r = max(rows.items(), key=lambda kv: float(kv[1]["mean"]))
    value = float(r["mean"])
    return {"model": model, "value": value, "chance": level, "ratio": value / level}
