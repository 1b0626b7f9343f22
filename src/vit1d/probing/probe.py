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

Used by ``vit1d probe`` and the probing notebooks; results go through :mod:`vit1d.probing.results`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from vit1d.audio.grid import FRAME_RATE
from vit1d.core.errors import UserError
from vit1d.probing import metrics as M
from vit1d.probing.items import scalar_items, tagging_items
from vit1d.probing.linear import LinearProbes, ProbeConfig, standardise
from vit1d.probing.results import bootstrap_tagging, summary_row
from vit1d.probing.tasks import (
    SPLITS,
    Example,
    Task,
    chord_reference,
    frame_targets,
    global_targets,
)

# ----------------------------------------------------------------------------------------------
# Probing one task
# ----------------------------------------------------------------------------------------------


@dataclass
class View:
    """A feature matrix the probes read: which embeddings (init), layer and pooling."""

    source: int
    layer: int
    pooling: str


def _views(
    embeddings: Sequence[Any],
    local: bool,
    layers: Sequence[int] | None,
    poolings: Sequence[str] | None,
) -> list[View]:
    views = []
    for e_i, emb in enumerate(embeddings):
        use_layers = [la for la in emb.layers if layers is None or la in layers] or emb.layers[-1:]
        if local:
            views += [View(e_i, la, "frame") for la in use_layers]
            continue
        pools = [p for p in emb.poolings if poolings is None or p in poolings] or emb.poolings
        views += [View(e_i, la, p) for la in use_layers for p in pools]
    return views


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


def _groups(views: list[View], n_sources: int, seeds: Sequence[int]) -> list[tuple[int, int]]:
    """``(view, seed)`` pairs: every seed on every view, or, with one source per seed (random
    init), seed ``k`` on the views of source ``k``."""
    if n_sources == 1:
        return [(v, s) for v in range(len(views)) for s in seeds]
    if n_sources != len(seeds):
        raise UserError(
            f"{n_sources} feature sources but {len(seeds)} seeds: give one init seed per probe seed"
        )
    return [(v, seeds[views[v].source]) for v in range(len(views))]


def _global_matrix(emb: Any, view: View, indices: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(emb.pooled(view.layer, view.pooling, indices))


def _frame_matrix(emb: Any, layer: int, indices: np.ndarray, picks: np.ndarray | None) -> Any:
    """Concatenated frame tokens ``(F, D)`` float32 of files ``indices`` (rows ``picks``)."""
    import torch

    frames = np.concatenate(emb.frames(layer, indices)).astype(np.float32)
    if picks is not None:
        frames = frames[picks]
    return torch.from_numpy(frames)


def _frame_targets(task: Task, emb: Any, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated frame targets and per-file offsets."""
    ys = [frame_targets(task, task.examples[i], int(emb.n_frames[i])) for i in indices]
    offsets = np.concatenate([[0], np.cumsum([len(y) for y in ys])]).astype(int)
    return np.concatenate(ys) if ys else np.zeros(0), offsets


def _subsample(y: np.ndarray, limit: int, seed: int, ignore_negative: bool) -> np.ndarray:
    """Sorted row numbers: at most ``limit`` rows (seeded), skipping ignored targets."""
    rows = np.flatnonzero(y >= 0) if ignore_negative else np.arange(len(y))
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
    return rows


def _score_global(task: Task, test_idx: np.ndarray, logits: np.ndarray) -> dict[str, tuple]:
    """Per-unit scores ``{metric: (values, weights)}`` of one probe's test logits ``(N, C)``."""
    exs = [task.examples[i] for i in test_idx]
    if task.name == "tagging":
        y = global_targets(task, test_idx)
        s = M.tagging_scores(y, logits)
        return {"roc_auc": (s["roc_auc"], None), "map": (s["map"], None)}
    pred = [task.classes[k] for k in np.argmax(logits, axis=1)]
    ref = [ex.label for ex in exs]
    if task.name == "key":
        s = M.key_scores(ref, pred)
    elif task.name == "tempo":
        s = M.tempo_scores(ref, pred)
    else:
        s = M.accuracy_scores(ref, pred)
    return {m: (v, None) for m, v in s.items()}


def _score_local(task: Task, example: Example, out: np.ndarray, duration: float) -> dict:
    """Scores of one test track from its frame outputs (logits ``(T, C)`` or ``(T, 1)``)."""
    if task.name == "chords":
        return chord_reference(example.label).scores(np.argmax(out, axis=1), FRAME_RATE, duration)
    act = 1.0 / (1.0 + np.exp(-out[:, 0].astype(np.float64)))
    ref = M.load_events(example.label)
    if task.name == "beats":
        s = M.beat_scores(ref, M.activation_to_beats(act, FRAME_RATE))
    else:
        s = M.onset_scores(ref, M.activation_to_onsets(act, FRAME_RATE))
    return {k: (v, 1.0) for k, v in s.items()}


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

    cfg = config or ProbeConfig()
    if task.spec.local:
        cfg = replace(cfg, solver=cfg.local_solver)
    for emb in embeddings:
        if [Path(p) for p in emb.paths] != [ex.audio for ex in task.examples]:
            raise ValueError("embeddings must list the task's audio files in manifest order")
    t0 = time.perf_counter()
    views = _views(embeddings, task.spec.local, layers, poolings)
    fitted = fit_seeds(cfg.solver, len(embeddings), seeds)
    groups = _groups(views, len(embeddings), fitted)
    tr, va = task.indices("train"), task.indices("valid")
    scores: dict[tuple[int, str, str], list[tuple[int, np.ndarray, np.ndarray | None]]] = {}
    # with lbfgs, "epochs" and "best_epoch" count L-BFGS iterations (over the L2 weights, the
    # largest first) and "l2" holds the L2 weight each probe kept
    info: dict[str, Any] = {"solver": cfg.solver, "seeds": fitted, "epochs": {}, "best_epoch": {}}
    if cfg.solver == "lbfgs":
        info["l2"] = {}
    if task.spec.local:
        chunks = _local_chunks(task, embeddings, views, tr, cfg)
    else:
        chunks = [list(range(len(views)))]
    for chunk in chunks:
        _train_and_score(
            task, embeddings, views, groups, chunk, tr, va, splits, cfg, scores, info, progress
        )
    rows, summary = [], []
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
    merged: dict[tuple[int, str, str, str], list] = {}
    for (v, split, metric), per_seed in scores.items():
        key = (views[v].layer, views[v].pooling, split, metric)
        merged.setdefault(key, []).extend(per_seed)
    raw = info.pop("_raw", {})
    tag_ci: dict[tuple[int, str, str, str], tuple[float, float, float]] = {}
    for (layer, pooling, split), per_seed in raw.items():  # tagging: macro metrics
        per_seed.sort(key=lambda t: t[0])
        y = global_targets(task, task.indices(split))
        logits = [out for _, out in per_seed]
        n_boot = min(cfg.n_boot, cfg.n_boot_tagging)
        for metric, stat in bootstrap_tagging(y, logits, n_boot=n_boot).items():
            tag_ci[(layer, pooling, split, metric)] = stat
    for (layer, pooling, split, metric), per_seed in sorted(merged.items()):
        per_seed.sort(key=lambda t: t[0])
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
    info["seconds"] = round(time.perf_counter() - t0, 2)
    info["notes"] = task.notes
    info["n"] = {s: int(len(task.indices(s))) for s in SPLITS}
    items = _item_frames(task, views, scores, raw)
    return {"rows": rows, "summary": summary, "items": items, "info": info}


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
        for metric, (values, weights) in _score_global(task, idx, logits).items():
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


def _local_chunks(
    task: Task, embeddings: Sequence[Any], views: list[View], tr: np.ndarray, cfg: ProbeConfig
) -> list[list[int]]:
    """Views per training stack so that the training frames fit ``memory_mb``."""
    frames = min(cfg.max_train_frames, int(embeddings[0].n_frames[tr].sum()))
    per_view = max(1, frames * embeddings[0].frame_dim * 4)
    size = max(1, int(cfg.memory_mb * 2**20 // per_view))
    return [list(range(i, min(i + size, len(views)))) for i in range(0, len(views), size)]


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
    import torch

    local = task.spec.local
    emb0 = embeddings[0]
    if local:
        ytr_all, _ = _frame_targets(task, emb0, tr)
        yva_all, _ = _frame_targets(task, emb0, va)
        ignore = task.spec.loss == "softmax"
        pick_tr = _subsample(ytr_all, cfg.max_train_frames, 0, ignore)
        pick_va = _subsample(yva_all, cfg.max_valid_frames, 1, ignore)
        ytr_np, yva_np = ytr_all[pick_tr], yva_all[pick_va]

        def load(v: int, indices: np.ndarray, picks: np.ndarray) -> Any:
            return _frame_matrix(embeddings[views[v].source], views[v].layer, indices, picks)

        n_tr, n_va = len(pick_tr), len(pick_va)
        parts = ((tr, pick_tr), (va, pick_va))
    else:
        ytr_np, yva_np = global_targets(task, tr), global_targets(task, va)

        def load(v: int, indices: np.ndarray, picks: np.ndarray | None) -> Any:
            return _global_matrix(embeddings[views[v].source], views[v], indices)

        n_tr, n_va = len(tr), len(va)
        parts = ((tr, None), (va, None))
    if len(ytr_np) == 0 or len(yva_np) == 0:
        raise UserError(
            f"task {task.name}: no usable training or validation targets in {task.manifest}"
        )
    # one view at a time into preallocated stacks, standardised with train statistics
    dim = embeddings[0].frame_dim if local else embeddings[0].dim
    xtr_t = torch.empty(len(chunk), n_tr, dim)
    xva_t = torch.empty(len(chunk), n_va, dim)
    stats = []
    for k, v in enumerate(chunk):
        x = load(v, *parts[0])
        m, sd = standardise(x)
        stats.append((m, sd))
        xtr_t[k] = (x - m) / sd
        xva_t[k] = (load(v, *parts[1]) - m) / sd
        del x
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
    for k, g in enumerate(chunk_groups):
        v, seed = groups[g]
        key = f"{views[v].layer}/{views[v].pooling}/{seed}"
        info["best_epoch"][key] = int(probes.best_epoch[k])
        if "l2" in info:
            info["l2"][key] = float(probes.chosen_l2[k])
    info["epochs"][f"chunk{chunk[0]}"] = probes.epochs_run
    del xtr_t, xva_t
    for split in splits:
        idx = task.indices(split)
        if len(idx) == 0:
            continue
        for v in chunk:
            view = views[v]
            emb = embeddings[view.source]
            members = [k for k, g in enumerate(chunk_groups) if groups[g][0] == v]
            m, s = stats[local_view[v]]
            with torch.no_grad():
                if local:
                    x = (_frame_matrix(emb, view.layer, idx, None) - m) / s
                else:
                    x = (_global_matrix(emb, view, idx) - m) / s
                out = probes.logits(x, members).numpy()
            for pos, k in enumerate(members):
                seed = groups[chunk_groups[k]][1]
                if local:
                    per = _score_local_tracks(task, emb, idx, out[pos])
                else:
                    per = _score_global(task, idx, out[pos])
                    if task.name == "tagging":  # macro metrics: the bootstrap needs scores
                        key = (view.layer, view.pooling, split)
                        info.setdefault("_raw", {}).setdefault(key, []).append((seed, out[pos]))
                for metric, (values, weights) in per.items():
                    scores.setdefault((v, split, metric), []).append((seed, values, weights))


def _score_local_tracks(task: Task, emb: Any, idx: np.ndarray, out: np.ndarray) -> dict:
    """Per-track scores of one probe over the files ``idx`` (frame outputs concatenated)."""
    offsets = np.concatenate([[0], np.cumsum(emb.n_frames[idx])]).astype(int)
    values: dict[str, list[float]] = {m: [] for m in task.spec.metrics}
    weights: dict[str, list[float]] = {m: [] for m in task.spec.metrics}
    for j, i in enumerate(idx):
        ex = task.examples[i]
        duration = float(emb.n_frames[i] - 1) / FRAME_RATE + 0.5 / FRAME_RATE
        per = _score_local(task, ex, out[offsets[j] : offsets[j + 1]], duration)
        for metric, (value, weight) in per.items():
            values[metric].append(value)
            weights[metric].append(weight)
    return {
        m: (np.asarray(values[m]), np.asarray(weights[m]) if task.name == "chords" else None)
        for m in task.spec.metrics
    }
