"""Scores of one probe's outputs with the task's metrics (:mod:`vit1d.probing.metrics`).

:func:`score_global` decodes a global task's test logits (argmax class; tagging's scores) and
scores every clip; :func:`score_tracks` decodes a local task's frame outputs per track (chord
classes to intervals, beat and onset activations to events, :func:`score_track`). Each returns
``{metric: (values, weights)}`` per unit. Used by :mod:`vit1d.probing.probe`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vit1d.audio.grid import FRAME_RATE
from vit1d.probing import metrics as M
from vit1d.probing.tasks import Example, Task, chord_reference, global_targets


def score_global(task: Task, test_idx: np.ndarray, logits: np.ndarray) -> dict[str, tuple]:
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


def score_track(task: Task, example: Example, out: np.ndarray, duration: float) -> dict:
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


def score_tracks(task: Task, emb: Any, idx: np.ndarray, out: np.ndarray) -> dict:
    """Per-track scores of one probe over the files ``idx`` (frame outputs concatenated)."""
    offsets = np.concatenate([[0], np.cumsum(emb.n_frames[idx])]).astype(int)
    values: dict[str, list[float]] = {m: [] for m in task.spec.metrics}
    weights: dict[str, list[float]] = {m: [] for m in task.spec.metrics}
    for j, i in enumerate(idx):
        ex = task.examples[i]
        duration = float(emb.n_frames[i] - 1) / FRAME_RATE + 0.5 / FRAME_RATE
        per = score_track(task, ex, out[offsets[j] : offsets[j + 1]], duration)
        for metric, (value, weight) in per.items():
            values[metric].append(value)
            weights[metric].append(weight)
    return {
        m: (np.asarray(values[m]), np.asarray(weights[m]) if task.name == "chords" else None)
        for m in task.spec.metrics
    }
