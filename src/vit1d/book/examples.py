"""The worked examples the book's chapters play and plot: a local probe's transcription of
a test clip, the twin renders of a pretraining excerpt, audio for a player, the onset
curves and self-similarity matrices of a test clip; and the figures of several probe
curves side by side (models, emergence over training).

Used by chapters 03b and 04-08 and ``notebooks/10_explorer.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vit1d.analysis import attention as att
from vit1d.analysis.clips import load_clip, random_twin, read_manifest
from vit1d.analysis.ssm_scores import example_ssms
from vit1d.audio.frontend import FRAME_RATE, SAMPLE_RATE, LogMel, load_audio
from vit1d.book.chapters import EMBED_CACHE
from vit1d.book.tables import best_view
from vit1d.corpus.tasks import TWINS_CSV
from vit1d.features.embed import embed
from vit1d.features.sources import ModelSpec
from vit1d.models.checkpoint import load_pretrained
from vit1d.probing import metrics as M
from vit1d.probing.compare import PRIMARY_METRIC
from vit1d.probing.linear import ProbeConfig
from vit1d.probing.probe import fit_frame_probe
from vit1d.probing.settings import probe_settings
from vit1d.probing.tasks import limit_files, load_task, read_chords
from vit1d.viz import probing_plots, widgets

# ----------------------------------------------------------------------------------------
# Example transcriptions (local probes)
# ----------------------------------------------------------------------------------------


@dataclass
class Transcription:
    """One test clip's probe output against its reference."""

    task: str
    audio: Path
    layer: int
    duration: float
    reference: Any  # chords: (intervals, labels); beats: times
    estimate: Any  # chords: (intervals, labels); beats: times
    activation: np.ndarray | None = None  # beats: per-frame probability
    score: dict[str, float] = field(default_factory=dict)


def transcribe_example(
    paths: Any, task_name: str, layer: int, preset: str, example: int = 0, seed: int = 0
) -> Transcription:
    """Train one linear probe on the contrastive model's frame tokens of ``layer`` as the
    chapter's probes are trained (:func:`vit1d.probing.probe.fit_frame_probe`: the task's
    solver and frames, seed ``seed``) and transcribe the ``example``-th test clip of
    ``task_name``."""
    settings = probe_settings(preset)
    cfg = ProbeConfig(**settings.config)
    task = limit_files(load_task(paths.manifest(task_name), task_name), cfg.max_local_files)
    spec = ModelSpec("checkpoint", str(paths.checkpoint))
    emb = embed(
        spec,
        [ex.audio for ex in task.examples],
        cache_dir=str(Path(paths.runs) / EMBED_CACHE),
        frames=True,
        progress=False,
    )
    probe, mean, std = fit_frame_probe(task, emb, layer, seed, cfg)
    te = task.indices("test")
    i = int(te[example % len(te)])
    ex = task.examples[i]
    x = torch.from_numpy(emb.frames(layer, [i])[0].astype(np.float32))
    with torch.no_grad():
        out = probe.logits((x - mean) / std, [0])[0].numpy()
    duration = float(emb.n_frames[i] - 1) / FRAME_RATE + 0.5 / FRAME_RATE
    if task.name == "chords":
        labels = [M.CHORD_CLASSES[k] for k in np.argmax(out, axis=1)]
        est = M.frames_to_intervals(labels, FRAME_RATE, duration)
        ref = read_chords(ex.label)
        score = M.chord_scores(ref[0], ref[1], est[0], est[1])
        score = {k: float(v[0]) if isinstance(v, tuple) else float(v) for k, v in score.items()}
        return Transcription(task.name, ex.audio, layer, duration, ref, est, None, score)
    act = 1.0 / (1.0 + np.exp(-out[:, 0].astype(np.float64)))
    ref = M.load_events(ex.label)
    est = M.activation_to_beats(act, FRAME_RATE)
    score = {k: float(v) for k, v in M.beat_scores(ref, est).items()}
    return Transcription(task.name, ex.audio, layer, duration, ref, est, act, score)


def transcription_figure(t: Transcription, seconds: float | None = None) -> Any:
    """Reference against estimate: chord segments as two labelled lanes, or the beat
    activation with reference and estimated beats."""
    import matplotlib.pyplot as plt

    end = min(t.duration, seconds) if seconds else t.duration
    if t.task == "chords":
        fig, ax = plt.subplots(figsize=(9, 2.2))
        palette = plt.get_cmap("tab20")
        names: dict[str, int] = {}
        for lane, (intervals, labels) in enumerate((t.reference, t.estimate)):
            for (s, e), lab in zip(intervals, labels, strict=True):
                if s >= end:
                    continue
                c = palette(names.setdefault(lab, len(names)) % 20)
                y = 1 - lane
                ax.barh(y, min(e, end) - s, left=s, height=0.8, color=c, edgecolor="white")
                if min(e, end) - s > 0.35:
                    ax.text((s + min(e, end)) / 2, y, lab, ha="center", va="center", fontsize=7)
        ax.set_yticks([1, 0], ["reference", f"probe (layer {t.layer})"])
        ax.set_xlim(0, end)
        ax.set_xlabel("time (s)")
        ax.set_title(f"chords: majmin {t.score.get('majmin', float('nan')):.2f}", fontsize=10)
    else:
        fig, ax = plt.subplots(figsize=(9, 2.4))
        times = np.arange(len(t.activation)) / FRAME_RATE
        keep = times <= end
        ax.plot(times[keep], t.activation[keep], color="C0", lw=1, label="beat activation")
        for k, b in enumerate(t.reference[t.reference <= end]):
            ax.axvline(b, color="0.2", ls="--", lw=0.8, label="reference beats" if k == 0 else None)
        est = t.estimate[t.estimate <= end]
        ax.plot(est, np.full(len(est), 1.05), "v", color="C3", ms=5, label="tracked beats")
        ax.set_xlim(0, end)
        ax.set_ylim(0, 1.12)
        ax.set_xlabel("time (s)")
        ax.legend(fontsize=7, frameon=False, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.3))
        ax.set_title(
            f"beats (layer {t.layer}): F {t.score.get('f_measure', float('nan')):.2f}", fontsize=10
        )
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------
# Pretraining excerpts and audio
# ----------------------------------------------------------------------------------------


def twin_examples(data: str | Path, n: int = 1, min_duration: float = 8.0) -> list[dict]:
    """The first ``n`` pretraining excerpts (of at least ``min_duration`` seconds) that have
    twin renders (``pretrain/twins.csv``, :mod:`vit1d.corpus.twins`): per excerpt a dict with
    ``render_id``, ``audio``, ``instrumentation`` and ``room`` of the original and a
    ``twins`` list of the same for each twin (plus its ``redraw``); [] without twins."""
    folder = Path(data) / "pretrain"
    if not (folder / TWINS_CSV).is_file():
        return []
    pool = pd.read_csv(folder / "manifest.csv", keep_default_na=False)
    twins = pd.read_csv(folder / TWINS_CSV, keep_default_na=False)

    def facts(row: Any) -> dict:
        room = f"RT60 {row.reverb_rt60:.1f} s" if row.reverb_rt60 else "dry"
        if row.noise != "none":
            room += f", {row.noise} noise at {row.snr_db:.0f} dB SNR"
        return {
            "render_id": row.render_id,
            "audio": str((folder / row.audio).resolve()),
            "instrumentation": row.instrumentation.replace(";", ", "),
            "room": room,
        }

    out = []
    for row in pool[pool["duration"] >= min_duration].itertuples():
        mine = twins[twins["twin_of"] == row.render_id]
        if mine.empty:
            continue
        out.append(
            {
                **facts(row),
                "work": row.work,
                "twins": [{**facts(t), "redraw": t.redraw} for t in mine.itertuples()],
            }
        )
        if len(out) == n:
            break
    return out


def example_audio(path: str | Path, seconds: float = 10.0) -> tuple[np.ndarray, int]:
    """The first ``seconds`` of an audio file at 16 kHz, for an audio player."""
    wave = load_audio(path, SAMPLE_RATE)
    return wave[: int(seconds * SAMPLE_RATE)], SAMPLE_RATE


# ----------------------------------------------------------------------------------------
# Attention and self-similarity examples
# ----------------------------------------------------------------------------------------


def best_curve_row(summary: Any, model: str) -> Any:
    """The onset-summary row of ``model``'s best curve: highest validation F (``f_valid``),
    as the analyses choose it; test F when there is no validation score."""
    s = summary[summary["model"] == model]
    if s.empty:
        return None
    col = "f_valid" if "f_valid" in s and s["f_valid"].notna().any() else "f"
    return s.loc[s[col].astype(float).idxmax()]


def test_clip_row(paths: Any, task: str, index: int = 0) -> Any:
    """The ``index``-th test row of a task manifest (paths absolute), as a dict."""

    df = read_manifest(paths.data, task)
    rows = df[df["split"] == "test"]
    rows = rows if len(rows) else df
    return rows.iloc[index % len(rows)].to_dict()


def onset_example(paths: Any, summary: Any, index: int = 0, seed: int = 0) -> dict[str, Any]:
    """Onset curves of the first 4 s window of a test clip of the ``onsets`` task: the
    trained model's best curve, the random-init model's best and spectral flux, each with
    the peaks picked at its tuned threshold, and the labelled onsets (seconds)."""
    row = test_clip_row(paths, "onsets", index)
    y = load_audio(row["audio"], SAMPLE_RATE)
    onsets = M.load_events(row["annotation"])
    model = load_pretrained(paths.checkpoint, head=False)
    curves: dict[str, np.ndarray] = {}
    peaks: dict[str, np.ndarray] = {}
    data = None
    for name, m in (("trained", model), ("random", random_twin(model, seed))):
        best = best_curve_row(summary, name)
        if best is None:
            continue
        view = widgets.prepare_clip(m, y, onsets, name=name)
        data = widgets.view_data(view, 0, int(best["layer"]), str(best["head"]), best["method"])
        label = f"{name}: {best['method']}, layer {int(best['layer'])}, head {best['head']}"
        curves[label] = data["curve"]
        peaks[label] = att.pick_peaks(data["curve"], FRAME_RATE, delta=float(best["delta"]))
    flux_row = summary[summary["model"] == "spectral_flux"]
    n = len(next(iter(curves.values()))) if curves else int(4 * FRAME_RATE)
    flux = att.spectral_flux(y)[:n]
    curves["spectral flux"] = flux
    delta = float(flux_row["delta"].iloc[0]) if len(flux_row) else 0.07
    peaks["spectral flux"] = att.pick_peaks(flux, FRAME_RATE, delta=delta)
    end = n / FRAME_RATE
    return {
        "clip": str(row.get("render_id", Path(row["audio"]).stem)),
        "curves": curves,
        "peaks": peaks,
        "onsets": onsets[onsets < end],
        "audio": y[: int(end * SAMPLE_RATE)],
        "sample_rate": SAMPLE_RATE,
        "frame_rate": FRAME_RATE,
    }


def ssm_example(paths: Any, index: int = 0, seed: int = 0) -> tuple[str, dict[str, Any]]:
    """Example SSMs of the first window of a test clip of the ``chords`` task
    (:func:`vit1d.analysis.ssm_scores.example_ssms`): the trained model's layers, the random-init
    model's last layer and the reference SSMs."""
    row = test_clip_row(paths, "chords", index)
    clip = load_clip(row, LogMel())
    model = load_pretrained(paths.checkpoint, head=False)
    mats = example_ssms(clip, {"trained": model, "random": random_twin(model, seed)})
    return clip.clip, mats


# ----------------------------------------------------------------------------------------
# Figures of probe curves
# ----------------------------------------------------------------------------------------


def model_curves_figure(
    summary: Any,
    panels: Sequence[tuple[str, str]],
    models: Sequence[str] = ("contrastive", "masked"),
) -> Any:
    """:func:`vit1d.viz.probing_plots.layer_curves` of several models side by side: one row per
    model, one column per ``(task, metric)`` panel, the same y range per column, with the
    random-init and log-mel baselines in every panel."""
    import matplotlib.pyplot as plt

    have = set(zip(summary["task"], summary["metric"], strict=True))
    panels = [p for p in panels if tuple(p) in have]
    models = [m for m in models if m in set(summary["model"])]
    if not panels or not models:
        return None
    fig, axes = plt.subplots(
        len(models),
        len(panels),
        figsize=(3.2 * len(panels), 2.7 * len(models)),
        squeeze=False,
        sharey="col",
    )
    for i, m in enumerate(models):
        for j, (task, metric) in enumerate(panels):
            ax = axes[i][j]
            probing_plots.layer_curves(
                summary, task, metric, model=m, ax=ax, legend=(i == 0 and j == 0)
            )
            ax.set_title(f"{m}: {task}", fontsize=10)
    fig.tight_layout()
    return fig


def emergence_figures(summary: Any, tasks: Sequence[str], model: str = "contrastive") -> Any:
    """One figure with :func:`vit1d.viz.probing_plots.emergence_curve` per task, at the final
    model's best layer and pooling for the task's primary metric; ``None`` when there is
    nothing."""
    import matplotlib.pyplot as plt

    panels = []
    for task in tasks:
        view = best_view(summary, task, model)
        if view is not None:
            panels.append((task, PRIMARY_METRIC.get(task), *view))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.2), squeeze=False)
    for ax, (task, metric, layer, pooling) in zip(axes[0], panels, strict=True):
        probing_plots.emergence_curve(summary, task, metric, layer, pooling, model=model, ax=ax)
    fig.tight_layout()
    return fig
