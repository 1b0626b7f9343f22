"""Evaluation metrics of the probing suite, computed with the field's libraries only.

Every score is produced by scikit-learn, ``mir_eval`` or ``librosa``; this module only turns
probe outputs into the inputs those libraries expect (frame labels into intervals, frame
activations into beat or onset times) and returns per-unit scores, so that the results module
can bootstrap confidence intervals over test clips or tracks (docs/design.md, "Tasks and the
embedded corpus").

==========  ================================================  ===============================
task        metric                                            unit of the average
==========  ================================================  ===============================
tagging     macro ROC-AUC, macro average precision (sklearn)  tag
key         MIREX weighted score (``mir_eval.key``), accuracy  clip
pitch       accuracy (sklearn)                                clip
instrument  accuracy (sklearn)                                clip
tempo       Acc1 (4 %), Acc2 (x2, x3, x1/2, x1/3)             clip
            (``mir_eval.tempo.detection`` per target)
chords      ``mir_eval.chord`` majmin and root, weighted by   track (weight: its duration)
            duration over the whole test set (WCSR)
beats       ``mir_eval.beat`` F-measure (70 ms), CMLt, AMLt   track
onsets      ``mir_eval.onset`` F-measure (50 ms)              track
==========  ================================================  ===============================

Beat metrics are computed on the whole excerpt: ``mir_eval.beat.evaluate`` would first drop the
beats of the first 5 s, a convention for full songs that would discard a third of a 15 s clip.
Used by :mod:`vit1d.probing.scoring` and :mod:`vit1d.probing.probe`; ``notebooks`` on global and
local probes describe the metrics.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import librosa
import mir_eval
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from vit1d.audio.grid import FRAME_RATE, HOP_LENGTH
from vit1d.corpus.labels import CHORDS, PITCH_NAMES

#: Pitch-class spellings of chord roots, index = semitone above C (Harte syntax): the
#: corpus's spellings, so its labels and the probe's classes are one vocabulary.
ROOTS = PITCH_NAMES
#: The 25 chord classes of the probe: 12 major, 12 minor triads, then no-chord.
CHORD_CLASSES = CHORDS
NO_CHORD_CLASS = len(CHORD_CLASSES) - 1
_MAJ = np.array([1, 0, 0, 0, 1, 0, 0, 1])
_MIN = np.array([1, 0, 0, 1, 0, 0, 0, 1])
#: Tempo factors that Acc2 forgives (octave errors and factors of three).
ACC2_FACTORS = (1.0, 2.0, 3.0, 1.0 / 2.0, 1.0 / 3.0)


# ----------------------------------------------------------------------------------------------
# Global tasks
# ----------------------------------------------------------------------------------------------


def tagging_scores(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, np.ndarray]:
    """Per-tag ROC-AUC and average precision (scikit-learn), for tags that have both positive
    and negative test examples (AUC is undefined otherwise).

    ``y_true`` ``(N, K)`` in {0, 1}, ``y_score`` ``(N, K)`` real. Returns ``roc_auc`` and
    ``map`` arrays of the kept tags (their means are sklearn's macro averages) and ``tags``,
    the kept column indices.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    positives = y_true.sum(axis=0)
    keep = np.flatnonzero((positives > 0) & (positives < y_true.shape[0]))
    if keep.size == 0:
        empty = np.zeros(0)
        return {"roc_auc": empty, "map": empty, "tags": keep}
    t, s = y_true[:, keep], y_score[:, keep]
    return {
        "roc_auc": np.atleast_1d(roc_auc_score(t, s, average=None)),
        "map": np.atleast_1d(average_precision_score(t, s, average=None)),
        "tags": keep,
    }


def key_scores(reference: Sequence[str], estimated: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-clip MIREX weighted key score (``mir_eval.key.weighted_score``: 1 same key, 0.5 a
    fifth above, 0.3 relative, 0.2 parallel, else 0) and exact-match accuracy."""
    weighted = np.array(
        [mir_eval.key.weighted_score(r, e) for r, e in zip(reference, estimated, strict=True)]
    )
    exact = np.array([float(r == e) for r, e in zip(reference, estimated, strict=True)])
    return {"weighted": weighted, "accuracy": exact}


def accuracy_scores(reference: Sequence, estimated: Sequence) -> dict[str, np.ndarray]:
    """Per-clip correctness (1/0); its mean is ``sklearn.metrics.accuracy_score``."""
    ref, est = np.asarray(reference), np.asarray(estimated)
    if ref.shape != est.shape:
        raise ValueError(f"reference {ref.shape} and estimate {est.shape} differ in length")
    return {"accuracy": (ref == est).astype(np.float64)}


def tempo_scores(
    reference_bpm: Sequence[float], estimated_bpm: Sequence[float], tol: float = 0.04
) -> dict[str, np.ndarray]:
    """Per-clip Acc1 and Acc2 (Gouyon et al. 2006), as ``mir_eval.tempo.detection`` scores a
    clip whose two reference tempi are both ``ref``, for all clips at once.

    Acc1: ``|ref - est| / ref <= tol``. Acc2: the same against
    any of ``ref * f`` for ``f`` in (1, 2, 3, 1/2, 1/3), the tolerance relative to each
    target. The arithmetic is mir_eval's, in float64, so the two agree on every clip,
    boundaries included (tested against it).
    """
    ref = np.asarray(reference_bpm, dtype=float).reshape(-1)
    est = np.asarray(estimated_bpm, dtype=float).reshape(-1)
    if ref.shape != est.shape:
        raise ValueError(f"{ref.size} reference tempi but {est.size} estimates")
    if (ref <= 0).any() or (est < 0).any() or not (0 <= tol <= 1):
        raise ValueError(
            "reference tempi must be positive, estimates non-negative, the tolerance in [0, 1]"
        )

    def hit(target: np.ndarray) -> np.ndarray:
        return np.abs(target - est) / target <= tol

    acc1 = hit(ref)
    acc2 = np.logical_or.reduce([hit(ref * f) for f in ACC2_FACTORS])
    return {"acc1": acc1.astype(float), "acc2": acc2.astype(float)}


# ----------------------------------------------------------------------------------------------
# Chords
# ----------------------------------------------------------------------------------------------


def chord_class(label: str) -> int:
    """Index in :data:`CHORD_CLASSES` of a Harte label reduced to maj/min/N, or -1 when it has
    no such reduction (``X``, sus, dim, aug, power chords): the same chords ``mir_eval``'s
    majmin comparison ignores. A chord counts as maj or min when its first eight semitones
    above the root are those of the triad (so ``C:maj7`` -> ``C:maj``, ``A:min7`` -> ``A:min``).
    """
    if label == "N":
        return NO_CHORD_CLASS
    if label == "X":
        return -1
    root, bitmap, _ = mir_eval.chord.encode(label)
    if root < 0:
        return NO_CHORD_CLASS if not np.any(bitmap) else -1
    if np.array_equal(bitmap[:8], _MAJ):
        return root
    if np.array_equal(bitmap[:8], _MIN):
        return 12 + root
    return -1


def intervals_to_frames(
    intervals: np.ndarray, labels: Sequence[str], n_frames: int, frame_rate: float = FRAME_RATE
) -> list[str]:
    """The label at each frame centre ``t / frame_rate`` (``N`` outside every interval), with
    ``mir_eval.util.interpolate_intervals``."""
    times = np.arange(n_frames) / frame_rate
    if len(labels) == 0:
        return ["N"] * n_frames
    return list(
        mir_eval.util.interpolate_intervals(np.asarray(intervals), list(labels), times, "N")
    )


def frames_to_intervals(
    frame_labels: Sequence[str], frame_rate: float = FRAME_RATE, duration: float | None = None
) -> tuple[np.ndarray, list[str]]:
    """Runs of equal frame labels -> labelled intervals ``(n, 2)`` in seconds.

    Frame ``t`` is centred at ``t / frame_rate`` and owns ``[(t - 1/2) / r, (t + 1/2) / r]``;
    the first interval starts at 0 and the last ends at ``duration`` (default: half a frame
    after the last centre), so the intervals tile the excerpt.
    """
    labels = list(frame_labels)
    if not labels:
        return np.zeros((0, 2)), []
    n = len(labels)
    change = [0] + [t for t in range(1, n) if labels[t] != labels[t - 1]]
    starts = np.array([0.0] + [(t - 0.5) / frame_rate for t in change[1:]])
    end = (n - 0.5) / frame_rate if duration is None else float(duration)
    ends = np.append(starts[1:], max(end, starts[-1]))
    return np.stack([starts, ends], axis=1), [labels[t] for t in change]


def write_lab(path: str | Path, intervals: np.ndarray, labels: Sequence[str]) -> None:
    """Write labelled intervals as a ``.lab`` file (start, end, label; tab-separated), the
    format ``mir_eval.io.load_labeled_intervals`` reads."""
    lines = [f"{s:.6f}\t{e:.6f}\t{lab}" for (s, e), lab in zip(intervals, labels, strict=True)]
    Path(path).write_text("\n".join(lines) + "\n")


def chord_scores(
    ref_intervals: np.ndarray,
    ref_labels: Sequence[str],
    est_intervals: np.ndarray,
    est_labels: Sequence[str],
) -> dict[str, tuple[float, float]]:
    """``mir_eval.chord`` majmin and root scores of one track, each as ``(score, weight)``:
    the duration-weighted accuracy over the reference and the duration it was computed on
    (reference chords outside the vocabulary are excluded), so that tracks combine into the
    corpus-level weighted chord symbol recall ``sum(score * weight) / sum(weight)``.

    The estimate is first fitted to the reference span, as ``mir_eval.chord.evaluate`` does.
    """
    ref_intervals = np.asarray(ref_intervals, dtype=float)
    est_intervals, est_labels = mir_eval.util.adjust_intervals(
        np.asarray(est_intervals, dtype=float),
        list(est_labels),
        ref_intervals.min(),
        ref_intervals.max(),
        mir_eval.chord.NO_CHORD,
        mir_eval.chord.NO_CHORD,
    )
    intervals, ref_l, est_l = mir_eval.util.merge_labeled_intervals(
        ref_intervals, list(ref_labels), est_intervals, est_labels
    )
    durations = mir_eval.util.intervals_to_durations(intervals)
    out = {}
    for name, compare in (("majmin", mir_eval.chord.majmin), ("root", mir_eval.chord.root)):
        comparisons = compare(ref_l, est_l)
        weight = float(durations[comparisons >= 0].sum())
        score = mir_eval.chord.weighted_accuracy(comparisons, durations) if weight > 0 else 0.0
        out[name] = (float(score), weight)
    return out


def class_runs(classes: np.ndarray, frame_rate: float = FRAME_RATE, duration: float | None = None):
    """Runs of equal chord classes ``(T,)`` -> intervals ``(n, 2)`` and the class of each run:
    :func:`frames_to_intervals` on class numbers instead of labels (same boundaries)."""
    classes = np.asarray(classes)
    if classes.size == 0:
        return np.zeros((0, 2)), classes[:0]
    change = np.flatnonzero(classes[1:] != classes[:-1]) + 1
    starts = np.concatenate([[0.0], (change - 0.5) / frame_rate])
    n = len(classes)
    end = (n - 0.5) / frame_rate if duration is None else float(duration)
    ends = np.append(starts[1:], max(end, starts[-1]))
    return np.stack([starts, ends], axis=1), classes[np.concatenate([[0], change])]


class ChordReference:
    """One track's reference chords, prepared once to score many estimates.

    The chapters score every probe (13 layers x seeds) on every test track; :func:`chord_scores`
    would parse and validate the same reference labels each time. Here ``mir_eval.chord``'s
    majmin and root comparisons are computed once for every (reference label, chord class)
    pair, so an estimate given as chord classes (:data:`CHORD_CLASSES`) needs only the interval
    arithmetic of ``mir_eval.chord.evaluate``: the estimate fitted to the reference span
    (``mir_eval.util.adjust_intervals``, padding with no-chord), the two segmentations merged
    (``mir_eval.util.merge_labeled_intervals``), then the duration-weighted accuracy
    (``mir_eval.chord.weighted_accuracy``). :meth:`scores` returns what :func:`chord_scores`
    returns for the same estimate (tests/test_metrics.py checks both on random tracks).
    Used by :mod:`vit1d.probing.scoring` (chapter 05, local probes).
    """

    def __init__(self, intervals: np.ndarray, labels: Sequence[str]) -> None:
        self.intervals = np.asarray(intervals, dtype=float).reshape(-1, 2)
        self.labels = list(labels)
        names = sorted(set(self.labels))
        row = {name: k for k, name in enumerate(names)}
        self._row = np.array([row[lab] for lab in self.labels], dtype=int)
        n_cls = len(CHORD_CLASSES)
        ref = [name for name in names for _ in range(n_cls)]
        est = list(CHORD_CLASSES) * len(names)
        self._tables = {
            name: np.asarray(compare(ref, est), dtype=float).reshape(len(names), n_cls)
            for name, compare in (("majmin", mir_eval.chord.majmin), ("root", mir_eval.chord.root))
        }
        # the merge by binary search needs sorted starts spanning [min, max] as mir_eval's
        # merge requires; any other reference goes through chord_scores (and its errors)
        iv = self.intervals
        self._sorted = bool(
            len(iv) == 0
            or (np.all(np.diff(iv[:, 0]) >= 0) and iv[0, 0] == iv.min() and iv[-1, 1] == iv.max())
        )

    def _fit_to_span(self, est: np.ndarray, cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``mir_eval.util.adjust_intervals`` to the reference span, no-chord as padding."""
        t_min, t_max = self.intervals.min(), self.intervals.max()
        first = np.flatnonzero(est[:, 1] >= t_min)
        if len(first):
            est, cls = est[first[0] :], cls[first[0] :]
        est = np.maximum(t_min, est)
        if est.min() > t_min:
            est = np.vstack(([t_min, est.min()], est))
            cls = np.concatenate([[NO_CHORD_CLASS], cls])
        last = np.flatnonzero(est[:, 0] > t_max)
        if len(last):
            est, cls = est[: last[0]], cls[: last[0]]
        est = np.minimum(t_max, est)
        if est.max() < t_max:
            est = np.vstack((est, [est.max(), t_max]))
            cls = np.concatenate([cls, [NO_CHORD_CLASS]])
        return est, cls

    def scores(
        self, classes: np.ndarray, frame_rate: float = FRAME_RATE, duration: float | None = None
    ) -> dict[str, tuple[float, float]]:
        """:func:`chord_scores` of the frame classes ``(T,)`` (indices of
        :data:`CHORD_CLASSES`), their runs cut as :func:`frames_to_intervals` cuts them."""
        est, cls = class_runs(classes, frame_rate, duration)
        if len(self.labels) == 0:
            return {"majmin": (0.0, 0.0), "root": (0.0, 0.0)}
        if not self._sorted or len(est) == 0:
            return chord_scores(self.intervals, self.labels, est, [CHORD_CLASSES[c] for c in cls])
        est, cls = self._fit_to_span(est, np.asarray(cls, dtype=int))
        bounds = np.unique(np.concatenate([self.intervals, est], axis=0))
        t0 = bounds[:-1]
        ref_at = self._row[np.searchsorted(self.intervals[:, 0], t0, side="right") - 1]
        est_at = cls[np.searchsorted(est[:, 0], t0, side="right") - 1]
        durations = np.abs(bounds[1:] - t0)
        out = {}
        for name, table in self._tables.items():
            comparisons = table[ref_at, est_at]
            valid = comparisons >= 0
            weight = float(durations[valid].sum())
            score = 0.0
            if weight > 0 and durations.sum() > 0:
                normalized = durations[valid] / weight
                score = float(np.sum(comparisons[valid] * normalized))
            out[name] = (score, weight)
        return out


# ----------------------------------------------------------------------------------------------
# Beats and onsets
# ----------------------------------------------------------------------------------------------


def events_to_targets(
    times: np.ndarray, n_frames: int, frame_rate: float = FRAME_RATE, widen: float = 0.5
) -> np.ndarray:
    """Frame targets for an event activation: 1 at the frame nearest each event, ``widen`` at
    its two neighbours (so a probe is not punished for a one-frame offset), else 0."""
    target = np.zeros(n_frames, dtype=np.float32)
    idx = np.rint(np.asarray(times, dtype=float) * frame_rate).astype(int)
    idx = idx[(idx >= 0) & (idx < n_frames)]
    if widen > 0:
        for shift in (-1, 1):
            near = np.clip(idx + shift, 0, n_frames - 1)
            target[near] = np.maximum(target[near], widen)
    target[idx] = 1.0
    return target


def activation_to_beats(activation: np.ndarray, frame_rate: float = FRAME_RATE) -> np.ndarray:
    """Beat times (s) from a frame activation, with librosa's dynamic-programming beat tracker
    (``librosa.beat.beat_track`` using the activation as its onset envelope)."""
    act = np.asarray(activation, dtype=float)
    if act.size < 2 or not np.any(act > act.min()):
        return np.zeros(0)
    _, beats = librosa.beat.beat_track(
        onset_envelope=act, sr=frame_rate * HOP_LENGTH, hop_length=HOP_LENGTH, units="time"
    )
    return np.asarray(beats, dtype=float)


def activation_to_onsets(
    activation: np.ndarray, frame_rate: float = FRAME_RATE, threshold: float = 0.5
) -> np.ndarray:
    """Onset times (s): peaks of the activation (``librosa.util.peak_pick``: a maximum over
    +-2 frames, at least 2 frames apart) that reach ``threshold``."""
    act = np.asarray(activation, dtype=float)
    if act.size < 3:
        return np.zeros(0)
    peaks = librosa.util.peak_pick(
        act, pre_max=2, post_max=3, pre_avg=2, post_avg=3, delta=0.0, wait=2
    )
    peaks = peaks[act[peaks] >= threshold]
    return peaks / frame_rate


def beat_scores(reference: np.ndarray, estimated: np.ndarray) -> dict[str, float]:
    """``mir_eval.beat`` F-measure (70 ms window), CMLt and AMLt of one track."""
    ref, est = np.asarray(reference, dtype=float), np.asarray(estimated, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns on empty beat lists (score 0)
        f = mir_eval.beat.f_measure(ref, est, f_measure_threshold=0.07)
        _, cmlt, _, amlt = mir_eval.beat.continuity(ref, est)
    return {"f_measure": float(f), "cmlt": float(cmlt), "amlt": float(amlt)}


def onset_scores(reference: np.ndarray, estimated: np.ndarray) -> dict[str, float]:
    """``mir_eval.onset.f_measure`` (50 ms window) of one track."""
    ref, est = np.asarray(reference, dtype=float), np.asarray(estimated, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f, _, _ = mir_eval.onset.f_measure(ref, est, window=0.05)
    return {"f_measure": float(f)}


def load_events(path: str | Path) -> np.ndarray:
    """Event times from an annotation file: ``mir_eval.io.load_events``; for files with more
    columns (e.g. Ballroom's ``time beat-number``) the first column."""
    try:
        return np.asarray(mir_eval.io.load_events(str(path)), dtype=float)
    except ValueError:
        data = np.loadtxt(str(path), comments="#", usecols=0, ndmin=1)
        return np.sort(np.asarray(data, dtype=float))


def weighted_mean(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """``sum(w v) / sum(w)`` (plain mean without weights); NaN for no units."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan")
    if weights is None:
        return float(values.mean())
    weights = np.asarray(weights, dtype=float)
    total = weights.sum()
    return float((weights * values).sum() / total) if total > 0 else float("nan")
