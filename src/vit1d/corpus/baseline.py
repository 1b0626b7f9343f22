"""The log-mel baseline check: is any task near-solved without learning anything?

No task built from rendered music may be near-solved by a log-mel baseline (accuracy or
ROC-AUC above about 0.95), otherwise the task cannot show what pretraining
adds. This module fits, per task, a logistic regression (scikit-learn) on:

* global tasks (tagging, key, tempo, pitch, instrument): the mean and standard deviation
  over time of each of the 128 log-mel bands (the front end of the method chapter, "The front end:
  a log-mel spectrogram", computed with librosa) of the whole clip, standardised;
* local tasks (chords, beats, onsets): each frame's 128 log-mel bands plus their difference
  from the previous frame, at 31.25 frames per second.

Metrics follow the probing chapters: macro ROC-AUC and mAP for tagging, accuracy and the MIREX
weighted score for key, Acc1/Acc2 for tempo (a classifier over 4 %-wide log-tempo bins),
accuracy for pitch and instrument, frame accuracy over the 25 majmin classes for chords,
and beat/onset F-measure (mir_eval, 70 / 50 ms) after peak picking the frame
probabilities. Results go to ``<root>/stats/baseline.md`` and ``baseline.json``.

This is a quick check until the probing suite exists; it is not the paper's protocol.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import librosa
import mir_eval
import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vit1d.audio.frontend import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE, load_audio
from vit1d.corpus import labels

TEMPO_BIN = np.log(1.04)


def logmel(path: Path) -> np.ndarray:
    """Log-mel spectrogram ``(T, 128)`` in dB, the front end's parameters."""
    y = load_audio(path)
    m = librosa.feature.melspectrogram(
        y=y, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS
    )
    return (10.0 * np.log10(np.maximum(m, 1e-10))).T.astype(np.float32)


_STATS_CACHE: dict[str, np.ndarray] = {}


def _global_features(base: Path, audio: list[str]) -> np.ndarray:
    """Mean and std over time of each log-mel band, per clip (memoised: tasks share clips)."""
    feats = []
    for rel in audio:
        key = os.path.normpath(str(base / rel))
        if key not in _STATS_CACHE:
            x = logmel(Path(key))
            _STATS_CACHE[key] = np.concatenate([x.mean(axis=0), x.std(axis=0)])
        feats.append(_STATS_CACHE[key])
    return np.asarray(feats)


def _clf(max_iter: int = 2000, **kw: Any):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=1.0, **kw))


def _subset(m: pd.DataFrame, split: str, n: int | None, seed: int) -> pd.DataFrame:
    part = m[m["split"] == split]
    if n is not None and len(part) > n:
        part = part.sample(n=n, random_state=seed).sort_values("render_id")
    return part


def run_baseline(
    root: str | os.PathLike[str],
    log: Callable[[str], None] = print,
    max_train: int | None = 3000,
    max_test: int | None = 1000,
    max_local_train: int = 400,
    max_local_test: int = 150,
    seed: int = 0,
) -> str:
    """Fit and score the baseline on every task of the corpus under ``root``.

    Returns the markdown table, also written to ``<root>/stats/baseline.md``.
    """
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", message="The least populated class")
    warnings.filterwarnings("ignore", message="The number of unique classes")
    root = Path(root)
    rows: list[dict[str, Any]] = []
    for global_task in (_tagging, _key, _tempo, _isolated_notes):
        rows += global_task(root, log, max_train, max_test, seed)
    rows += _local_chords(root, log, max_local_train, max_local_test, seed)
    for task in ("beats", "onsets"):
        rows += _local_events(root, task, log, max_local_train, max_local_test, seed)
    return _write_table(root, rows)


def _load(
    root: Path, task: str, n_tr: int | None, n_te: int | None, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """A task's train and test subsets and its folder."""
    m = pd.read_csv(root / task / "manifest.csv")
    return _subset(m, "train", n_tr, seed), _subset(m, "test", n_te, seed), root / task


def _tagging(
    root: Path, log: Callable, n_tr: int | None, n_te: int | None, seed: int
) -> list[dict[str, Any]]:
    """Macro ROC-AUC and mAP over the tags with at least 5 train and some test positives."""
    tr, te, base = _load(root, "tagging", n_tr, n_te, seed)
    log(f"baseline: tagging ({len(tr)} train, {len(te)} test clips)")
    xtr, xte = _global_features(base, list(tr["audio"])), _global_features(base, list(te["audio"]))
    ttr = [set(t.split(";")) for t in tr["tags"]]
    tte = [set(t.split(";")) for t in te["tags"]]
    vocab = sorted({t for s in ttr for t in s})
    aucs, aps = [], []
    for tag in vocab:
        ytr = np.array([tag in s for s in ttr])
        yte = np.array([tag in s for s in tte])
        if ytr.sum() < 5 or yte.sum() == 0 or yte.all() or ytr.all():
            continue
        p = _clf().fit(xtr, ytr).predict_proba(xte)[:, 1]
        aucs.append(roc_auc_score(yte, p))
        aps.append(average_precision_score(yte, p))
    n = f"{len(te)} test clips, {len(aucs)} tags"
    return [
        {"task": "tagging", "metric": "ROC-AUC (macro)", "value": float(np.mean(aucs)), "n": n},
        {"task": "tagging", "metric": "mAP (macro)", "value": float(np.mean(aps)), "n": n},
    ]


def _key(
    root: Path, log: Callable, n_tr: int | None, n_te: int | None, seed: int
) -> list[dict[str, Any]]:
    """Key accuracy and the MIREX weighted score."""
    tr, te, base = _load(root, "key", n_tr, n_te, seed)
    log(f"baseline: key ({len(tr)} train, {len(te)} test clips)")
    xtr, xte = _global_features(base, list(tr["audio"])), _global_features(base, list(te["audio"]))
    pred = _clf().fit(xtr, tr["key"]).predict(xte)
    n = f"{len(te)} test clips"
    acc = float(np.mean(pred == te["key"]))
    w = [mir_eval.key.weighted_score(r, e) for r, e in zip(te["key"], pred, strict=True)]
    return [
        {"task": "key", "metric": "accuracy", "value": acc, "n": n},
        {"task": "key", "metric": "MIREX weighted", "value": float(np.mean(w)), "n": n},
    ]


def _tempo(
    root: Path, log: Callable, n_tr: int | None, n_te: int | None, seed: int
) -> list[dict[str, Any]]:
    """Acc1 and Acc2 of a classifier over 4 %-wide log-tempo bins."""
    tr, te, base = _load(root, "tempo", n_tr, n_te, seed)
    log(f"baseline: tempo ({len(tr)} train, {len(te)} test clips)")
    xtr, xte = _global_features(base, list(tr["audio"])), _global_features(base, list(te["audio"]))
    btr = np.round(np.log(tr["bpm"].to_numpy()) / TEMPO_BIN).astype(int)
    pred = np.exp(_clf().fit(xtr, btr).predict(xte) * TEMPO_BIN)
    ref = te["bpm"].to_numpy()
    acc1 = np.abs(pred - ref) <= 0.04 * ref
    acc2 = np.zeros_like(acc1)
    for f in (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0):
        acc2 |= np.abs(pred - f * ref) <= 0.04 * f * ref
    n = f"{len(te)} test clips"
    return [
        {"task": "tempo", "metric": "Acc1", "value": float(acc1.mean()), "n": n},
        {"task": "tempo", "metric": "Acc2", "value": float(acc2.mean()), "n": n},
    ]


def _isolated_notes(
    root: Path, log: Callable, n_tr: int | None, n_te: int | None, seed: int
) -> list[dict[str, Any]]:
    """Pitch and instrument accuracy on the isolated notes."""
    rows = []
    for task, col in (("pitch", "pitch"), ("instrument", "instrument")):
        tr, te, base = _load(root, task, n_tr, n_te, seed)
        log(f"baseline: {task} ({len(tr)} train, {len(te)} test notes)")
        xtr = _global_features(base, list(tr["audio"]))
        xte = _global_features(base, list(te["audio"]))
        pred = _clf().fit(xtr, tr[col].astype(str)).predict(xte)
        acc = float(np.mean(pred == te[col].astype(str)))
        n = f"{len(te)} test notes"
        rows.append({"task": task, "metric": "accuracy", "value": acc, "n": n})
    return rows


def _write_table(root: Path, rows: list[dict[str, Any]]) -> str:
    """Write ``stats/baseline.md`` and ``baseline.json``; returns the markdown table."""
    for r in rows:
        r.setdefault("n", "")
    table = ["| task | metric | log-mel baseline | evaluated on |", "|---|---|---:|---|"]
    for r in rows:
        table.append(f"| {r['task']} | {r['metric']} | {r['value']:.3f} | {r['n']} |")
    text = "\n".join(table)
    out = root / "stats"
    out.mkdir(parents=True, exist_ok=True)
    (out / "baseline.md").write_text(text + "\n", encoding="utf-8")
    (out / "baseline.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return text


def _frame_features(x: np.ndarray) -> np.ndarray:
    delta = np.diff(x, axis=0, prepend=x[:1])
    return np.concatenate([x, delta], axis=1)


def _frame_times(n: int) -> np.ndarray:
    return np.arange(n) * HOP_LENGTH / SAMPLE_RATE


def _local_chords(root: Path, log, n_tr: int, n_te: int, seed: int) -> list[dict[str, Any]]:
    m = pd.read_csv(root / "chords" / "manifest.csv")
    tr, te = _subset(m, "train", n_tr, seed), _subset(m, "test", n_te, seed)
    log(f"baseline: chords ({len(tr)} train, {len(te)} test clips, per frame)")
    classes = {c: i for i, c in enumerate(labels.CHORDS)}

    def frames(df: pd.DataFrame, step: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for rel, ann in zip(df["audio"], df["annotation"], strict=True):
            x = logmel(root / "chords" / rel)
            iv, labs = mir_eval.io.load_labeled_intervals(str(root / "chords" / ann))
            t = _frame_times(len(x))
            idx = np.clip(np.searchsorted(iv[:, 0], t, side="right") - 1, 0, len(labs) - 1)
            y = np.array([classes[labs[i]] for i in idx])
            f = _frame_features(x)
            xs.append(f[::step])
            ys.append(y[::step])
        return np.concatenate(xs), np.concatenate(ys)

    xtr, ytr = frames(tr, 4)
    xte, yte = frames(te, 1)
    pred = _clf(max_iter=300).fit(xtr, ytr).predict(xte)
    return [
        {
            "task": "chords",
            "metric": "frame accuracy (majmin)",
            "value": float(np.mean(pred == yte)),
            "n": f"{len(te)} clips",
        }
    ]


def _local_events(
    root: Path, task: str, log, n_tr: int, n_te: int, seed: int
) -> list[dict[str, Any]]:
    m = pd.read_csv(root / task / "manifest.csv")
    tr, te = _subset(m, "train", n_tr, seed), _subset(m, "test", n_te, seed)
    log(f"baseline: {task} ({len(tr)} train, {len(te)} test clips, per frame)")

    def frames(df: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = []
        for rel, ann in zip(df["audio"], df["annotation"], strict=True):
            x = _frame_features(logmel(root / task / rel))
            ev = mir_eval.io.load_events(str(root / task / ann))
            y = np.zeros(len(x), dtype=bool)
            y[np.clip(np.round(ev * SAMPLE_RATE / HOP_LENGTH).astype(int), 0, len(x) - 1)] = True
            out.append((x, y, ev))
        return out

    train = frames(tr)
    clf = _clf(max_iter=300, class_weight="balanced").fit(
        np.concatenate([x for x, _, _ in train]), np.concatenate([y for _, y, _ in train])
    )
    scores = []
    for x, _, ev in frames(te):
        p = clf.predict_proba(x)[:, 1]
        peaks = librosa.util.peak_pick(
            p, pre_max=3, post_max=3, pre_avg=3, post_avg=3, delta=0.05, wait=3
        )
        peaks = peaks[p[peaks] > 0.5]
        est = _frame_times(len(x))[peaks]
        if task == "beats":
            scores.append(mir_eval.beat.f_measure(ev, est))  # no 5 s trim: clips are short
        else:
            scores.append(mir_eval.onset.f_measure(ev, est, window=0.05)[0])
    return [
        {
            "task": task,
            "metric": "F-measure",
            "value": float(np.mean(scores)),
            "n": f"{len(te)} clips",
        }
    ]
