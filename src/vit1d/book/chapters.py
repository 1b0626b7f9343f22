"""What the book's chapters share: which models they compare, the probe settings of each
preset, the probing runs, summary tables, the authors' reference numbers and the example
transcriptions of the local-probes chapter.

The notebooks stay thin by calling these; the computation itself is the library's
(:func:`vit1d.probing.runner.run_probes`, :func:`vit1d.analysis.analyses.run_analyses`,
:func:`vit1d.pretrain.train.pretrain`).

Models of the book, by their ``model`` name in ``probes.csv``:

* ``contrastive``: the model trained in this build (``<runs>/pretrain``, chapter 03);
* ``reference``: the committed reference checkpoint (``checkpoints/reference``, the ``long``
  preset; :mod:`vit1d.studies.reference`), when it has the build's architecture;
* ``masked``: the equal-compute BEST-RQ foil (``<runs>/pretrain-masked``, trained by
  ``notebooks/03_pretrain_masked.ipynb`` with ``loss.objective=masked``);
* ``random-init``: the contrastive model's architecture at random initialisation (one init
  seed per probe seed);
* ``logmel``: the log-mel input itself.

Used by ``notebooks/03_pretrain_masked.ipynb`` and chapters 04-09.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vit1d.analysis import attention as att
from vit1d.analysis.analyses import (
    example_ssms,
    load_clip,
    random_twin,
    read_manifest,
    run_analyses,
)
from vit1d.analysis.analyses import read_results as read_analyses_folder
from vit1d.book.layout import find_root
from vit1d.core.errors import UserError
from vit1d.corpus.tasks import TWINS_CSV
from vit1d.probing import metrics as M
from vit1d.probing.linear import LinearProbes, ProbeConfig, standardise
from vit1d.probing.results import read_results
from vit1d.probing.settings import ProbeSettings, probe_settings
from vit1d.probing.tasks import frame_targets, limit_files, load_task, read_chords
from vit1d.studies.reference import REFERENCE_DIR
from vit1d.viz import widgets

#: Folder names under the runs folder.
MASKED_RUN = "pretrain-masked"
EMBED_CACHE = "embed-cache"
#: Results sub-folders of the analyses (``vit1d.analysis.analyses``).
ATTENTION_DIR = "attention"
SSM_DIR = "ssm"
MASKED_ANALYSES_DIR = "analyses-masked"
#: The run metadata both pretraining runs record, gathered for the foil (claims ledger).
RUN_KEYS = (
    "objective",
    "steps",
    "views_per_step",
    "frames_per_view",
    "train_flops_per_step",
    "train_seconds",
    "views_per_s_median",
    "first_loss",
    "final_loss",
    "precision",
)

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


# ----------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------


def masked_checkpoint(paths: Any) -> Path:
    """The masked foil's run folder: beside the contrastive checkpoint when that one is the
    build's own, else ``<runs>/pretrain-masked``."""
    return Path(paths.runs) / MASKED_RUN


def has_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / "model.safetensors").is_file()


def reference_checkpoint() -> Path:
    """The committed reference checkpoint folder (:mod:`vit1d.studies.reference`)."""

    try:
        root = find_root()
    except Exception:  # not inside the repository: no committed reference
        root = Path.cwd()
    return root / REFERENCE_DIR


def model_sources(
    paths: Any,
    settings: ProbeSettings,
    masked: bool = True,
    baselines: bool = True,
    reference: bool = True,
) -> tuple[list[list[Any]], list[str]]:
    """Source groups for :func:`vit1d.probing.runner.run_probes`: the contrastive checkpoint, the
    masked one (when trained), the committed reference checkpoint (when it exists and has the
    build's architecture, so the same baselines apply), the random-init model (one init seed
    per probe seed) and the log-mel baseline. Returns ``(sources, notes)``; a missing or
    skipped checkpoint is a note."""
    from vit1d.features.sources import ModelSpec, architecture_config, checkpoint_step
    from vit1d.probing.runner import baseline_sources

    sources: list[list[Any]] = []
    notes: list[str] = []
    ckpt = Path(paths.checkpoint)
    if not has_checkpoint(ckpt):
        raise FileNotFoundError(
            f"no checkpoint at {ckpt}: run notebooks/03_pretrain.ipynb first (the pipeline does)"
        )
    sources.append([ModelSpec("checkpoint", str(ckpt), step=checkpoint_step(ckpt))])
    mk = masked_checkpoint(paths)
    if masked:
        if has_checkpoint(mk):
            sources.append(
                [ModelSpec("checkpoint", str(mk), label="masked", step=checkpoint_step(mk))]
            )
        else:
            notes.append(f"no masked model at {mk}: run notebooks/03_pretrain_masked.ipynb")
    if reference:
        ref = reference_checkpoint()
        if not has_checkpoint(ref):
            notes.append(f"no reference checkpoint at {ref}: `make reference` trains it")
        elif architecture_config(str(ref)) | {"head": "none"} != architecture_config(str(ckpt)) | {
            "head": "none"
        }:
            notes.append(
                "the reference checkpoint is left out: its architecture differs from this "
                "preset's, so the random-init baseline would not apply to it"
            )
        else:
            sources.append(
                [ModelSpec("checkpoint", str(ref), label="reference", step=checkpoint_step(ref))]
            )
    if baselines:
        sources += baseline_sources(architecture_config(str(ckpt)), len(settings.seeds), True)
    return sources, notes


def load_tasks(paths: Any, names: Sequence[str]) -> list[Any]:
    """The tasks of ``names`` whose manifest exists in the corpus."""

    return [load_task(paths.manifest(t), t) for t in names if paths.manifest(t).is_file()]


def run_chapter_probes(
    paths: Any,
    tasks: Sequence[str],
    preset: str,
    masked: bool = True,
    emergence: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Probe ``tasks`` on every model of the book (and, with ``emergence``, the contrastive
    run's snapshots on the preset's emergence tasks); results merged into
    ``<results>/probes.csv`` and ``probes_summary.csv``. Returns what was run."""
    from vit1d.probing.runner import ExtractOptions, emergence_sources, run_probes

    settings = probe_settings(preset)
    cfg = ProbeConfig(**settings.config)
    ext = ExtractOptions(cache_dir=str(Path(paths.runs) / EMBED_CACHE))
    loaded = load_tasks(paths, tasks)
    if not loaded:
        raise FileNotFoundError(f"no manifests for tasks {', '.join(tasks)} under {paths.data}")
    sources, notes = model_sources(paths, settings, masked=masked)
    common = dict(seeds=settings.seeds, config=cfg, extract=ext, progress=False, say=say)
    out = run_probes(loaded, sources, paths.results, **common)
    ran = {"tasks": [t.name for t in loaded], "notes": notes, "run_ids": out["run_ids"]}
    if emergence:
        em_tasks = [t for t in loaded if t.name in settings.emergence_tasks]
        snaps = emergence_sources(paths.checkpoint) if em_tasks else []
        # a curve is drawn at the final model's best layer and pooling only, so only that
        # view of each snapshot is probed (13 x 3 times less work than all of them)
        views: dict[str, tuple[int, str] | None] = {}
        if snaps:
            summary = read_summary(paths)
            views = {t.name: best_view(summary, t.name) for t in em_tasks}
        for task in em_tasks:
            view = views.get(task.name)
            if view is None:
                continue
            more = run_probes(
                [task], snaps, paths.results, layers=[view[0]], poolings=[view[1]], **common
            )
            ran.setdefault("emergence_tasks", []).append(task.name)
            ran["run_ids"] += more["run_ids"]
    for t in loaded:
        ran["notes"] += [f"{t.name}: {n}" for n in t.notes]
    return ran


def read_summary(paths: Any) -> Any:

    return read_results(paths.results)[1]


# ----------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------


def _fmt(mean: float, lo: float, hi: float) -> str:
    if not np.isfinite(mean):
        return "-"
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
    return f"{mean:.3f}"


def final_summary(summary: Any, model: str, split: str = "test") -> Any:
    """Rows of ``model``'s final checkpoint (no snapshots; see :func:`vit1d.probing.compare.final_rows`)."""
    from vit1d.probing.compare import final_rows

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
    import pandas as pd

    from vit1d.probing.compare import best_row, final_rows

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


def pooling_table(summary: Any, tasks: Sequence[tuple[str, str]], model: str = "contrastive"):
    """Per (task, metric): the model's test score for each pooling at that pooling's layer
    chosen on the validation split, ``mean [CI] (Ln)``."""
    import pandas as pd

    from vit1d.probing.compare import best_row, final_rows

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
    import pandas as pd

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
    import pandas as pd

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


# ----------------------------------------------------------------------------------------
# Pretraining runs (equal compute)
# ----------------------------------------------------------------------------------------


def run_metadata(run_dir: str | Path) -> dict[str, Any]:
    """The fields of :data:`RUN_KEYS` from a run's ``run.json`` (missing ones as None)."""
    run = json.loads((Path(run_dir) / "run.json").read_text())
    out = {k: run.get(k) for k in RUN_KEYS}
    out["objective"] = out["objective"] or "contrastive"
    out["run_dir"] = str(run_dir)
    return out


def write_pretrain_runs(paths: Any, runs: dict[str, str | Path]) -> Path:
    """``<results>/pretrain_runs.json``: {model name: run metadata}, read by the ledger."""
    data = {name: run_metadata(folder) for name, folder in runs.items()}
    out = Path(paths.results) / "pretrain_runs.json"
    out.write_text(json.dumps(data, indent=2, default=str))
    return out


def compute_table(runs: dict[str, dict[str, Any]]) -> Any:
    """The two runs' compute side by side (steps, views, frames, FLOPs, time, losses)."""
    import pandas as pd

    labels = {
        "objective": "objective",
        "steps": "optimiser steps",
        "views_per_step": "views per step",
        "frames_per_view": "frames per view",
        "train_flops_per_step": "training FLOPs per step",
        "train_seconds": "training time (s)",
        "views_per_s_median": "views per second (median)",
        "first_loss": "first loss",
        "final_loss": "final loss",
        "precision": "precision",
    }
    table = {}
    for name, meta in runs.items():
        col = {}
        for key, label in labels.items():
            v = meta.get(key)
            if key == "train_flops_per_step" and v is not None:
                v = f"{float(v):.3g}"
            elif isinstance(v, float):
                v = f"{v:.4g}"
            col[label] = "-" if v is None else v
        table[name] = col
    return pd.DataFrame(table)


# ----------------------------------------------------------------------------------------
# Analyses
# ----------------------------------------------------------------------------------------


def run_chapter_analyses(
    paths: Any,
    part: str,
    preset: str,
    checkpoint: str | Path | None = None,
    out: str | Path | None = None,
    max_clips: int | None = None,
) -> dict[str, Any]:
    """Run one part (``onsets`` or ``ssm``) of :func:`vit1d.analysis.analyses.run_analyses` for the
    chapter into ``out`` (default ``<results>/attention`` or ``<results>/ssm``) and read it
    back (:func:`vit1d.analysis.analyses.read_results`)."""

    settings = probe_settings(preset)
    folder = (
        Path(out) if out else Path(paths.results) / (ATTENTION_DIR if part == "onsets" else SSM_DIR)
    )
    run_analyses(
        checkpoint or paths.checkpoint,
        paths.data,
        folder,
        max_clips=settings.analyses_clips if max_clips is None else max_clips,
        parts=(part,) if isinstance(part, str) else tuple(part),
        progress=False,
        log=lambda _msg: None,
    )
    return read_analyses_folder(folder)


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
    """Train one linear probe (the suite's settings, one seed) on the contrastive model's
    frame tokens of ``layer`` and transcribe the ``example``-th test clip of ``task_name``."""
    import torch

    from vit1d.audio.frontend import FRAME_RATE
    from vit1d.features.embed import embed
    from vit1d.features.sources import ModelSpec

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
    tr, va, te = task.indices("train"), task.indices("valid"), task.indices("test")

    def xy(idx: np.ndarray) -> tuple[Any, np.ndarray]:
        x = np.concatenate(emb.frames(layer, idx)).astype(np.float32)
        y = np.concatenate(
            [frame_targets(task, task.examples[i], int(emb.n_frames[i])) for i in idx]
        )
        return torch.from_numpy(x), y

    xtr, ytr = xy(tr)
    xva, yva = xy(va)
    mean, std = standardise(xtr)
    softmax = task.spec.loss == "softmax"
    to_t = (
        (lambda y: torch.from_numpy(y).long())
        if softmax
        else (lambda y: torch.from_numpy(y).float())
    )
    pos_weight = None
    if task.spec.balance:
        pos_weight = (len(ytr) - float(ytr.sum())) / max(float(ytr.sum()), 1.0)
    probe = LinearProbes([0], [seed], xtr.shape[1], task.n_outputs, task.spec.loss, pos_weight)
    probe.fit(((xtr - mean) / std)[None], to_t(ytr), ((xva - mean) / std)[None], to_t(yva), cfg)
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

    from vit1d.audio.frontend import FRAME_RATE

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


def probe_fit_text(cfg: Any, seeds: Sequence[int], local: bool = False) -> str:
    """How the probes of a :class:`vit1d.probing.linear.ProbeConfig` are fitted (those of local tasks
    with ``local``), as a sentence for the probing chapters (04 and 05)."""
    n = len(seeds)
    if (cfg.local_solver if local else cfg.solver) == "lbfgs":
        l2 = ", ".join(f"{a:g}" for a in sorted(cfg.l2))
        return (
            "fitted exactly: each probe is the minimum of its convex loss (full-batch L-BFGS, "
            f"at most {cfg.max_iter} iterations) for each L2 weight of {l2}, keeping the weight "
            "of lowest validation loss; the solution does not depend on a seed, so one probe "
            f"is fitted per layer and pooling (the random-init model: one per init seed, {n})"
        )
    return (
        f"trained with Adam (learning rate {cfg.lr:g}, batches of {cfg.batch_size}), at most "
        f"{cfg.max_epochs} epochs of {cfg.steps_per_epoch} steps with early stopping on the "
        f"validation loss (patience {cfg.patience}), {n} probe seeds per layer and pooling "
        "(the random-init model: one init seed per probe seed)"
    )


def best_view(summary: Any, task: str, model: str = "contrastive") -> tuple[int, str] | None:
    """``(layer, pooling)`` of ``model``'s final checkpoint on ``task``'s primary metric,
    chosen on the validation split (:func:`vit1d.probing.compare.best_row`), where the emergence
    curves are drawn; ``None`` when the task was not probed."""
    from vit1d.probing.compare import best_row, final_rows

    rows = final_rows(summary, model, split=None)
    best = best_row(rows, task, ["cls", "seq", "avg", "frame"])
    if best is None:
        return None
    return int(best["layer"]), str(best["pooling"])


def emergence_figures(summary: Any, tasks: Sequence[str], model: str = "contrastive") -> Any:
    """One figure with :func:`vit1d.viz.plots.emergence_curve` per task, at the final model's
    best layer and pooling for the task's primary metric; ``None`` when there is nothing."""
    import matplotlib.pyplot as plt

    from vit1d.probing.compare import PRIMARY_METRIC
    from vit1d.viz import plots

    panels = []
    for task in tasks:
        view = best_view(summary, task, model)
        if view is not None:
            panels.append((task, PRIMARY_METRIC.get(task), *view))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.2), squeeze=False)
    for ax, (task, metric, layer, pooling) in zip(axes[0], panels, strict=True):
        plots.emergence_curve(summary, task, metric, layer, pooling, model=model, ax=ax)
    fig.tight_layout()
    return fig


def twin_examples(data: str | Path, n: int = 1, min_duration: float = 8.0) -> list[dict]:
    """The first ``n`` pretraining excerpts (of at least ``min_duration`` seconds) that have
    twin renders (``pretrain/twins.csv``, :mod:`vit1d.corpus.twins`): per excerpt a dict with
    ``render_id``, ``audio``, ``instrumentation`` and ``room`` of the original and a
    ``twins`` list of the same for each twin (plus its ``redraw``); [] without twins."""
    import pandas as pd

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
    from vit1d.audio.frontend import SAMPLE_RATE, load_audio

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
    from vit1d.audio.frontend import FRAME_RATE, SAMPLE_RATE, load_audio
    from vit1d.models.checkpoint import load_pretrained

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
    (:func:`vit1d.analysis.analyses.example_ssms`): the trained model's layers, the random-init
    model's last layer and the reference SSMs."""
    from vit1d.audio.frontend import LogMel
    from vit1d.models.checkpoint import load_pretrained

    row = test_clip_row(paths, "chords", index)
    clip = load_clip(row, LogMel())
    model = load_pretrained(paths.checkpoint, head=False)
    mats = example_ssms(clip, {"trained": model, "random": random_twin(model, seed)})
    return clip.clip, mats


def ssm_best_table(summary: Any, models: Sequence[str] = ("trained", "random", "logmel")) -> Any:
    """Per dimension: each model's best layer and its score above chance."""
    import pandas as pd

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


def model_curves_figure(
    summary: Any,
    panels: Sequence[tuple[str, str]],
    models: Sequence[str] = ("contrastive", "masked"),
) -> Any:
    """:func:`vit1d.viz.plots.layer_curves` of several models side by side: one row per model,
    one column per ``(task, metric)`` panel, the same y range per column, with the
    random-init and log-mel baselines in every panel."""
    import matplotlib.pyplot as plt

    from vit1d.viz import plots

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
            plots.layer_curves(summary, task, metric, model=m, ax=ax, legend=(i == 0 and j == 0))
            ax.set_title(f"{m}: {task}", fontsize=10)
    fig.tight_layout()
    return fig


def read_analyses(folder: str | Path) -> dict[str, Any] | None:
    """:func:`vit1d.analysis.analyses.read_results` of a folder, or ``None`` when it holds none."""

    try:
        return read_analyses_folder(folder)
    except UserError:
        return None


def show(table: Any) -> Any:
    """A table for the book: a pandas Styler without the row index."""
    return table.style.hide(axis="index")
