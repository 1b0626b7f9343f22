"""The probing and recipe-study figures (matplotlib): score against depth (layer curves),
against training step (emergence curves), the claims ledger's comparisons as a forest plot,
and the recipe study's curves per variant.

Layer curves and emergence curves read ``probes_summary.csv``
(:func:`vit1d.probing.results.read_results`): mean over seeds with its 95 % bootstrap
interval as a band. Used by ``notebooks/03b_recipe.ipynb``, ``notebooks/04_global_probes.ipynb``,
``notebooks/05_local_probes.ipynb``, ``notebooks/09_claims.ipynb`` and
:mod:`vit1d.book.examples`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vit1d.core.extras import missing
from vit1d.probing.compare import best_row
from vit1d.studies.variants import VARIANTS
from vit1d.viz.plots import WIDTH

try:
    import matplotlib.pyplot as plt
    import matplotlib.ticker as mpl_ticker
except ImportError as exc:  # the viz extra is optional
    raise missing("vit1d.viz.probing_plots", "viz", exc) from exc

#: Line colour of each pooling, and the style of each baseline.
POOLING_COLOURS = {"cls": "C0", "seq": "C1", "avg": "C2", "frame": "C3", "meanstd": "0.3"}
BASELINE_STYLE = {
    "random-init": {"ls": "--", "alpha": 0.9},
    "logmel": {"ls": ":", "alpha": 0.9},
    "chance": {"ls": "-.", "alpha": 0.6, "lw": 0.8},
}
BASELINE_LABEL = {"random-init": "random init", "logmel": "log-mel", "chance": "chance"}


def _panel(summary: Any, task: str, metric: str, split: str, ax: Any) -> tuple[Any, Any, Any]:
    """The summary rows of one task, metric and split, and the axes to draw them on (a new
    half-width figure when ``ax`` is None): ``(rows, figure, axes)``."""
    rows = summary[(summary["task"] == task) & (summary["metric"] == metric)]
    rows = rows[rows["split"] == split]
    if ax is None:
        fig, ax = plt.subplots(figsize=(WIDTH / 2, 3.2))
    else:
        fig = ax.figure
    return rows, fig, ax


def _main_checkpoint(rows: Any) -> Any:
    """Rows of one checkpoint: the final model (not a ``snapshots/`` folder) with the most
    steps when there are several."""
    if rows.empty or rows["checkpoint"].nunique() <= 1:
        return rows
    ck = rows[["checkpoint", "step"]].drop_duplicates().copy()
    ck["snapshot"] = ck["checkpoint"].astype(str).str.contains("snapshots/")
    ck["step"] = ck["step"].fillna(-1)
    best = ck.sort_values(["snapshot", "step"], ascending=[True, False]).iloc[0]["checkpoint"]
    return rows[rows["checkpoint"] == best]


def layer_curves(
    summary: Any,
    task: str,
    metric: str,
    split: str = "test",
    model: str = "contrastive",
    poolings: Sequence[str] | None = None,
    checkpoint: str | None = None,
    baselines: bool = True,
    ax: Any = None,
    legend: bool = True,
) -> Any:
    """Score against depth (0 = embeddings) for one task and metric: one line per pooling of
    ``model`` (its final checkpoint unless ``checkpoint`` is given), dashed random-init lines
    per pooling, and the log-mel baseline as a dotted horizontal line; bands are the 95 %
    bootstrap intervals. Returns the figure."""
    s, fig, ax = _panel(summary, task, metric, split, ax)
    main = s[s["model"] == model]
    main = main[main["checkpoint"] == checkpoint] if checkpoint else _main_checkpoint(main)
    pools = poolings or [p for p in POOLING_COLOURS if p in set(main["pooling"])]
    names = [model, "random-init"] if baselines else [model]
    for name in names:
        rows = main if name == model else s[s["model"] == name]
        style = BASELINE_STYLE.get(name, {"ls": "-", "alpha": 1.0})
        for pooling in pools:
            r = rows[rows["pooling"] == pooling].sort_values("layer")
            if r.empty:
                continue
            colour = POOLING_COLOURS.get(pooling, "k")
            label = pooling if name == model else f"{pooling} ({name})"
            ax.plot(
                r["layer"],
                r["mean"],
                marker="o" if name == model else None,
                ms=3,
                color=colour,
                label=label,
                **style,
            )
            ax.fill_between(
                r["layer"],
                r["ci_low"],
                r["ci_high"],
                color=colour,
                alpha=0.15 if name == model else 0.07,
                lw=0,
            )
    if baselines:
        lm = s[s["model"] == "logmel"]
        if not lm.empty:
            row = lm.iloc[0]
            ax.axhline(row["mean"], color="0.3", label="log-mel", **BASELINE_STYLE["logmel"])
            ax.axhspan(row["ci_low"], row["ci_high"], color="0.3", alpha=0.08, lw=0)
        chance = s[s["model"] == "chance"]
        if not chance.empty:
            ax.axhline(chance["mean"].iloc[0], color="0.55", ls="-.", lw=1, label="chance")
    chosen = _chosen_point(summary, task, metric, model, main, pools)
    if chosen is not None:
        ax.plot(*chosen, marker="*", ms=11, color="k", ls="none", label="chosen on valid")
    layers = sorted(set(main["layer"])) or [0]
    ax.set_xticks(layers[:: 2 if len(layers) > 8 else 1])
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (test)")
    ax.set_title(f"{task}", fontsize=10)
    if legend:
        ax.legend(fontsize=7, frameon=False, ncol=2)
    return fig


def _chosen_point(
    summary: Any, task: str, metric: str, model: str, main: Any, pools: Sequence[str]
) -> tuple[float, float] | None:
    """``(layer, test score)`` of ``model``'s view chosen on the validation split
    (:func:`vit1d.probing.compare.best_row`), among the plotted checkpoint and poolings."""

    if main.empty:
        return None
    rows = summary[
        (summary["model"] == model) & summary["checkpoint"].isin(set(main["checkpoint"]))
    ]
    r = best_row(rows, task, list(pools), metric=metric)
    if r is None or r.get("chosen_on") != "valid":
        return None
    return float(r["layer"]), float(r["mean"])


OUTCOME_COLOURS = {"for": "#2a9d3f", "against": "#c0392b", "unclear": "0.45"}


def comparison_forest(details: Any, title: str | None = None) -> Any:
    """The comparisons of the claims ledger as a forest plot: per comparison ``a - b`` its
    95 % interval (paired where the per-item results exist), coloured by what it says about
    its claim (for, against, unclear), with the number of test items in the label."""
    d = details.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.26 * max(len(d), 1) + 1.0))
    y = np.arange(len(d))[::-1]
    for yi, r in zip(y, d.itertuples(), strict=True):
        colour = OUTCOME_COLOURS.get(r.outcome, "0.45")
        lo, hi = float(r.ci_low), float(r.ci_high)
        ax.plot([lo, hi], [yi, yi], color=colour, lw=2.2, solid_capstyle="butt")
        ax.plot(float(r.diff), yi, "o", color=colour, ms=4)
    labels = [
        f"{r.claim}: {r.name}" + (f"  (n={int(r.n_items)})" if getattr(r, "n_items", 0) else "")
        for r in d.itertuples()
    ]
    ax.set_yticks(y, labels, fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("difference a - b with its 95 % interval")
    handles = [plt.Line2D([], [], color=c, lw=2.2, label=k) for k, c in OUTCOME_COLOURS.items()]
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def layer_curves_grid(
    summary: Any,
    panels: Sequence[tuple[str, str]],
    split: str = "test",
    model: str = "contrastive",
    ncols: int = 3,
    title: str = "",
) -> Any:
    """:func:`layer_curves` for several ``(task, metric)`` panels side by side (tasks
    missing from the summary are skipped)."""
    have = set(zip(summary["task"], summary["metric"], strict=True))
    panels = [p for p in panels if tuple(p) in have]
    n = max(1, len(panels))
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTH, 2.9 * nrows), squeeze=False)
    handles: dict[str, Any] = {}
    for ax, (task, metric) in zip(axes.flat, panels, strict=False):
        layer_curves(summary, task, metric, split=split, model=model, ax=ax, legend=False)
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 1))
    if handles:
        fig.legend(
            handles.values(),
            handles.keys(),
            loc="lower center",
            frameon=False,
            ncol=min(6, len(handles)),
            fontsize=8,
        )
    return fig


def emergence_curve(
    summary: Any,
    task: str,
    metric: str,
    layer: int,
    pooling: str,
    split: str = "test",
    model: str = "contrastive",
    ax: Any = None,
) -> Any:
    """Score against training step for one (task, metric, layer, pooling) of ``model``'s
    checkpoints, with the random-init model (same layer and pooling, dashed) and the log-mel
    baseline (dotted) as horizontal lines with their 95 % bands. Returns the figure."""
    s, fig, ax = _panel(summary, task, metric, split, ax)
    r = s[(s["model"] == model) & (s["layer"] == layer) & (s["pooling"] == pooling)]
    r = r.dropna(subset=["step"]).groupby("step", as_index=False).first().sort_values("step")
    colour = POOLING_COLOURS.get(pooling, "C0")
    if not r.empty:
        err = np.vstack([r["mean"] - r["ci_low"], r["ci_high"] - r["mean"]]).clip(min=0)
        ax.errorbar(
            r["step"],
            r["mean"],
            yerr=err,
            marker="o",
            ms=4,
            capsize=3,
            color=colour,
            label=f"{model} ({pooling})",
        )
    rnd = s[(s["model"] == "random-init") & (s["layer"] == layer) & (s["pooling"] == pooling)]
    lm = s[s["model"] == "logmel"]
    for rows, name, col in ((rnd, "random init", colour), (lm, "log-mel", "0.3")):
        if rows.empty:
            continue
        row = rows.iloc[0]
        key = "random-init" if name == "random init" else "logmel"
        ax.axhline(row["mean"], color=col, label=name, **BASELINE_STYLE[key])
        ax.axhspan(row["ci_low"], row["ci_high"], color=col, alpha=0.08, lw=0)
    ax.set_xlabel("training step")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{task}, layer {layer}", fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    return fig


def _variant_colours(names: Any) -> dict[str, str]:
    """One colour per recipe variant, in the order of :data:`vit1d.studies.variants.VARIANTS`, so
    every figure of the recipe chapter colours a variant alike."""

    order = {v: i for i, v in enumerate(VARIANTS)}
    names = sorted(set(names), key=lambda v: (order.get(v, len(order)), v))
    return {v: f"C{i}" for i, v in enumerate(names)}


def _panel_grid(n_panels: int, ncols: int) -> tuple[Any, Any]:
    """A figure of ``n_panels`` small panels, ``ncols`` per row, the book's width."""
    n = max(1, n_panels)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    return plt.subplots(nrows, ncols, figsize=(WIDTH, 2.8 * nrows), squeeze=False)


def _finish_panels(fig: Any, axes: Any, n_panels: int) -> Any:
    """Hide unused panels and put the first panel's legend below the grid."""
    for ax in list(axes.flat)[n_panels:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(
        handles, labels, loc="lower center", frameon=False, ncol=min(6, len(labels)), fontsize=8
    )
    return fig


def recipe_curves(
    table: Any,
    metrics: dict[str, str],
    ncols: int = 4,
    x: str = "step",
    xlabel: str = "training step",
) -> Any:
    """The recipe study's emergence curves (``notebooks/03b_recipe.ipynb``): best-layer score
    against training step (or another column ``x`` of the table, such as the training
    compute of :func:`vit1d.studies.ranking.with_compute`), one colour per variant, one thin line per
    seed and a thick line for their mean; the random-init (dashed, mean over init seeds) and
    log-mel (dotted) baselines and chance (dash-dot) as horizontal lines. ``table`` is
    :func:`vit1d.studies.ranking.study_table`, ``metrics`` maps task -> metric."""
    panels = [(t, m) for t, m in metrics.items() if ((table.task == t) & (table.metric == m)).any()]
    fig, axes = _panel_grid(len(panels), ncols)
    runs = table[table["seed"] >= 0]
    colours = _variant_colours(runs["variant"])
    variants = list(colours)
    for ax, (task, metric) in zip(axes.flat, panels, strict=False):
        t = table[(table.task == task) & (table.metric == metric)]
        for v in variants:
            rv = t[t.variant == v]
            for _, rs in rv.groupby("seed"):
                rs = rs.sort_values(x)
                ax.plot(rs[x], rs["value"], color=colours[v], lw=0.8, alpha=0.45, marker=".")
            mean = rv.groupby(x)["value"].mean()
            ax.plot(mean.index, mean.values, color=colours[v], lw=2, label=v)
        for name, style in BASELINE_STYLE.items():
            b = t[t.variant == name]
            if not b.empty:
                ax.axhline(b["value"].mean(), color="0.3", label=BASELINE_LABEL[name], **style)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{metric.replace('_', ' ')} (best layer)")
    return _finish_panels(fig, axes, len(panels))


def recipe_layers(summary: Any, metrics: dict[str, str], ncols: int = 4) -> Any:
    """Score against depth at the end of training, one colour per recipe variant (mean over
    seeds, the seeds' range shaded), random-init dashed: where in the network each recipe
    keeps a task's information (``notebooks/03b_recipe.ipynb``). ``summary`` is the study's
    ``probes_summary.csv`` with ``variant`` and ``seed`` columns added."""
    s = summary[summary["split"] == "test"]
    panels = [(t, m) for t, m in metrics.items() if ((s.task == t) & (s.metric == m)).any()]
    fig, axes = _panel_grid(len(panels), ncols)
    runs = s[s["seed"] >= 0]
    final = runs[runs["step"] == runs.groupby("variant")["step"].transform("max")]
    colours = _variant_colours(runs["variant"])
    for ax, (task, metric) in zip(axes.flat, panels, strict=False):
        t = final[(final.task == task) & (final.metric == metric)]
        for v, colour in colours.items():
            g = t[t.variant == v].groupby("layer")["mean"]
            m, lo, hi = g.mean(), g.min(), g.max()
            ax.plot(m.index, m.values, color=colour, marker="o", ms=3, label=v)
            ax.fill_between(m.index, lo.values, hi.values, color=colour, alpha=0.15, lw=0)
        ax.xaxis.set_major_locator(mpl_ticker.MaxNLocator(integer=True))
        r = s[(s.variant == "random-init") & (s.task == task) & (s.metric == metric)]
        if not r.empty:
            g = r.groupby("layer")["mean"].mean()
            ax.plot(
                g.index, g.values, color="0.3", label="random init", **BASELINE_STYLE["random-init"]
            )
        c = s[(s.variant == "chance") & (s.task == task) & (s.metric == metric)]
        if not c.empty:
            ax.axhline(c["mean"].mean(), color="0.3", label="chance", **BASELINE_STYLE["chance"])
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel(metric.replace("_", " "))
    return _finish_panels(fig, axes, len(panels))
