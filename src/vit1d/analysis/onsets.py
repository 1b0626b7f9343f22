"""The attention-onset analysis over a corpus (claim C3): every attention onset curve of a
model and its random-init twin, spectral flux and a chance level, scored against the
``onsets`` manifest's labels with a peak threshold chosen on the validation clips.

Used by: :mod:`vit1d.analysis.analyses`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mir_eval
import numpy as np
import pandas as pd

from vit1d.analysis import attention as att
from vit1d.analysis.clips import (
    CHANCE_DRAWS,
    Clip,
    load_clip,
    progress_bar,
    read_manifest,
    select_clips,
)
from vit1d.audio.grid import FRAME_RATE
from vit1d.core.errors import UserError

#: The columns naming one onset curve.
CURVE_KEYS = ["model", "method", "layer", "head"]


def clip_onset_scores(
    clip: Clip,
    models: dict[str, Any],
    reference: np.ndarray,
    deltas: Sequence[float] = att.DELTAS,
    rng: np.random.Generator | None = None,
) -> tuple[list[tuple[str, str, int, str]], np.ndarray]:
    """Every onset curve of a clip scored at every threshold: returns the curve keys
    ``(model, method, layer, head)`` and an array ``(n_curves, n_deltas, 3)`` of
    ``(F, precision, recall)``. Spectral flux is the key ``("spectral_flux",
    "spectral_flux", 0, "-")``; with ``rng``, a chance level is the last key,
    ``("chance", "chance", 0, "-")``: as many onsets as the labels have, at uniformly random
    times (mean of :data:`vit1d.analysis.clips.CHANCE_DRAWS` draws; the same for every
    threshold)."""
    curves: dict[tuple[str, str, int, str], np.ndarray] = {
        ("spectral_flux", "spectral_flux", 0, "-"): att.spectral_flux(clip.y)
    }
    for name, model in models.items():
        windows = att.run_windows(model, clip.mel, attentions=True, hidden=False)
        for (method, layer, head), c in att.clip_onset_curves(windows).items():
            curves[(name, method, layer, head)] = c
    keys = list(curves)
    out = np.zeros((len(keys), len(deltas), 3))
    for i, k in enumerate(keys):
        for j, d in enumerate(deltas):
            out[i, j] = att.score_curve(curves[k], reference, FRAME_RATE, delta=d)
    if rng is not None:
        draws = [
            att.onset_f_measure(reference, rng.uniform(0.0, clip.duration, size=len(reference)))
            for _ in range(CHANCE_DRAWS)
        ]
        keys.append(("chance", "chance", 0, "-"))
        out = np.concatenate([out, np.tile(np.mean(draws, axis=0), (1, len(deltas), 1))])
    return keys, out


def summarise_f(per_clip: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean F (with its std over clips), precision and recall per group of ``keys``; the
    peak-picking ``delta`` and the number of clips ride along."""
    return (
        per_clip.groupby(keys, sort=False)
        .agg(
            f=("f", "mean"),
            f_std=("f", "std"),
            precision=("precision", "mean"),
            recall=("recall", "mean"),
            delta=("delta", "first"),
            n_clips=("f", "size"),
        )
        .reset_index()
    )


def _score_clips(
    df: Any,
    splits: Sequence[str],
    models: dict[str, Any],
    logmel: Any,
    deltas: tuple[float, ...],
    max_clips: int,
    seed: int,
    progress: bool,
) -> tuple[list | None, dict[str, list[np.ndarray]], dict[str, list[str]]]:
    """:func:`clip_onset_scores` of the selected clips of each split, in order, with one
    generator for every chance draw: the curve keys, the score arrays per split and the
    clip ids per split."""
    rng = np.random.default_rng(seed)
    results: dict[str, list] = {}
    keys: list | None = None
    clip_ids: dict[str, list[str]] = {}
    for split in splits:
        rows = select_clips(df, split, max_clips, seed)
        for row in progress_bar(list(rows.to_dict("records")), f"onsets {split}", progress):
            clip = load_clip(row, logmel)
            ref = mir_eval.io.load_events(row["annotation"])
            k, s = clip_onset_scores(clip, models, ref, deltas, rng)
            if keys is None:
                keys = k
            elif k != keys:
                raise RuntimeError("onset curve keys differ between clips")
            results.setdefault(split, []).append(s)
            clip_ids.setdefault(split, []).append(clip.clip)
    return keys, results, clip_ids


def _choose_thresholds(
    index: pd.DataFrame, tune: list[np.ndarray], deltas: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Each curve's threshold (index into ``deltas``) of highest mean F over the tuning
    clips ``tune``, that F, and the tuning table; the librosa default 0.07 and no F when
    there are no tuning clips."""
    if tune:
        scores = np.stack(tune)  # (clips, curves, deltas, 3)
        mean_f = scores[..., 0].mean(axis=0)
        best = mean_f.argmax(axis=1)
        f_valid = mean_f.max(axis=1)
        tuning = pd.concat(
            [
                index.assign(delta=d, f=mean_f[:, j], n_clips=len(scores))
                for j, d in enumerate(deltas)
            ],
            ignore_index=True,
        )
    else:
        best = np.full(len(index), deltas.index(0.07) if 0.07 in deltas else 0)
        f_valid = np.full(len(index), np.nan)
        tuning = index.assign(delta=np.nan, f=np.nan, n_clips=0)
    return best, f_valid, tuning


def onset_analysis(
    corpus: str | Path,
    models: dict[str, Any],
    logmel: Any,
    tune_split: str = "valid",
    eval_split: str = "test",
    max_clips: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Onset F-measure of every attention curve (and spectral flux) on the ``onsets``
    manifest. Thresholds are chosen per curve on ``tune_split`` (highest mean F; the
    librosa default 0.07 where that split is empty) and applied to ``eval_split``.
    Returns DataFrames ``per_clip``, ``summary`` and ``tuning``."""
    df = read_manifest(corpus, "onsets")
    deltas = tuple(att.DELTAS)
    keys, results, clip_ids = _score_clips(
        df, (tune_split, eval_split), models, logmel, deltas, max_clips, seed, progress
    )
    if keys is None or not results.get(eval_split):
        raise UserError(
            f"no {eval_split!r} clips in {Path(corpus) / 'onsets' / 'manifest.csv'}; "
            "choose another --eval-split"
        )
    index = pd.DataFrame(keys, columns=CURVE_KEYS)
    best, f_valid, tuning = _choose_thresholds(index, results.get(tune_split, []), deltas)
    ev = np.stack(results[eval_split])  # (clips, curves, deltas, 3)
    chosen = ev[:, np.arange(len(keys)), best]  # (clips, curves, 3)
    per_clip = [
        index.assign(
            split=eval_split,
            clip=clip,
            delta=[deltas[b] for b in best],
            f=chosen[c, :, 0],
            precision=chosen[c, :, 1],
            recall=chosen[c, :, 2],
        )
        for c, clip in enumerate(clip_ids[eval_split])
    ]
    per_clip_df = pd.concat(per_clip, ignore_index=True)
    summary = summarise_f(per_clip_df, CURVE_KEYS)
    # the validation F at the chosen threshold: what picks the headline curve, so that the
    # test F reported for it is not selected on the test clips themselves
    summary = summary.merge(index.assign(f_valid=f_valid), on=CURVE_KEYS, how="left")
    return {"per_clip": per_clip_df, "summary": summary, "tuning": tuning}
