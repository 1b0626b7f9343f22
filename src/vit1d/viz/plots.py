"""Figures and static explorers for the book's notebooks (matplotlib / seaborn / ipywidgets).

The notebooks stay thin: they compute or load results and call one function here per figure,
so no plotting code is copied between chapters. Every function takes arrays (NumPy or torch)
and returns a matplotlib ``Figure`` (or draws on a given ``ax``); :func:`image_stack` returns
an ipywidgets explorer that works in the static HTML book.

Used by: ``notebooks/01_method.ipynb`` (:func:`logmel_figure`), ``notebooks/03_pretrain.ipynb``
(:func:`training_figure`), ``notebooks/10_explorer.ipynb`` (:func:`matrix_figure`,
:func:`image_stack`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from vit1d.core.extras import missing
from vit1d.probing.compare import best_row
from vit1d.studies.recipes import VARIANTS

try:
    import ipywidgets as w
    import matplotlib as mpl
    import matplotlib.pyplot as plt
    import matplotlib.ticker as mpl_ticker
    import seaborn as sns
    from IPython.display import HTML
except ImportError as exc:  # the viz extra is optional
    raise missing("vit1d.viz.plots", "viz", exc) from exc

#: Figure width in inches that fills the book's text column.
WIDTH = 9.0


def style() -> None:
    """The book's look: seaborn's ``ticks`` theme, a readable size, tight PNGs."""
    sns.set_theme(context="notebook", style="ticks", font_scale=0.9)
    mpl.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "savefig.bbox": "tight",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "image.cmap": "magma",
        }
    )


def _np(x: Any) -> np.ndarray:
    """A NumPy array from a tensor or array-like (detached, on the CPU, float)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def fig_to_png(fig: Any, dpi: int = 100) -> bytes:
    """PNG bytes of a figure, which is then closed (for :func:`image_stack`)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def logmel_figure(
    mel: Any,
    frame_rate: float,
    wave: Any | None = None,
    sample_rate: int | None = None,
    title: str | None = None,
    onsets: Sequence[float] | None = None,
    segments: Sequence[tuple[float, float, str]] | None = None,
) -> Any:
    """A log-mel spectrogram ``(T, n_mels)`` in dB over time, optionally under its waveform,
    with optional event times (onsets, beats) drawn as lines and labelled segments (chords)
    written above it."""
    mel = _np(mel)
    if mel.ndim == 3:
        mel = mel[0]
    rows = 2 if wave is not None else 1
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(WIDTH, 2.0 + 1.4 * rows),
        sharex=True,
        gridspec_kw={"height_ratios": [1, 3][-rows:]},
        squeeze=False,
    )
    axes = axes[:, 0]
    duration = mel.shape[0] / frame_rate
    if wave is not None:
        w = _np(wave).reshape(-1)
        t = np.arange(w.size) / float(sample_rate or 1)
        axes[0].plot(t, w, lw=0.4, color="0.2")
        axes[0].set_ylabel("amplitude")
    ax = axes[-1]
    im = ax.imshow(
        mel.T,
        origin="lower",
        aspect="auto",
        extent=(-0.5 / frame_rate, duration - 0.5 / frame_rate, -0.5, mel.shape[1] - 0.5),
        interpolation="nearest",
    )
    if onsets is not None:
        for o in onsets:
            ax.axvline(o, color="cyan", lw=0.6, alpha=0.7)
    if segments:
        for start, end, label in segments:
            if start >= duration:
                continue
            ax.axvline(start, color="white", lw=0.8, alpha=0.8)
            mid = (start + min(end, duration)) / 2
            ax.text(
                mid, mel.shape[1] * 1.02, label, ha="center", va="bottom", fontsize=7, clip_on=False
            )
    ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    fig.colorbar(im, ax=axes.tolist(), label="dB", pad=0.01, fraction=0.03)
    if title:
        axes[0].set_title(title, pad=16 if segments and wave is None else 6)
    return fig


def training_figure(log: Any, smooth: int | None = None) -> Any:
    """Pretraining curves from ``log.csv`` (columns step, loss, lr, views_per_s): the loss
    (raw and a rolling mean), the learning rate, and the throughput in views per second."""
    steps = np.asarray(log["step"])
    loss = np.asarray(log["loss"], dtype=float)
    n = len(steps)
    smooth = smooth or max(1, n // 20)
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH + 3, 3.0))
    axes[0].plot(steps, loss, lw=0.6, alpha=0.4, color="C0", label="per step")
    if n >= smooth > 1:
        kernel = np.ones(smooth) / smooth
        axes[0].plot(
            steps[smooth - 1 :],
            np.convolve(loss, kernel, mode="valid"),
            color="C0",
            label=f"mean of {smooth}",
        )
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("NT-Xent loss")
    axes[0].legend(frameon=False)
    if "lr" in log:
        axes[1].plot(steps, np.asarray(log["lr"], dtype=float), color="C1")
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("learning rate")
        axes[1].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    if "views_per_s" in log:
        axes[2].plot(steps, np.asarray(log["views_per_s"], dtype=float), color="C2")
        axes[2].set_xlabel("step")
        axes[2].set_ylabel("views per second")
        axes[2].set_ylim(bottom=0)
    fig.tight_layout()
    return fig


def matrix_figure(
    mat: Any,
    title: str = "",
    frame_rate: float | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "magma",
    label: str = "",
    size: float = 4.2,
) -> Any:
    """A square matrix (attention map, self-similarity matrix) with time axes in seconds when
    ``frame_rate`` is given."""
    m = _np(mat)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    extent = None
    if frame_rate:
        end = m.shape[1] / frame_rate
        extent = (0.0, end, m.shape[0] / frame_rate, 0.0)
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, extent=extent, interpolation="nearest")
    unit = "time (s)" if frame_rate else "frame"
    ax.set_xlabel(unit)
    ax.set_ylabel(unit)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=label, fraction=0.046, pad=0.03)
    return fig


def audio_player(wave: Any, sample_rate: int, title: str | None = None) -> Any:
    """An HTML ``<audio>`` player with the clip embedded (Ogg Vorbis, about six times smaller
    than the WAV of ``IPython.display.Audio``; WAV where libsndfile lacks Vorbis), so the
    built book plays it with no file beside the page. ``title`` is shown above it."""
    import base64
    import html

    import soundfile as sf

    w = _np(wave).astype(np.float32).reshape(-1)
    peak = float(np.max(np.abs(w))) if w.size else 0.0
    if peak > 1.0:
        w = w / peak
    buf = io.BytesIO()
    try:
        sf.write(buf, w, sample_rate, format="OGG", subtype="VORBIS")
        mime = "audio/ogg"
    except (ValueError, RuntimeError, sf.LibsndfileError):
        buf = io.BytesIO()
        sf.write(buf, w, sample_rate, format="WAV", subtype="PCM_16")
        mime = "audio/wav"
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    head = f"<div class='vit1d-audio-title'>{html.escape(title)}</div>" if title else ""
    return HTML(
        f"<div class='vit1d-audio'>{head}<audio controls preload='metadata' "
        f"src='data:{mime};base64,{data}'></audio></div>"
    )


def image_stack(
    images: Sequence[bytes],
    labels: Sequence[str],
    description: str = "layer",
    width: str = "520px",
    start: int = 0,
) -> Any:
    """A static explorer: a slider ``jslink``-ed to an ``ipywidgets.Stack`` of pre-rendered
    PNG images (and a second Stack of captions). The link runs in the browser, so it works in
    the built HTML book without a kernel (docs/design.md, "The book")."""
    if len(images) != len(labels) or not images:
        raise ValueError("image_stack needs one label per image and at least one image")
    pictures = [w.Image(value=png, format="png", layout=w.Layout(width=width)) for png in images]
    captions = [w.HTML(value=f"<b>{label}</b>") for label in labels]
    stack = w.Stack(pictures, selected_index=start)
    caption = w.Stack(captions, selected_index=start)
    slider = w.IntSlider(
        value=start,
        min=0,
        max=len(images) - 1,
        step=1,
        description=description,
        continuous_update=True,
        readout=False,  # 0-based index; the caption names the layer
        layout=w.Layout(width=width),
    )
    w.jslink((slider, "value"), (stack, "selected_index"))
    w.jslink((slider, "value"), (caption, "selected_index"))
    box = w.VBox([w.HBox([slider, caption]), stack])
    box.add_class("vit1d-explorer")
    return box


# --- attention and self-similarity figures ---
# Used by notebooks/06_attention.ipynb, notebooks/07_self_similarity.ipynb, vit1d.analysis.analyses
# (--figures) and vit1d.viz.widgets. They read the tidy tables of vit1d.analysis.analyses.


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
        c = _np(curve).astype(float)
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
        m = _np(mat)
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
    mel, a, c, s = _np(mel), _np(attention), _np(curve).astype(float), _np(ssm)
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


# --- probing figures ---
# Layer curves and emergence curves read ``probes_summary.csv`` (vit1d.probing.results.read_results):
# mean over seeds with its 95 % bootstrap interval as a band. Used by the probing notebooks.

#: Line colour of each pooling, and the style of each baseline.
POOLING_COLOURS = {"cls": "C0", "seq": "C1", "avg": "C2", "frame": "C3", "meanstd": "0.3"}
BASELINE_STYLE = {
    "random-init": {"ls": "--", "alpha": 0.9},
    "logmel": {"ls": ":", "alpha": 0.9},
    "chance": {"ls": "-.", "alpha": 0.6, "lw": 0.8},
}
BASELINE_LABEL = {"random-init": "random init", "logmel": "log-mel", "chance": "chance"}


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
    s = summary[(summary["task"] == task) & (summary["metric"] == metric)]
    s = s[s["split"] == split]
    if ax is None:
        fig, ax = plt.subplots(figsize=(WIDTH / 2, 3.2))
    else:
        fig = ax.figure
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
    s = summary[(summary["task"] == task) & (summary["metric"] == metric)]
    s = s[s["split"] == split]
    if ax is None:
        fig, ax = plt.subplots(figsize=(WIDTH / 2, 3.2))
    else:
        fig = ax.figure
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
    """One colour per recipe variant, in the order of :data:`vit1d.studies.recipes.VARIANTS`, so
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
    compute of :func:`vit1d.studies.recipes.with_compute`), one colour per variant, one thin line per
    seed and a thick line for their mean; the random-init (dashed, mean over init seeds) and
    log-mel (dotted) baselines and chance (dash-dot) as horizontal lines. ``table`` is
    :func:`vit1d.studies.recipes.study_table`, ``metrics`` maps task -> metric."""
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


def bench_scaling(rows: Sequence[dict[str, Any]]) -> Any:
    """The benchmark's scaling curves (``notebooks/99_reproducibility.ipynb``): training
    views/s (solid, left axis) and the activation memory a step saves for backward (dashed,
    right axis) against the batch (pairs per step) and against the sequence length (frames)."""
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.0))
    for ax, axis, key, label in (
        (axes[0], "batch", "pairs", "pairs per step (at 126 frames)"),
        (axes[1], "frames", "frames", "frames per view"),
    ):
        pts = sorted((r for r in rows if r["axis"] == axis), key=lambda r: r[key])
        x = [r[key] for r in pts]
        ax.plot(x, [r["views_per_s"] for r in pts], "o-", color="C0", label="views/s")
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
        ax.set_xlabel(label)
        ax.set_ylabel("training views/s", color="C0")
        mem = ax.twinx()
        mem.plot(x, [r["activation_mib"] for r in pts], "s--", color="C3", label="activation MiB")
        mem.set_ylabel("activation memory (MiB)", color="C3")
        mem.spines["right"].set_visible(True)  # the book's style hides it
        mem.set_ylim(bottom=0)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    return fig
