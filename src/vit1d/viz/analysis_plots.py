"""The attention and self-similarity figures (matplotlib / seaborn): onset heatmaps and
curves, SSM agreement heatmaps and panels, chord-change novelty per layer, and the explorer's
view of one clip window.

They read the tidy tables of :mod:`vit1d.analysis.analyses`. Used by
``notebooks/06_attention.ipynb``, ``notebooks/07_self_similarity.ipynb``,
``notebooks/08_beyond.ipynb``, :mod:`vit1d.viz.figure_files` (``vit1d analyses --figures``)
and :mod:`vit1d.viz.widgets`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vit1d.core.extras import missing
from vit1d.viz.plots import WIDTH, to_numpy

try:
    import matplotlib.pyplot as plt
    import matplotlib.ticker as mpl_ticker
    import seaborn as sns
except ImportError as exc:  # the viz extra is optional
    raise missing("vit1d.viz.analysis_plots", "viz", exc) from exc


def _head_order(heads: Sequence[str]) -> list[str]:
    """Heads in reading order: numbered heads, then ``mean``, then ``rollout``."""
    heads = [str(h) for h in heads]
    numbered = sorted((h for h in heads if h.isdigit()), key=int)
    return numbered + [h for h in ("mean", "rollout") if h in heads]


def onset_heatmap(
    summary: Any,
    method: str | None = None,
    models: Sequence[str] = ("trained", "random"),
    metric: str = "f",
) -> Any:
    """Layer x head heatmaps of onset F-measure for one onset curve (default: the trained
    model's best on the test ``metric``; the attention chapter passes the curve chosen on the
    validation clips), one panel per model on a shared colour scale; the spectral-flux score
    is given in the title. ``summary``: ``onsets_summary.csv`` of :mod:`vit1d.analysis.analyses`."""
    s = summary.copy()
    s["head"] = s["head"].astype(str)
    if method is None:
        trained = s[s["model"] == models[0]]
        method = str(trained.sort_values(metric, ascending=False)["method"].iloc[0])
    sel = s[(s["method"] == method) & s["model"].isin(models)]
    vmax = float(max(sel[metric].max(), 1e-9))
    flux = s[s["model"] == "spectral_flux"]
    fig, axes = plt.subplots(
        1, len(models), figsize=(WIDTH, 0.28 * sel["layer"].nunique() + 1.6), squeeze=False
    )
    for ax, name in zip(axes[0], models, strict=True):
        m = sel[sel["model"] == name]
        table = m.pivot(index="layer", columns="head", values=metric)
        table = table[_head_order(table.columns)]
        sns.heatmap(
            table,
            ax=ax,
            vmin=0,
            vmax=vmax,
            cmap="magma",
            annot=True,
            fmt=".2f",
            annot_kws={"fontsize": 7},
            cbar=ax is axes[0][-1],
            cbar_kws={"label": f"onset {metric}"},
        )
        ax.set_title(name)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
    title = f"onset curve '{method}'"
    if len(flux):
        title += f" (spectral flux: {metric} = {flux[metric].iloc[0]:.2f}"
        chance = s[s["model"] == "chance"]
        if len(chance):
            title += f", chance: {chance[metric].iloc[0]:.2f}"
        title += ")"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def onset_curves_figure(
    curves: dict[str, Any],
    frame_rate: float,
    onsets: Sequence[float] | None = None,
    peaks: dict[str, Sequence[float]] | None = None,
    title: str = "",
) -> Any:
    """Onset curves (each min-max normalised) stacked over time, with the labelled onsets as
    vertical lines and each curve's picked peaks as dots."""
    fig, ax = plt.subplots(figsize=(WIDTH, 0.7 * len(curves) + 1.2))
    for i, (label, curve) in enumerate(curves.items()):
        c = to_numpy(curve).astype(float)
        span = float(c.max() - c.min()) or 1.0
        c = (c - c.min()) / span
        t = np.arange(c.size) / frame_rate
        offset = len(curves) - 1 - i
        ax.plot(t, c * 0.85 + offset, lw=0.9, color=f"C{i}")
        ax.text(t[-1] if t.size else 0, offset + 0.4, f" {label}", fontsize=8, va="center")
        if peaks and label in peaks:
            p = np.asarray(peaks[label], dtype=float)
            idx = np.clip(np.round(p * frame_rate).astype(int), 0, max(c.size - 1, 0))
            ax.plot(p, c[idx] * 0.85 + offset, "o", ms=3, color=f"C{i}")
    for o in onsets if onsets is not None else ():
        ax.axvline(o, color="0.5", lw=0.6, ls="--", zorder=0)
    ax.set_yticks([])
    ax.set_xlabel("time (s)")
    ax.set_title(title or "onset curves (dashed: labelled onsets)")
    return fig


def ssm_score_heatmap(
    summary: Any,
    value: str = "above_chance",
    models: Sequence[str] = ("trained", "random", "logmel"),
) -> Any:
    """Layer x dimension heatmaps of SSM agreement (Spearman score minus its time-shift
    chance level by default), one panel per model on a shared, zero-centred colour scale.
    ``summary``: ``ssm_summary.csv`` of :mod:`vit1d.analysis.analyses`."""
    models = [m for m in models if m in set(summary["model"])]
    dims = list(dict.fromkeys(summary["dimension"]))
    sel = summary[summary["model"].isin(models)]
    lim = float(np.nanmax(np.abs(sel[value]))) or 1.0
    rows = [summary[summary["model"] == m]["layer"].nunique() for m in models]
    fig, axes = plt.subplots(
        1,
        len(models),
        figsize=(WIDTH + 1, 0.28 * max(rows) + 2.0),
        squeeze=False,
        gridspec_kw={"width_ratios": [3 if r > 1 else 2 for r in rows]},
    )
    for ax, name in zip(axes[0], models, strict=True):
        m = summary[summary["model"] == name]
        table = m.pivot(index="layer", columns="dimension", values=value)[dims]
        sns.heatmap(
            table,
            ax=ax,
            vmin=-lim,
            vmax=lim,
            cmap="RdBu_r",
            annot=True,
            fmt=".2f",
            annot_kws={"fontsize": 7},
            cbar=ax is axes[0][-1],
            cbar_kws={"label": "Spearman - chance" if value == "above_chance" else value},
        )
        ax.set_title(name)
        ax.set_xlabel("")
        ax.set_ylabel("layer")
    fig.tight_layout()
    return fig


def ssm_panels(
    matrices: dict[str, Any],
    frame_rate: float | None = None,
    ncols: int = 4,
    size: float = 2.2,
    title: str = "",
) -> Any:
    """A grid of SSMs (layers and references of one clip window), each on its own colour
    scale, time in seconds when ``frame_rate`` is given."""
    n = len(matrices)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, (size + 0.35) * nrows + 0.3), squeeze=False
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (label, mat) in zip(axes.flat, matrices.items(), strict=False):
        m = to_numpy(mat)
        extent = None
        if frame_rate:
            end = m.shape[0] / frame_rate
            extent = (0.0, end, end, 0.0)
        ax.imshow(m, cmap="magma", extent=extent, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def novelty_layers_figure(novelty_summary: Any, metric: str = "f") -> Any:
    """Chord-change detection per layer from SSM novelty: one line per model with layers,
    horizontal lines for the one-layer references (chroma, log-mel input)."""
    fig, ax = plt.subplots(figsize=(WIDTH * 0.7, 3.2))
    i = 0
    for name, g in novelty_summary.groupby("model", sort=False):
        g = g.sort_values("layer")
        if len(g) > 1:
            ax.plot(g["layer"], g[metric], "o-", label=name, color=f"C{i}")
        else:
            ax.axhline(float(g[metric].iloc[0]), ls="--", label=name, color=f"C{i}")
        i += 1

    ax.xaxis.set_major_locator(mpl_ticker.MaxNLocator(integer=True))
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(f"chord-change {metric}")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def explorer_figure(
    mel: Any,
    attention: Any,
    curve: Any,
    ssm: Any,
    frame_rate: float,
    onsets: Sequence[float] | None = None,
    peaks: Sequence[float] | None = None,
    title: str = "",
) -> Any:
    """The explorer's view of one clip window, layer and head: the log-mel with labelled
    onsets, the frame-to-frame attention map, the onset curve read from it (peaks as dots)
    against the labels, and the layer's token SSM."""
    mel, a, c, s = to_numpy(mel), to_numpy(attention), to_numpy(curve).astype(float), to_numpy(ssm)
    end = mel.shape[0] / frame_rate
    fig = plt.figure(figsize=(WIDTH, 6.4))
    grid = fig.add_gridspec(3, 2, height_ratios=[1.0, 0.6, 2.2])
    ax_mel = fig.add_subplot(grid[0, :])
    ax_curve = fig.add_subplot(grid[1, :], sharex=ax_mel)
    ax_att = fig.add_subplot(grid[2, 0])
    ax_ssm = fig.add_subplot(grid[2, 1])
    ax_mel.imshow(mel.T, origin="lower", aspect="auto", extent=(0, end, 0, mel.shape[1]))
    ax_mel.set_ylabel("mel band")
    t = np.arange(c.size) / frame_rate
    ax_curve.plot(t, c, lw=0.9, color="C0")
    if peaks is not None and len(peaks):
        p = np.asarray(peaks, dtype=float)
        idx = np.clip(np.round(p * frame_rate).astype(int), 0, c.size - 1)
        ax_curve.plot(p, c[idx], "o", ms=3, color="C3")
    for o in onsets if onsets is not None else ():
        ax_mel.axvline(o, color="cyan", lw=0.6, alpha=0.8)
        ax_curve.axvline(o, color="0.5", lw=0.6, ls="--", zorder=0)
    ax_curve.set_ylabel("onset curve")
    ax_curve.set_xlabel("time (s)")
    ax_curve.set_xlim(0, end)
    for ax, m, label in ((ax_att, a, "attention (query x key)"), (ax_ssm, s, "token SSM")):
        ax.imshow(m, cmap="magma", extent=(0, end, end, 0), interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("time (s)")
    ax_att.set_ylabel("time (s)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
