"""What the book's chapters share about models and runs: the runs folder's names, the
models they compare, the probing and analysis runs of a chapter and the pretraining runs'
metadata (compute table of the equal-compute foil). The reference's, the committed foil's and the
random-init baseline's probes are merged from their committed results when those were computed
from the build's inputs (:func:`reuse_committed`).

The notebooks stay thin by calling these; the computation itself is the library's
(:func:`vit1d.probing.runner.run_probes`, :func:`vit1d.analysis.analyses.run_analyses`,
:func:`vit1d.pretrain.train.pretrain`). The tables of the results are in
:mod:`vit1d.book.tables`, the worked examples and figures in :mod:`vit1d.book.examples`.

Models of the book, by their ``model`` name in ``probes.csv``:

* ``contrastive``: the model trained in this build (``<runs>/pretrain``, chapter 03);
* ``reference``: the committed reference checkpoint (``checkpoints/reference``, the ``long``
  preset; :mod:`vit1d.studies.reference`), when it has the build's architecture;
* ``masked``: the equal-compute BEST-RQ foil (``<runs>/pretrain-masked``, trained by
  ``notebooks/03_pretrain_masked.ipynb`` with ``loss.objective=masked``, or the committed one
  placed there: :mod:`vit1d.book.foil`);
* ``random-init``: the contrastive model's architecture at random initialisation (one
  network, or one init seed per probe seed);
* ``logmel``: the log-mel input itself.

Used by ``notebooks/03_pretrain_masked.ipynb``, chapters 04-08 and ``notebooks/10_explorer.ipynb``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from vit1d.analysis.analyses import read_results as read_analyses_folder
from vit1d.analysis.analyses import run_analyses
from vit1d.book.layout import find_root
from vit1d.book.tables import best_view, read_summary
from vit1d.core.errors import UserError
from vit1d.features.sources import ModelSpec, architecture_config, checkpoint_step
from vit1d.models.model import DEFAULTS
from vit1d.probing.committed import (
    RESULTS_DIR,
    merge_committed,
    mismatch,
    reuse_key,
    weights_id,
)
from vit1d.probing.linear import ProbeConfig
from vit1d.probing.runner import (
    ExtractOptions,
    baseline_sources,
    corpus_name,
    emergence_sources,
    run_probes,
)
from vit1d.probing.settings import ProbeSettings, probe_settings
from vit1d.probing.tasks import load_task
from vit1d.studies.reference import REFERENCE_DIR, committed_sources

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


# ----------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------


def masked_checkpoint(paths: Any) -> Path:
    """The masked foil's run folder: beside the contrastive checkpoint when that one is the
    build's own, else ``<runs>/pretrain-masked``."""
    return Path(paths.runs) / MASKED_RUN


def has_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / "model.safetensors").is_file()


def repository_root() -> Path:
    """The repository the committed models live in (the working directory outside one)."""
    try:
        return find_root()
    except Exception:  # not inside the repository: no committed models
        return Path.cwd()


def reference_checkpoint() -> Path:
    """The committed reference checkpoint folder (:mod:`vit1d.studies.reference`)."""
    return repository_root() / REFERENCE_DIR


def committed_results() -> dict[str, Path]:
    """Where the probe results of the models that do not depend on the build's training are
    committed, by ``model`` name (:func:`vit1d.studies.reference.committed_sources`)."""
    sources = committed_sources(reference_checkpoint())
    return {name: folder / RESULTS_DIR for name, (_, folder) in sources.items()}


#: Model settings that shape only the projection heads, which no feature reads.
HEAD_SETTINGS = ("head", "head_dims", "twin_head")


def same_backbone(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two model configs (``config.json``'s ``model``) build the same backbone: equal
    over :data:`vit1d.models.model.DEFAULTS` (a key an older checkpoint lacks takes its
    default), projection heads aside. The reference joins a build's probes only then, so that
    the build's random-init baseline applies to it."""

    def backbone(cfg: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in {**DEFAULTS, **cfg}.items() if k not in HEAD_SETTINGS}

    return backbone(a) == backbone(b)


def model_sources(
    paths: Any,
    settings: ProbeSettings,
    masked: bool = True,
    baselines: bool = True,
    reference: bool = True,
) -> tuple[list[list[Any]], list[str]]:
    """Source groups for :func:`vit1d.probing.runner.run_probes`: the contrastive checkpoint, the
    masked one (when trained), the committed reference checkpoint (when it exists and has the
    build's architecture, so the same baselines apply), the random-init model
    (``settings.random_init_seeds`` init seeds) and the log-mel baseline. Returns
    ``(sources, notes)``; a missing or skipped checkpoint is a note."""
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
        elif not same_backbone(architecture_config(str(ref)), architecture_config(str(ckpt))):
            notes.append(
                "the reference checkpoint is left out: its architecture differs from this "
                "preset's, so the random-init baseline would not apply to it"
            )
        else:
            sources.append(
                [ModelSpec("checkpoint", str(ref), label="reference", step=checkpoint_step(ref))]
            )
    if baselines:
        sources += baseline_sources(
            architecture_config(str(ckpt)), settings.random_init_seeds, True
        )
    return sources, notes


def reuse_committed(
    paths: Any,
    sources: list[list[Any]],
    tasks: Sequence[Any],
    settings: ProbeSettings,
    cfg: ProbeConfig,
    notes: list[str],
) -> list[list[Any]]:
    """``sources`` without the models whose committed probe results (:func:`committed_results`)
    were computed from this build's inputs (:mod:`vit1d.probing.committed`): the reference,
    the committed foil when the build took it, the random-init baseline. Their rows are
    merged into the build's results instead. A note says which, and why not when they do not
    apply."""
    corpus = corpus_name(tasks[0].manifest.parent.parent)
    names = [t.name for t in tasks]
    folders = committed_results()
    kept = []
    for group in sources:
        model = group[0].name
        committed = folders.get(model)
        if committed is None or not committed.is_dir():
            kept.append(group)
            continue
        key = reuse_key(weights_id(group), tasks, corpus, settings.seeds, cfg)
        why = mismatch(committed, key)
        if why is not None:
            notes.append(f"{why}: the {model} model is probed in this build")
            kept.append(group)
            continue
        merge_committed(committed, paths.results, model, group[0].checkpoint_name, names)
        notes.append(
            f"the {model} model's probes are the ones committed in {committed}, computed from "
            "these weights, this corpus's tasks, these probe settings and this code"
        )
    return kept


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
    settings = probe_settings(preset)
    cfg = ProbeConfig(**settings.config)
    ext = ExtractOptions(cache_dir=str(Path(paths.runs) / EMBED_CACHE))
    loaded = load_tasks(paths, tasks)
    if not loaded:
        raise FileNotFoundError(f"no manifests for tasks {', '.join(tasks)} under {paths.data}")
    sources, notes = model_sources(paths, settings, masked=masked)
    sources = reuse_committed(paths, sources, loaded, settings, cfg, notes)
    common = dict(seeds=settings.seeds, config=cfg, extract=ext, progress=False, say=say)
    out = run_probes(loaded, sources, paths.results, **common)
    ran = {"tasks": [t.name for t in loaded], "notes": notes, "run_ids": out["run_ids"]}
    if emergence:
        em_tasks = [t for t in loaded if t.name in settings.emergence_tasks]
        # the final model was probed above at every view: its row is the curve's last point
        final_step = sources[0][0].step
        snaps = emergence_sources(paths.checkpoint, final_step=final_step) if em_tasks else []
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


def read_analyses(folder: str | Path) -> dict[str, Any] | None:
    """:func:`vit1d.analysis.analyses.read_results` of a folder, or ``None`` when it holds none."""

    try:
        return read_analyses_folder(folder)
    except UserError:
        return None
