"""The tables the book's chapters show of the results summaries: each model's best score per
task, the poolings, the published numbers of a related model beside ours, the
self-similarity summary; the view (layer, pooling) a chapter draws, how the probes were
fitted as a sentence, and a table's display.

Probe tables read ``probes_summary.csv`` (:func:`vit1d.probing.results.read_results`) and
choose on the validation split (:mod:`vit1d.probing.compare`). Used by chapters 04-08 and
:mod:`vit1d.book.chapters`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from vit1d.probing.compare import best_row, final_rows
from vit1d.probing.results import read_results

#: (task, metric) panels of the probing chapters, primary metric first.
GLOBAL_PANELS = (
    ("tagging", "map"),
    ("tagging", "roc_auc"),
    ("key", "weighted"),
    ("pitch", "accuracy"),
    ("instrument", "accuracy"),
    ("tempo", "acc1"),
    ("tempo", "acc2"),
)
LOCAL_PANELS = (("chords", "majmin"), ("chords", "root"), ("beats", "f_measure"))


def read_summary(paths: Any) -> Any:
    """The probe summary (``probes_summary.csv``) of a build's results folder."""
    return read_results(paths.results)[1]


def _fmt(mean: float, lo: float, hi: float) -> str:
    if not np.isfinite(mean):
        return "-"
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
    return f"{mean:.3f}"


def final_summary(summary: Any, model: str, split: str = "test") -> Any:
    """Rows of ``model``'s final checkpoint (no snapshots; see :func:`vit1d.probing.compare.final_rows`)."""
    rows = final_rows(summary, model, split)
    return rows if rows is not None else summary.iloc[0:0]


def best_table(
    summary: Any,
    panels: Sequence[tuple[str, str]],
    models: Sequence[str] = ("contrastive", "reference", "masked", "random-init", "logmel"),
    poolings: Sequence[str] | None = None,
) -> Any:
    """Per (task, metric): each model's test score ``mean [95 % CI]`` at the layer and
    pooling chosen on the validation split (:func:`vit1d.probing.compare.best_row`)."""
    rows = []
    for task, metric in panels:
        entry: dict[str, Any] = {"task": task, "metric": metric}
        found = False
        for m in models:
            pools = list(poolings) if poolings is not None and m != "logmel" else None
            r = best_row(final_rows(summary, m, split=None), task, pools, metric=metric)
            if r is None:
                continue
            one_view = m in ("logmel", "chance")  # no layers to choose from
            where = "" if one_view else f" (L{int(r['layer'])} {r['pooling']})"
            entry[m] = _fmt(r["mean"], r["ci_low"], r["ci_high"]) + where
            found = True
        if found:
            rows.append(entry)
    return pd.DataFrame(rows).fillna("-")


def pooling_table(
    summary: Any, tasks: Sequence[tuple[str, str]], model: str = "contrastive"
) -> Any:
    """Per (task, metric): the model's test score for each pooling at that pooling's layer
    chosen on the validation split, ``mean [CI] (Ln)``."""
    s = final_rows(summary, model, split=None)
    rows = []
    for task, metric in tasks:
        entry = {"task": task, "metric": metric}
        for pooling in ("cls", "seq", "avg"):
            r = best_row(s, task, [pooling], metric=metric)
            if r is None:
                continue
            entry[pooling] = _fmt(r["mean"], r["ci_low"], r["ci_high"]) + f" (L{int(r['layer'])})"
        if len(entry) > 2:
            rows.append(entry)
    return pd.DataFrame(rows)


#: Real-data results of a related model (docs/design.md, "Model and training facts"): the
#: contrastive ViT-1D of the same group's follow-up (CoJEPA, arXiv 2608.30974; RoPE, RMSNorm,
#: gated MLP, 7.1 M parameters), trained on the real datasets. Global tasks at layer 12,
#: (cls, seq) pooling.
REFERENCE_GLOBAL = {
    ("tagging", "map"): (0.393, 0.395),
    ("tagging", "roc_auc"): (0.882, 0.881),
    ("key", "weighted"): (0.539, 0.550),
    ("pitch", "accuracy"): (0.925, 0.962),
    ("instrument", "accuracy"): (0.942, 0.952),
    ("tempo", "acc1"): (0.854, 0.847),
    ("tempo", "acc2"): (0.917, 0.895),
}
#: Local tasks, per-token probes at layers 4 / 8 / 12 of 12.
REFERENCE_LOCAL = {
    ("chords", "majmin"): (0.258, 0.256, 0.241),
    ("beats", "f_measure"): (0.549, 0.551, 0.737),
}
#: A shallow layer of the same model on a global task: tagging mAP at layer 4.
REFERENCE_SHALLOW = {("tagging", "map", 4): 0.265}
REFERENCE_LABEL = "related model, real data (CoJEPA's contrastive ViT-1D)"


def _row_at(s: Any, task: str, metric: str, layer: int, pooling: str) -> Any:
    r = s[
        (s["task"] == task)
        & (s["metric"] == metric)
        & (s["layer"] == layer)
        & (s["pooling"] == pooling)
    ]
    return None if r.empty else r.iloc[0]


def reference_global_table(summary: Any, model: str = "contrastive") -> Any:
    """The reference numbers beside ours at the last layer, class token and sequence mean."""
    s = final_summary(summary, model)
    last = int(s["layer"].max()) if not s.empty else 0
    rows = []
    for (task, metric), (ref_cls, ref_seq) in REFERENCE_GLOBAL.items():
        entry = {
            "task": task,
            "metric": metric,
            "published cls (L12)": f"{ref_cls:.3f}",
            "published seq (L12)": f"{ref_seq:.3f}",
        }
        for pooling in ("cls", "seq"):
            r = _row_at(s, task, metric, last, pooling)
            entry[f"ours {pooling} (L{last})"] = (
                "-" if r is None else _fmt(r["mean"], r["ci_low"], r["ci_high"])
            )
        rows.append(entry)
    return pd.DataFrame(rows)


def reference_local_table(summary: Any, model: str = "contrastive") -> Any:
    """Reference local results at layers 4/8/12 of 12 beside ours at the same relative
    depths of our model."""
    s = final_summary(summary, model)
    depth = int(s["layer"].max()) if not s.empty else 12
    ours_layers = [max(1, round(depth * q)) for q in (1 / 3, 2 / 3, 1.0)]
    rows = []
    for (task, metric), refs in REFERENCE_LOCAL.items():
        for ref_layer, ref, layer in zip((4, 8, 12), refs, ours_layers, strict=True):
            r = _row_at(s, task, metric, layer, "frame")
            rows.append(
                {
                    "task": task,
                    "metric": metric,
                    "published layer": f"{ref_layer} of 12",
                    "reference": f"{ref:.3f}",
                    "our layer": f"{layer} of {depth}",
                    "ours": "-" if r is None else _fmt(r["mean"], r["ci_low"], r["ci_high"]),
                }
            )
    return pd.DataFrame(rows)


def ssm_best_table(summary: Any, models: Sequence[str] = ("trained", "random", "logmel")) -> Any:
    """Per dimension: each model's best layer and its score above chance."""
    rows = []
    for dim in dict.fromkeys(summary["dimension"]):
        entry: dict[str, Any] = {"dimension": dim}
        for m in models:
            s = summary[(summary["model"] == m) & (summary["dimension"] == dim)]
            if s.empty:
                continue
            r = s.loc[s["above_chance"].astype(float).idxmax()]
            entry["group"] = r["group"]
            entry[m] = f"{float(r['above_chance']):+.3f} (L{int(r['layer'])})"
        rows.append(entry)
    out = pd.DataFrame(rows)
    cols = ["dimension", "group"] + [m for m in models if m in out.columns]
    return out[cols] if not out.empty else out


def probe_fit_text(
    cfg: Any, seeds: Sequence[int], local: bool = False, random_init_seeds: int | None = None
) -> str:
    """How the probes of a :class:`vit1d.probing.linear.ProbeConfig` are fitted (those of local tasks
    with ``local``), as a sentence for the probing chapters (04 and 05). ``random_init_seeds``:
    the random-init baseline's init seeds (one per probe seed when None)."""
    n = len(seeds)
    inits = n if random_init_seeds is None else random_init_seeds
    if (cfg.local_solver if local else cfg.solver) == "lbfgs":
        l2 = ", ".join(f"{a:g}" for a in sorted(cfg.l2))
        random = (
            f"one per init seed, {inits}"
            if inits > 1
            else "one random network, fitted the same way"
        )
        return (
            "fitted exactly: each probe is the minimum of its convex loss (full-batch L-BFGS, "
            f"at most {cfg.max_iter} iterations) for each L2 weight of {l2}, keeping the weight "
            "of lowest validation loss; the solution does not depend on a seed, so one probe "
            f"is fitted per layer and pooling (the random-init model: {random})"
        )
    random = (
        "one init seed per probe seed" if inits > 1 else "one random network, with every probe seed"
    )
    return (
        f"trained with Adam (learning rate {cfg.lr:g}, batches of {cfg.batch_size}), at most "
        f"{cfg.max_epochs} epochs of {cfg.steps_per_epoch} steps with early stopping on the "
        f"validation loss (patience {cfg.patience}), {n} probe seeds per layer and pooling "
        f"(the random-init model: {random})"
    )


def best_view(summary: Any, task: str, model: str = "contrastive") -> tuple[int, str] | None:
    """``(layer, pooling)`` of ``model``'s final checkpoint on ``task``'s primary metric,
    chosen on the validation split (:func:`vit1d.probing.compare.best_row`), where the emergence
    curves are drawn; ``None`` when the task was not probed."""
    rows = final_rows(summary, model, split=None)
    best = best_row(rows, task, ["cls", "seq", "avg", "frame"])
    if best is None:
        return None
    return int(best["layer"]), str(best["pooling"])


def show(table: Any) -> Any:
    """A table for the book: a pandas Styler without the row index."""
    return table.style.hide(axis="index")
