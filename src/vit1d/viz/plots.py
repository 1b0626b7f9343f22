"""The book's figure basics (matplotlib / seaborn / ipywidgets): its style and width, NumPy
and PNG conversion, and the figures of the method and pretraining chapters.

The notebooks stay thin: they compute or load results and call one function per figure, here,
in :mod:`vit1d.viz.analysis_plots` (attention and self-similarity) or in
:mod:`vit1d.viz.probing_plots` (probes and the recipe study), so no plotting code is copied
between chapters. Every function takes arrays (NumPy or torch) and returns a matplotlib
``Figure``; :func:`audio_player` returns an embedded player and :func:`image_stack` an
ipywidgets explorer that works in the static HTML book.

Used by: ``notebooks/01_method.ipynb`` (:func:`logmel_figure`), ``notebooks/03_pretrain.ipynb``
(:func:`training_figure`), ``notebooks/10_explorer.ipynb`` (:func:`matrix_figure`,
:func:`image_stack`), ``notebooks/99_reproducibility.ipynb`` (:func:`bench_scaling`).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import soundfile as sf

from vit1d.core.extras import missing

try:
    import ipywidgets as w
    import matplotlib as mpl
    import matplotlib.pyplot as plt
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


def to_numpy(x: Any) -> np.ndarray:
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
    mel = to_numpy(mel)
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
        w = to_numpy(wave).reshape(-1)
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
    m = to_numpy(mat)
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
    w = to_numpy(wave).astype(np.float32).reshape(-1)
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
