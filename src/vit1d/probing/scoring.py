"""Scores of one probe's outputs with the task's metrics (:mod:`vit1d.probing.metrics`).

:func:`score_global` decodes a global task's test logits (argmax class; tagging's scores) and
scores every clip; :func:`score_tracks` decodes a local task's frame outputs per track (chord
classes to intervals, beat and onset activations to events, :func:`score_track`). Each returns
``{metric: (values, weights)}`` per unit. Used by :mod:`vit1d.probing.probe`.

**Local scoring in worker processes.** Decoding a track is Python-bound work: librosa's beat
tracker and ``mir_eval``'s continuity take about 3 ms a track, and a model's beat probes (13
layers x 3 seeds, valid and test) decode about 14,000 tracks, over half of the task's time on a
2-core CPU. Threads would share one interpreter lock, so :func:`score_local` hands each probe's
tracks (:class:`TrackJob`: only the per-frame decision, a chord class or an event logit, not
the ``(T, C)`` outputs) to a pool of spawned processes where there is enough of them to pay for
starting it (:data:`MIN_PARALLEL_TRACKS`). The scores do not depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vit1d.audio.grid import FRAME_RATE
from vit1d.probing import metrics as M
from vit1d.probing.tasks import Task, chord_reference, event_reference, global_targets

#: Track scorings below which a pool is not started (spawning two workers and importing the
#: metrics there costs a few seconds; a test-sized corpus scores a few hundred tracks in less).
MIN_PARALLEL_TRACKS = 2000


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


def frame_decisions(task_name: str, out: np.ndarray) -> np.ndarray:
    """What a local task's decoder reads of frame outputs ``(T, C)``: each frame's chord class
    (argmax) for chords, the single output (the event logit) for beats and onsets."""
    if task_name == "chords":
        return np.argmax(out, axis=1).astype(np.int16)  # 25 classes; a quarter of int64's bytes
    return np.asarray(out[:, 0], dtype=np.float32)


def score_track(task_name: str, label: Any, frames: np.ndarray, duration: float) -> dict:
    """Scores of one test track from its :func:`frame_decisions` ``frames`` ``(T,)``; ``label``
    is the example's annotation file."""
    if task_name == "chords":
        return chord_reference(label).scores(frames.astype(np.int64), FRAME_RATE, duration)
    act = 1.0 / (1.0 + np.exp(-frames.astype(np.float64)))
    ref = event_reference(label)
    if task_name == "beats":
        s = M.beat_scores(ref, M.activation_to_beats(act, FRAME_RATE))
    else:
        s = M.onset_scores(ref, M.activation_to_onsets(act, FRAME_RATE))
    return {k: (v, 1.0) for k, v in s.items()}


@dataclass(frozen=True)
class TrackJob:
    """One probe's frame decisions on the tracks of one split, ready to score anywhere:
    ``frames`` concatenated, track ``j`` in ``frames[offsets[j]:offsets[j + 1]]``."""

    task_name: str
    metrics: tuple[str, ...]
    labels: tuple[Any, ...]
    durations: np.ndarray
    frames: np.ndarray
    offsets: np.ndarray

    @classmethod
    def of(cls, task: Task, emb: Any, idx: np.ndarray, out: np.ndarray) -> TrackJob:
        """The job of a probe's frame outputs ``out`` on the files ``idx`` of ``emb``."""
        n_frames = np.asarray(emb.n_frames)[idx]
        return cls(
            task_name=task.name,
            metrics=tuple(task.spec.metrics),
            labels=tuple(task.examples[i].label for i in idx),
            # the last frame owns half a frame after its centre (metrics.frames_to_intervals)
            durations=(n_frames - 1) / FRAME_RATE + 0.5 / FRAME_RATE,
            frames=frame_decisions(task.name, out),
            offsets=np.concatenate([[0], np.cumsum(n_frames)]).astype(int),
        )

    def score(self) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """``{metric: (values, weights)}`` over the tracks (weights: chords' durations)."""
        values: dict[str, list[float]] = {m: [] for m in self.metrics}
        weights: dict[str, list[float]] = {m: [] for m in self.metrics}
        for j, label in enumerate(self.labels):
            frames = self.frames[self.offsets[j] : self.offsets[j + 1]]
            per = score_track(self.task_name, label, frames, float(self.durations[j]))
            for metric, (value, weight) in per.items():
                values[metric].append(value)
                weights[metric].append(weight)
        chords = self.task_name == "chords"
        return {
            m: (np.asarray(values[m]), np.asarray(weights[m]) if chords else None)
            for m in self.metrics
        }


def score_tracks(task: Task, emb: Any, idx: np.ndarray, out: np.ndarray) -> dict:
    """Per-track scores of one probe over the files ``idx`` (frame outputs concatenated)."""
    return TrackJob.of(task, emb, idx, out).score()


def score_local(jobs: Sequence[TrackJob], workers: int = 0, desc: str | None = None) -> list[dict]:
    """:meth:`TrackJob.score` of every job, in order; in ``workers`` spawned processes (0: one
    per CPU core) when the jobs hold at least :data:`MIN_PARALLEL_TRACKS` tracks. ``desc``:
    show a progress bar (one step a job) with this label."""
    n_workers = min(len(jobs), workers or os.cpu_count() or 1)
    bar = partial(tqdm, total=len(jobs), desc=desc, unit="probe", disable=desc is None, leave=False)
    if n_workers <= 1 or sum(len(j.labels) for j in jobs) < MIN_PARALLEL_TRACKS:
        return [job.score() for job in bar(jobs)]
    # spawn, as the corpus's pools: a forked child of a process running torch's threads can hang
    try:
        with ProcessPoolExecutor(n_workers, mp_context=mp.get_context("spawn")) as pool:
            return list(bar(pool.map(TrackJob.score, jobs)))
    except BrokenProcessPool as exc:
        tasks = ", ".join(sorted({job.task_name for job in jobs}))
        warnings.warn(
            f"scoring {tasks} in worker processes failed ({exc}); scoring in this "
            "process instead. A script that probes must keep its work under "
            "`if __name__ == '__main__':`, since each spawned worker imports it.",
            RuntimeWarning,
            stacklevel=2,
        )
        return [job.score() for job in jobs]
