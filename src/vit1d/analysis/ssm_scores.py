"""The self-similarity analysis over a corpus (claims C4, C4b): each layer's SSM of a model,
its random-init twin and the standardised log-mel scored against the clip's reference
SSMs, and chord changes detected from each layer's novelty with a peak threshold chosen on
the validation clips; the example SSM panels of a clip.

Used by: :mod:`vit1d.analysis.analyses`, :mod:`vit1d.book.examples`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mir_eval
import numpy as np
import pandas as pd

from vit1d.analysis import attention as att
from vit1d.analysis import ssm as sm
from vit1d.analysis.clips import (
    CHANCE_DRAWS,
    Clip,
    load_clip,
    progress_bar,
    read_manifest,
    select_clips,
    standardised_input,
)
from vit1d.analysis.onsets import summarise_f
from vit1d.audio.frontend import frame_times
from vit1d.audio.grid import FRAME_RATE
from vit1d.core.errors import UserError

#: Peak-picking windows for chord boundaries in seconds (chords last >= 0.5 s in the corpus).
BOUNDARY_PEAKS = {"pre_max": 0.2, "post_max": 0.2, "pre_avg": 0.5, "post_avg": 0.5, "wait": 0.2}

#: Windows shorter than this many frames are not scored for SSMs (too few pairs).
MIN_WINDOW = 2 * sm.NOVELTY_KERNEL


def clip_references(clip: Clip) -> dict[str, np.ndarray]:
    """Frame-level references of a clip (``(T, ...)`` each): the audio features of
    :func:`vit1d.analysis.ssm.reference_features`, the exact chord label of each frame, the instrument
    label where the manifest names a time-resolved file (``instruments`` column), and the
    frame index (``position``)."""
    t = clip.mel.shape[0]
    refs = sm.reference_features(clip.y)
    refs = {k: v[:t] for k, v in refs.items()}
    times = frame_times(t)
    ints, labs = mir_eval.io.load_labeled_intervals(clip.row["annotation"])
    refs["chords"] = sm.frame_labels(ints, labs, times)
    inst = clip.row.get("instruments")
    if isinstance(inst, str) and inst:
        i_ints, i_labs = mir_eval.io.load_labeled_intervals(inst)
        refs["instrument"] = sm.frame_labels(i_ints, i_labs, times, fill="none")
    refs["position"] = np.arange(t, dtype=np.float64)
    return refs


def clip_ssm_scores(
    clip: Clip,
    models: dict[str, Any],
    rng: np.random.Generator,
    n_shuffles: int = 20,
    score: bool = True,
) -> tuple[list[dict], dict[tuple[str, int], np.ndarray]]:
    """SSM scores of every model layer against every reference for each window of a clip,
    and the clip's novelty curves. Returns (rows, ``{(model, layer): novelty (T,)}``), with
    chroma novelty under ``("chroma", 0)``. ``logmel`` (the standardised input) is scored
    as a model with one layer, 0. ``score=False`` skips the SSM scores (threshold tuning
    needs only the novelty curves)."""
    refs = clip_references(clip)
    dims = [d for d in sm.DIMENSIONS if d in refs]
    first = next(iter(models.values()))
    per_model: dict[str, list[att.WindowOutput]] = {
        name: att.run_windows(m, clip.mel, attentions=False, hidden=True)
        for name, m in models.items()
    }
    rows: list[dict] = []
    novelty: dict[tuple[str, int], list[np.ndarray]] = {}
    x_in = standardised_input(clip.mel, first)
    for w, win in enumerate(next(iter(per_model.values()))):
        start = win.start
        stop = start + win.hidden.shape[1]
        stacks = {name: sm.layer_ssms(ws[w].hidden) for name, ws in per_model.items()}
        stacks["logmel"] = sm.cosine_ssm(x_in[start:stop])[None]
        chroma_ssm = sm.cosine_ssm(refs["chroma"][start:stop])
        for name, st in stacks.items():
            for layer in range(len(st)):
                novelty.setdefault((name, layer), []).append(sm.novelty_curve(st[layer]))
        novelty.setdefault(("chroma", 0), []).append(sm.novelty_curve(chroma_ssm))
        if not score or stop - start < MIN_WINDOW:
            continue
        ranked = {name: sm.rank_stack(st) for name, st in stacks.items()}
        for dim in dims:
            ref = sm.reference_ssm(dim, refs[dim][start:stop])
            for name, st in stacks.items():
                scores, chance = sm.rank_scores(ranked[name], ref, rng, n_shuffles)
                for layer in range(len(st)):
                    rows.append(
                        {
                            "split": clip.split,
                            "clip": clip.clip,
                            "window": w,
                            "start": start / FRAME_RATE,
                            "frames": stop - start,
                            "model": name,
                            "layer": layer,
                            "dimension": dim,
                            "group": sm.DIMENSION_GROUP[dim],
                            "score": scores[layer],
                            "chance": chance[layer],
                        }
                    )
    return rows, {k: np.concatenate(v) for k, v in novelty.items()}


def example_ssms(
    clip: Clip, models: dict[str, Any], window: int = 0, layers: Sequence[int] | None = None
) -> dict[str, np.ndarray]:
    """SSMs of one clip window for example panels: the trained model's layers (default:
    about four evenly spaced, plus the last), the random-init model's last layer, and the
    references (chroma, chord labels, MFCC, loudness, tempogram)."""
    refs = clip_references(clip)
    out: dict[str, np.ndarray] = {}
    start = None
    for name, model in models.items():
        win = att.run_windows(model, clip.mel, attentions=False, hidden=True)[window]
        start, stop = win.start, win.start + win.hidden.shape[1]
        n = win.hidden.shape[0] - 1
        chosen = (
            list(layers)
            if layers is not None
            else sorted({max(1, round(n * q)) for q in (0.25, 0.5, 0.75, 1.0)})
        )
        if name == "trained":
            for layer in chosen:
                out[f"trained layer {layer}"] = sm.cosine_ssm(win.hidden[layer])
        else:
            out[f"{name} layer {n}"] = sm.cosine_ssm(win.hidden[n])
    for dim in ("chroma", "chords", "mfcc", "rms", "tempogram"):
        out[f"{dim} ({sm.DIMENSION_GROUP[dim]})"] = sm.reference_ssm(dim, refs[dim][start:stop])
    return out


def _boundary_scores(
    clip: Clip,
    changes: np.ndarray,
    novelty: dict[tuple[str, int], np.ndarray],
    deltas: tuple[float, ...],
    rng: np.random.Generator,
    boundary_window: float,
) -> dict[tuple[str, int], np.ndarray]:
    """Chord-change ``(F, precision, recall)`` of each novelty curve at each threshold,
    ``(n_deltas, 3)`` per key, and a chance level under ``("chance", 0)``."""
    scores = {}
    for key, curve in novelty.items():
        scores[key] = np.array(
            [
                sm.boundary_f_measure(
                    changes,
                    att.pick_peaks(curve, FRAME_RATE, delta=d, **BOUNDARY_PEAKS),
                    clip.duration,
                    boundary_window,
                )
                for d in deltas
            ]
        )
    # chance: as many boundaries as the labels have, at uniformly random times
    chance = np.mean(
        [
            sm.boundary_f_measure(
                changes,
                sm.random_boundaries(len(changes), clip.duration, rng),
                clip.duration,
                boundary_window,
            )
            for _ in range(CHANCE_DRAWS)
        ],
        axis=0,
    )
    scores[("chance", 0)] = np.tile(chance, (len(deltas), 1))
    return scores


def _window_summary(per_window: Any) -> Any:
    """Mean score, its std, and mean chance over windows per (model, layer, dimension),
    with ``above_chance = score - chance``."""
    summary = (
        per_window.groupby(["model", "layer", "dimension", "group"], sort=False)
        .agg(
            score=("score", "mean"),
            score_std=("score", "std"),
            chance=("chance", "mean"),
            n_windows=("score", lambda s: int(np.isfinite(s).sum())),
        )
        .reset_index()
    )
    summary["above_chance"] = summary["score"] - summary["chance"]
    return summary


def _novelty_table(
    nov_scores: dict[str, list[tuple[str, dict]]],
    tune_split: str,
    eval_split: str,
    deltas: tuple[float, ...],
) -> Any:
    """Chord-change scores per ``eval_split`` clip and novelty curve at the threshold of
    highest mean F on ``tune_split`` (the librosa default 0.07 when it has no clips)."""
    keys = list(nov_scores[eval_split][0][1])
    if nov_scores.get(tune_split):
        mean_f = {k: np.mean([s[k][:, 0] for _, s in nov_scores[tune_split]], axis=0) for k in keys}
        best = {k: int(np.argmax(v)) for k, v in mean_f.items()}
    else:
        best = {k: deltas.index(0.07) if 0.07 in deltas else 0 for k in keys}
    nov_rows = []
    for clip, scores in nov_scores[eval_split]:
        for (model, layer), s in scores.items():
            f, p, r = s[best[(model, layer)]]
            nov_rows.append(
                {
                    "split": eval_split,
                    "clip": clip,
                    "model": model,
                    "layer": layer,
                    "delta": deltas[best[(model, layer)]],
                    "f": f,
                    "precision": p,
                    "recall": r,
                }
            )
    return pd.DataFrame(nov_rows)


def ssm_analysis(
    corpus: str | Path,
    models: dict[str, Any],
    logmel: Any,
    tune_split: str = "valid",
    eval_split: str = "test",
    max_clips: int = 0,
    seed: int = 0,
    n_shuffles: int = 20,
    progress: bool = True,
    boundary_window: float = sm.BOUNDARY_WINDOW,
    n_examples: int = 2,
) -> dict[str, Any]:
    """Layer x dimension SSM scores on the ``chords`` manifest's ``eval_split`` clips (with
    chance levels), and chord-change detection from each layer's novelty (hit window
    ``boundary_window`` s), its threshold chosen on ``tune_split``; chord-change chance is
    :data:`vit1d.analysis.clips.CHANCE_DRAWS` random boundary sets of the labels' size.
    Returns DataFrames ``per_window``, ``summary``, ``novelty`` (per clip) and
    ``novelty_summary``, and ``examples``: :func:`example_ssms` of the first
    ``n_examples`` evaluation clips."""
    df = read_manifest(corpus, "chords")
    # one generator, drawn in clip order: shift chances first, then boundary chances
    rng = np.random.default_rng(seed)
    deltas = tuple(att.DELTAS)
    rows: list[dict] = []
    nov_scores: dict[str, list[tuple[str, dict]]] = {}
    examples: dict[str, dict[str, np.ndarray]] = {}
    for split in (tune_split, eval_split):
        sel = select_clips(df, split, max_clips, seed)
        for row in progress_bar(list(sel.to_dict("records")), f"ssm {split}", progress):
            clip = load_clip(row, logmel)
            r, novelty = clip_ssm_scores(clip, models, rng, n_shuffles, split == eval_split)
            if split == eval_split and len(examples) < n_examples:
                examples[clip.clip] = example_ssms(clip, models)
            if split == eval_split:
                rows.extend(r)
            ints, labs = mir_eval.io.load_labeled_intervals(row["annotation"])
            changes = sm.change_points(ints, labs)
            scores = _boundary_scores(clip, changes, novelty, deltas, rng, boundary_window)
            nov_scores.setdefault(split, []).append((clip.clip, scores))
    if not nov_scores.get(eval_split):
        raise UserError(
            f"no {eval_split!r} clips in {Path(corpus) / 'chords' / 'manifest.csv'}; "
            "choose another --eval-split"
        )
    per_window = pd.DataFrame(rows)
    novelty = _novelty_table(nov_scores, tune_split, eval_split, deltas)
    return {
        "per_window": per_window,
        "summary": _window_summary(per_window),
        "novelty": novelty,
        "novelty_summary": summarise_f(novelty, ["model", "layer"]),
        "examples": examples,
    }
