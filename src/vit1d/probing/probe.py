"""Linear probes on frozen features: every task, every layer, every pooling, several seeds.

A frozen backbone and one linear layer per (task, layer, pooling). By default
(``ProbeConfig(solver="lbfgs")``) each probe is the exact solution of its convex problem for a
few L2 weights, keeping the one of lowest validation loss (:class:`LinearProbes`); the solution
does not depend on a seed, so one is fitted per view (:func:`fit_seeds`). Local tasks, with
their ~1e5 training frames, keep the group's protocol (``local_solver="adam"``), which is an
option for every task (``solver="adam"``): one probe per seed, trained with Adam (lr 1e-3, batch 128)
in epochs of 128 steps, at most 50 epochs, early stopping on the validation loss (patience 5
epochs; the weights of the best epoch are kept). :mod:`vit1d.probing.solvers` compares the two on the
same features. Features are
standardised with the training split's mean and standard deviation. Global tasks use pooled
vectors (``cls``, ``seq``, ``avg``; ``meanstd`` for the log-mel baseline); local tasks apply
the probe to every frame token (pooling ``frame``).

=========  ========================================================  =====================
task       target and loss                                           decoded for the metric
=========  ========================================================  =====================
tagging    multi-hot tags of the training vocabulary; sigmoid (BCE)  scores -> AUC, AP
key        24 keys (those in train); softmax                         argmax key name
pitch      MIDI numbers in train; softmax                            argmax
instrument instruments in train; softmax                             argmax
tempo      log-spaced BPM classes (ratio 1.08); softmax              centre BPM of argmax
chords     25 classes (12 maj, 12 min, N) per frame; softmax         frames -> intervals
beats      per-frame beat activation (1 at a beat, 0.5 next to it);  librosa beat tracker
           sigmoid with positive weight n_neg / n_pos
onsets     per-frame onset activation, as beats                      peak picking (0.5)
=========  ========================================================  =====================

**Tempo as classes, not regression.** A regression on (log) BPM is pulled towards the mean
between octave-ambiguous answers (60 vs 120 BPM), which Acc1 scores as wrong; a softmax over
BPM classes can commit to one mode. The classes are log-spaced with ratio 1.08, the coarsest
spacing for which the centre of the right class is always within Acc1's 4 % of the truth
(``sqrt(1.08) = 1.039``): finer classes only split the training examples further (the first
build's ratio 1.04 gave 35 classes over 50-200 BPM, about 28 training clips each, and every
model was at chance).

**Chance.** Beside every model, :func:`chance_summary` scores the prior-only predictor (the
training split's most frequent class for every item; constant scores for tagging, whose
ROC-AUC is then 0.5 and AP each tag's prevalence) on the same splits, as model ``chance``.

**Independence.** The probes of one task are trained together as a stack of weight matrices
``W[g]`` (``torch.baddbmm``), which is exactly ``G`` independent linear layers: each has its
own initialisation (seeded), its own batch order (seeded), its own Adam state (Adam is
element-wise) and its own early stopping, and the stopping of one never changes another; the
result of a probe does not depend on which others share its stack. Chords ignore frames whose
reference chord has no maj/min reduction.

The views a task's probes read are :mod:`vit1d.probing.views`'s, the scoring of their outputs
:mod:`vit1d.probing.scoring`'s. Used by ``vit1d probe`` and the probing notebooks; results go
through :mod:`vit1d.probing.results`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vit1d.core.errors import UserError
from vit1d.probing import metrics as M
from vit1d.probing.items import scalar_items, tagging_items
from vit1d.probing.linear import LinearProbes, ProbeConfig, standardise
from vit1d.probing.results import bootstrap_tagging, summary_row
from vit1d.probing.scoring import TrackJob, score_global, score_local
from vit1d.probing.tasks import SPLITS, Task, global_targets
from vit1d.probing.views import (
    View,
    concat_frame_targets,
    frame_matrix,
    global_matrix,
    local_chunks,
    probe_groups,
    subsample_rows,
    task_views,
)

# ----------------------------------------------------------------------------------------------
# Probing one task
# ----------------------------------------------------------------------------------------------


def fit_seeds(solver: str, n_sources: int, seeds: Sequence[int]) -> list[int]:
    """The probe seeds that are fitted: all of ``seeds``, but with the exact solver on one
    feature source only the first. Its solution is the unique minimum of a strongly convex
    objective (L2 > 0), so another starting point gives the same probe up to the solver's
    tolerance: fitting it again per seed would repeat the work and count one probe as
    several. With one source per seed (random init) every seed has its own features."""
    seeds = [int(s) for s in seeds]
    if solver == "lbfgs" and n_sources == 1 and seeds:
        return seeds[:1]
    return seeds


def task_config(cfg: ProbeConfig, task: Task) -> ProbeConfig:
    """The settings ``task``'s probes are fitted with: a local task's solver is
    ``cfg.local_solver`` (module docstring)."""
    return replace(cfg, solver=cfg.local_solver) if task.spec.local else cfg


def fit_frame_probe(
    task: Task, embedding: Any, layer: int, seed: int, config: ProbeConfig
) -> tuple[LinearProbes, Any, Any]:
    """One probe of a local task's frame tokens at ``layer``, trained as :func:`probe_task`
    trains that view's probe of seed ``seed``: the task's solver, the training and validation
    frames it draws, standardised with the training frames' statistics. Returns ``(probe,
    mean, std)``; ``probe.logits((x - mean) / std, [0])`` transcribes frames ``x``. Used by
    the local-probing chapter's worked example (:func:`vit1d.book.examples.transcribe_example`)."""
    if not task.spec.local:
        raise ValueError(f"task {task.name} is not a frame-level task")
    cfg = task_config(config, task)
    tr, va = task.indices("train"), task.indices("valid")
    ytr, yva, ((_, pick_tr), (_, pick_va)) = _chunk_targets(task, embedding, tr, va, cfg)
    xtr = frame_matrix(embedding, layer, tr, pick_tr)
    xva = frame_matrix(embedding, layer, va, pick_va)
    mean, std = standardise(xtr)
    xtr_t, xva_t = ((xtr - mean) / std)[None], ((xva - mean) / std)[None]
    probe, _ = _fit_stack(task, [(0, seed)], [0], xtr_t, ytr, xva_t, yva, cfg, False)
    return probe, mean, std


def probe_task(
    task: Task,
    embeddings: Sequence[Any],
    seeds: Sequence[int] = (0, 1, 2),
    layers: Sequence[int] | None = None,
    poolings: Sequence[str] | None = None,
    config: ProbeConfig | None = None,
    splits: Sequence[str] = ("valid", "test"),
    progress: bool = False,
) -> dict[str, Any]:
    """Train and score every (layer, pooling, seed) probe of one task.

    ``embeddings``: one :class:`vit1d.features.cache.Embeddings` of ``task``'s files (in manifest
    order), or one per seed (random-init baselines: seed ``k`` probes init ``k``). Returns
    ``rows`` (task, layer, pooling, seed, split, metric, value, n), ``summary`` (per layer,
    pooling, split and metric: mean over seeds with bootstrap CI), ``items`` (the test
    split's per-item scores, :mod:`vit1d.probing.items`) and ``info``. Both the valid and the test
    split are scored by default: layers and poolings are chosen on valid, reported on test.
    """

    cfg = task_config(config or ProbeConfig(), task)
    for emb in embeddings:
        if [Path(p) for p in emb.paths] != [ex.audio for ex in task.examples]:
            raise ValueError("embeddings must list the task's audio files in manifest order")
    t0 = time.perf_counter()
    views = task_views(embeddings, task.spec.local, layers, poolings)
    fitted = fit_seeds(cfg.solver, len(embeddings), seeds)
    groups = probe_groups(views, len(embeddings), fitted)
    tr, va = task.indices("train"), task.indices("valid")
    scores: dict[tuple[int, str, str], list[tuple[int, np.ndarray, np.ndarray | None]]] = {}
    # with lbfgs, "epochs" and "best_epoch" count L-BFGS iterations (over the L2 weights, the
    # largest first) and "l2" holds the L2 weight each probe kept
    info: dict[str, Any] = {"solver": cfg.solver, "seeds": fitted, "epochs": {}, "best_epoch": {}}
    if cfg.solver == "lbfgs":
        info["l2"] = {}
    if task.spec.local:
        chunks = local_chunks(embeddings, views, tr, cfg)
    else:
        chunks = [list(range(len(views)))]
    for chunk in chunks:
        _train_and_score(
            task, embeddings, views, groups, chunk, tr, va, splits, cfg, scores, info, progress
        )
    jobs = info.pop("_jobs", [])  # local probes, decoded at once (in worker processes)
    decoded = score_local(
        [j for _, j in jobs], cfg.workers, f"score {task.name}" if progress else None
    )
    for ((v, split, seed), _), per in zip(jobs, decoded, strict=True):
        for metric, (values, weights) in per.items():
            scores.setdefault((v, split, metric), []).append((seed, values, weights))
    rows = _seed_rows(task, views, scores)  # sorts each probe's seeds, as the items list them
    raw = info.pop("_raw", {})
    summary = _summary_rows(task, views, scores, raw, cfg)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    info["notes"] = task.notes
    info["n"] = {s: int(len(task.indices(s))) for s in SPLITS}
    items = _item_frames(task, views, scores, raw)
    return {"rows": rows, "summary": summary, "items": items, "info": info}


def _seed_rows(task: Task, views: list[View], scores: dict) -> list[dict[str, Any]]:
    """One row per (view, split, metric, seed): the probe's value over the split's units."""
    rows = []
    for (v, split, metric), per_seed in sorted(scores.items()):
        view = views[v]
        per_seed.sort(key=lambda t: t[0])
        for seed, values, weights in per_seed:
            rows.append(
                {
                    "task": task.name,
                    "layer": view.layer,
                    "pooling": view.pooling,
                    "seed": seed,
                    "split": split,
                    "metric": metric,
                    "value": M.weighted_mean(values, weights),
                    "n": int(len(values)),
                }
            )
    return rows


def _tagging_ci(
    task: Task, raw: dict, merged: dict, cfg: ProbeConfig
) -> dict[tuple, tuple[float, float, float]]:
    """Tagging's macro metrics (mean, CI) per (layer, pooling, split, metric), bootstrapped
    from the probes' scores of every clip (``raw``); the per-tag scores of each seed, already
    computed, come from ``merged`` (both lists sorted by seed)."""
    tag_ci: dict[tuple[int, str, str, str], tuple[float, float, float]] = {}
    for (layer, pooling, split), per_seed in raw.items():
        per_seed.sort(key=lambda t: t[0])
        y = global_targets(task, task.indices(split))
        logits = [out for _, out in per_seed]
        n_boot = min(cfg.n_boot, cfg.n_boot_tagging)
        per_tag = {m: merged[(layer, pooling, split, m)] for m in ("roc_auc", "map")}
        if [t[0] for t in per_tag["roc_auc"]] != [t[0] for t in per_seed]:
            raise RuntimeError(f"tagging {layer}/{pooling}/{split}: scores and logits disagree")
        points = [{m: per_tag[m][k][1] for m in per_tag} for k in range(len(per_seed))]
        for metric, stat in bootstrap_tagging(y, logits, n_boot=n_boot, points=points).items():
            tag_ci[(layer, pooling, split, metric)] = stat
    return tag_ci


def _summary_rows(
    task: Task, views: list[View], scores: dict, raw: dict, cfg: ProbeConfig
) -> list[dict[str, Any]]:
    """One row per (layer, pooling, split, metric): the mean over seeds with its bootstrap CI
    (:func:`vit1d.probing.results.summary_row`; tagging's from :func:`_tagging_ci`)."""
    merged: dict[tuple[int, str, str, str], list] = {}
    for (v, split, metric), per_seed in scores.items():
        key = (views[v].layer, views[v].pooling, split, metric)
        merged.setdefault(key, []).extend(per_seed)
    for per_seed in merged.values():
        per_seed.sort(key=lambda t: t[0])
    tag_ci = _tagging_ci(task, raw, merged, cfg)
    summary = []
    for (layer, pooling, split, metric), per_seed in sorted(merged.items()):
        matrix = np.stack([values for _, values, _ in per_seed])
        weights = per_seed[0][2]
        stats = summary_row(matrix, weights, task.spec.unit, n_boot=cfg.n_boot)
        key = (layer, pooling, split, metric)
        if key in tag_ci:
            mean, lo, hi = tag_ci[key]
            n_clips = len(task.indices(split))
            stats.update({"mean": mean, "ci_low": lo, "ci_high": hi, "n": n_clips})
        summary.append(
            {
                "task": task.name,
                "layer": layer,
                "pooling": pooling,
                "split": split,
                "metric": metric,
                **stats,
            }
        )
    return summary


def chance_summary(task: Task, splits: Sequence[str] = ("valid", "test")) -> list[dict[str, Any]]:
    """Summary rows of the prior-only predictor on ``splits``: every item gets the training
    split's most frequent class (tagging: one constant score). Global tasks only."""
    if task.spec.local:
        return []
    out = []
    for split in splits:
        idx = task.indices(split)
        if len(idx) == 0:
            continue
        logits = np.zeros((len(idx), len(task.classes)))
        if task.name != "tagging":
            y = global_targets(task, task.indices("train"))
            logits[:, int(np.bincount(y[y >= 0], minlength=len(task.classes)).argmax())] = 1.0
        for metric, (values, weights) in score_global(task, idx, logits).items():
            out.append(
                {
                    "task": task.name,
                    "layer": 0,
                    "pooling": "prior",
                    "split": split,
                    "metric": metric,
                    "mean": M.weighted_mean(values, weights),
                    "ci_low": float("nan"),
                    "ci_high": float("nan"),
                    "std_seeds": 0.0,
                    "n_seeds": 0,
                    "n": int(len(idx)),
                    "unit": task.spec.unit,
                }
            )
    return out


def item_names(task: Task, indices: np.ndarray) -> list[str]:
    """The items of ``indices``: audio paths relative to the corpus root (the same names for
    every model probed on the corpus)."""
    root = task.manifest.parent.parent
    return [os.path.relpath(task.examples[i].audio, root) for i in indices]


def _item_frames(task: Task, views: list[View], scores: dict, raw: dict) -> list[Any]:
    """Per-item rows of the test split (:mod:`vit1d.probing.items`): scores, or tagging's logits."""
    split = "test"
    names = item_names(task, task.indices(split))
    frames = []
    if task.name == "tagging":
        y = global_targets(task, task.indices(split))
        for (layer, pooling, s), per_seed in raw.items():
            if s != split:
                continue
            for seed, logits in per_seed:
                probe = {"task": task.name, "layer": layer, "pooling": pooling, "seed": seed}
                probe["split"] = split
                frames.append(tagging_items(probe, names, task.classes, logits, y))
        return frames
    for (v, s, metric), per_seed in scores.items():
        if s != split:
            continue
        view = views[v]
        for seed, values, weights in per_seed:
            probe = {"task": task.name, "layer": view.layer, "pooling": view.pooling}
            probe.update({"seed": seed, "split": split, "metric": metric})
            frames.append(scalar_items(probe, names, values, weights))
    return frames


def _train_and_score(
    task: Task,
    embeddings: Sequence[Any],
    views: list[View],
    groups: list[tuple[int, int]],
    chunk: list[int],
    tr: np.ndarray,
    va: np.ndarray,
    splits: Sequence[str],
    cfg: ProbeConfig,
    scores: dict,
    info: dict,
    progress: bool = False,
) -> None:
    """Train the probes of the views in ``chunk`` together and score them on ``splits``."""
    ytr_np, yva_np, parts = _chunk_targets(task, embeddings[0], tr, va, cfg)
    xtr_t, xva_t, stats = _standardised_stacks(task, embeddings, views, chunk, parts)
    probes, chunk_groups = _fit_stack(
        task, groups, chunk, xtr_t, ytr_np, xva_t, yva_np, cfg, progress
    )
    _record_fit(info, probes, views, groups, chunk, chunk_groups)
    del xtr_t, xva_t  # the training stacks are not needed to score: free them first
    for split in splits:
        idx = task.indices(split)
        if len(idx) == 0:
            continue
        for v in chunk:
            members = [k for k, g in enumerate(chunk_groups) if groups[g][0] == v]
            m, s = stats[v]
            with torch.no_grad():
                x = (_load_view(task, embeddings, views[v], idx, None) - m) / s
                out = probes.logits(x, members).numpy()
            seeds = [groups[chunk_groups[k]][1] for k in members]
            emb = embeddings[views[v].source]
            _score_probes(task, emb, v, views[v], split, idx, seeds, out, scores, info)


def _chunk_targets(
    task: Task, emb0: Any, tr: np.ndarray, va: np.ndarray, cfg: ProbeConfig
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Training and validation targets, and the ``(files, rows)`` each split's features are
    read from: local tasks draw at most ``max_train_frames`` / ``max_valid_frames`` frames."""
    if task.spec.local:
        ytr_all, _ = concat_frame_targets(task, emb0, tr)
        yva_all, _ = concat_frame_targets(task, emb0, va)
        ignore = task.spec.loss == "softmax"
        pick_tr = subsample_rows(ytr_all, cfg.max_train_frames, 0, ignore)
        pick_va = subsample_rows(yva_all, cfg.max_valid_frames, 1, ignore)
        ytr_np, yva_np = ytr_all[pick_tr], yva_all[pick_va]
        parts = ((tr, pick_tr), (va, pick_va))
    else:
        ytr_np, yva_np = global_targets(task, tr), global_targets(task, va)
        parts = ((tr, None), (va, None))
    if len(ytr_np) == 0 or len(yva_np) == 0:
        raise UserError(
            f"task {task.name}: no usable training or validation targets in {task.manifest}"
        )
    return ytr_np, yva_np, parts


def _load_view(
    task: Task, embeddings: Sequence[Any], view: View, indices: np.ndarray, picks: Any
) -> Any:
    """Features of ``view`` for files ``indices``: frame tokens (rows ``picks``) or pooled."""
    if task.spec.local:
        return frame_matrix(embeddings[view.source], view.layer, indices, picks)
    return global_matrix(embeddings[view.source], view, indices)


def _standardised_stacks(
    task: Task, embeddings: Sequence[Any], views: list[View], chunk: list[int], parts: tuple
) -> tuple[Any, Any, dict[int, tuple[Any, Any]]]:
    """The chunk's training and validation features ``(views, rows, dim)``, standardised with
    train statistics (returned per view)."""
    # one view at a time into preallocated stacks
    dim = embeddings[0].frame_dim if task.spec.local else embeddings[0].dim
    n_tr, n_va = (len(idx) if picks is None else len(picks) for idx, picks in parts)
    xtr_t = torch.empty(len(chunk), n_tr, dim)
    xva_t = torch.empty(len(chunk), n_va, dim)
    stats = {}
    for k, v in enumerate(chunk):
        x = _load_view(task, embeddings, views[v], *parts[0])
        m, sd = standardise(x)
        stats[v] = (m, sd)
        xtr_t[k] = (x - m) / sd
        xva_t[k] = (_load_view(task, embeddings, views[v], *parts[1]) - m) / sd
        del x
    return xtr_t, xva_t, stats


def _fit_stack(
    task: Task,
    groups: list[tuple[int, int]],
    chunk: list[int],
    xtr_t: Any,
    ytr_np: np.ndarray,
    xva_t: Any,
    yva_np: np.ndarray,
    cfg: ProbeConfig,
    progress: bool,
) -> tuple[LinearProbes, list[int]]:
    """Fit the probes of the chunk's ``(view, seed)`` groups as one stack; returns it and the
    indices in ``groups`` of its probes, in stack order."""
    if task.spec.loss == "softmax":
        ytr_t, yva_t = torch.from_numpy(ytr_np).long(), torch.from_numpy(yva_np).long()
    else:
        ytr_t, yva_t = torch.from_numpy(ytr_np).float(), torch.from_numpy(yva_np).float()
    pos_weight = None
    if task.spec.balance:
        pos = float(ytr_np.sum())
        pos_weight = (len(ytr_np) - pos) / max(pos, 1.0)
    local_view = {v: k for k, v in enumerate(chunk)}
    chunk_groups = [g for g, (v, _) in enumerate(groups) if v in local_view]
    probes = LinearProbes(
        [local_view[groups[g][0]] for g in chunk_groups],
        [groups[g][1] for g in chunk_groups],
        xtr_t.shape[2],
        task.n_outputs,
        task.spec.loss,
        pos_weight,
    )
    probes.fit(xtr_t, ytr_t, xva_t, yva_t, cfg, desc=f"probe {task.name}" if progress else None)
    return probes, chunk_groups


def _record_fit(
    info: dict,
    probes: LinearProbes,
    views: list[View],
    groups: list[tuple[int, int]],
    chunk: list[int],
    chunk_groups: list[int],
) -> None:
    """Note each probe's best epoch (and kept L2 weight) and the chunk's epochs in ``info``."""
    for k, g in enumerate(chunk_groups):
        v, seed = groups[g]
        key = f"{views[v].layer}/{views[v].pooling}/{seed}"
        info["best_epoch"][key] = int(probes.best_epoch[k])
        if "l2" in info:
            info["l2"][key] = float(probes.chosen_l2[k])
    info["epochs"][f"chunk{chunk[0]}"] = probes.epochs_run


def _score_probes(
    task: Task,
    emb: Any,
    v: int,
    view: View,
    split: str,
    idx: np.ndarray,
    seeds: list[int],
    out: np.ndarray,
    scores: dict,
    info: dict,
) -> None:
    """Add the scores of view ``v``'s probes (outputs ``out[k]`` of probe seed ``seeds[k]``) on
    the files ``idx`` of ``split`` to ``scores`` (a local task's: queued for :func:`probe_task`)."""
    for pos, seed in enumerate(seeds):
        if task.spec.local:
            job = TrackJob.of(task, emb, idx, out[pos])
            info.setdefault("_jobs", []).append(((v, split, seed), job))
            continue
        per = score_global(task, idx, out[pos])
        if task.name == "tagging":  # macro metrics: the bootstrap needs scores
            key = (view.layer, view.pooling, split)
            info.setdefault("_raw", {}).setdefault(key, []).append((seed, out[pos]))
        for metric, (values, weights) in per.items():
            scores.setdefault((v, split, metric), []).append((seed, values, weights))
