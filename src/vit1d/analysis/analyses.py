"""The analyses driver: attention onsets (C3) and layer-wise self-similarity (C4) over a corpus.

``vit1d analyses --checkpoint DIR --corpus ROOT --out DIR`` runs a checkpoint and its
random-init twin (same config, ``torch.manual_seed(seed)``) over the corpus's task
manifests (docs/design.md, "Public API") and writes tidy CSVs:

* ``onsets.csv``: per test clip, model (``trained``, ``random``, ``spectral_flux``, and
  ``chance``: as many onsets as labelled, at random times), onset
  curve (:data:`vit1d.analysis.attention.CURVES`), layer (1..L), head (``0``.., ``mean``,
  ``rollout``): F, precision, recall of ``mir_eval.onset.f_measure`` (50 ms) against the
  ``onsets`` manifest's exact labels. The peak threshold of each (model, curve, layer, head)
  is chosen on the validation clips (``onsets_tuning.csv``), so every curve, spectral flux
  included, gets the same tuning budget;
* ``onsets_summary.csv``: the mean over test clips of each row group;
* ``ssm.csv``: per window of each ``chords`` clip, model (``trained``, ``random``,
  ``logmel``: the model's standardised input), layer (0 = embeddings .. L), reference
  dimension (:data:`vit1d.analysis.ssm.DIMENSIONS`): Spearman score and its time-shift chance level;
* ``ssm_summary.csv``: means over test windows, and ``score - chance``;
* ``novelty.csv`` / ``novelty_summary.csv``: chord-change detection from each layer's SSM
  novelty (and from chroma novelty, and ``chance``: as many boundaries as labelled, at random
  times) with ``mir_eval.segment.detection`` (0.5 s), peak threshold chosen on the
  validation clips; with ``--figures``, PNG heatmaps and example SSM panels;
* ``provenance.json``: checkpoint (path, SHA-256 of the weights, config), corpus (root,
  manifest hashes), seed, thresholds chosen, clip counts, hardware and library versions,
  timings. Every CSV has a ``run_id`` column naming it.

Used by: ``notebooks/06_attention.ipynb`` and ``notebooks/07_self_similarity.ipynb`` (they
read the CSVs), the book pipeline.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vit1d.analysis import attention as att
from vit1d.analysis import ssm as sm
from vit1d.audio.grid import FRAME_RATE
from vit1d.core import atomic
from vit1d.core.errors import UserError
from vit1d.core.provenance import file_sha256, library_versions, weights_fingerprint

if TYPE_CHECKING:  # pandas is imported where it is used: the CLI starts faster
    import pandas as pd


#: Peak-picking windows for chord boundaries in seconds (chords last >= 0.5 s in the corpus).
BOUNDARY_PEAKS = {"pre_max": 0.2, "post_max": 0.2, "pre_avg": 0.5, "post_avg": 0.5, "wait": 0.2}

#: Random boundary sets drawn per clip for the chord-change chance level.
CHANCE_DRAWS = 10

#: Windows shorter than this many frames are not scored for SSMs (too few pairs).
MIN_WINDOW = 2 * sm.NOVELTY_KERNEL


# ----------------------------------------------------------------------------------------
# Corpus and models
# ----------------------------------------------------------------------------------------


def read_manifest(root: str | Path, task: str) -> Any:
    """``<root>/<task>/manifest.csv`` as a DataFrame with ``audio`` and ``annotation`` (and
    ``instruments`` where present) made absolute. Raises :class:`UserError` naming the file
    when it or a required column is missing."""
    import pandas as pd

    path = Path(root) / task / "manifest.csv"
    if not path.is_file():
        raise UserError(
            f"no manifest {path}: point --corpus at a corpus root holding <task>/manifest.csv "
            "(build one with `vit1d corpus --preset smoke --out DIR`)"
        )
    df = pd.read_csv(path)
    for col in ("audio", "split", "annotation"):
        if col not in df.columns:
            raise UserError(f"{path} has no column {col!r}; it is not a {task} manifest")
    for col in ("audio", "annotation", "instruments"):
        if col in df.columns:
            df[col] = [
                str((path.parent / p).resolve()) if isinstance(p, str) else p for p in df[col]
            ]
    return df


def select_clips(df: Any, split: str, max_clips: int, seed: int) -> Any:
    """The rows of ``split``; at most ``max_clips`` of them (0: all), drawn with ``seed`` and
    kept in manifest order."""
    rows = df[df["split"] == split]
    if max_clips and len(rows) > max_clips:
        rows = rows.sample(n=max_clips, random_state=seed).sort_index()
    return rows


def random_twin(model: Any, seed: int) -> Any:
    """The same architecture at random initialisation: ``torch.manual_seed(seed)`` then
    ``ViT1D(**model.config)``, in eval mode on the model's device."""
    import torch

    from vit1d.models.model import ViT1D

    torch.manual_seed(seed)
    twin = ViT1D(**model.config)
    return twin.to(next(model.parameters()).device).eval()


@dataclass
class Clip:
    """One clip: id, split, audio at 16 kHz, its log-mel ``(T, 128)`` and duration."""

    clip: str
    split: str
    y: np.ndarray
    mel: np.ndarray
    duration: float
    row: dict = field(default_factory=dict)


def load_clip(row: dict, logmel: Any) -> Clip:
    """Read a manifest row's audio (``vit1d.audio.frontend.load_audio``) and compute its log-mel."""
    import torch

    from vit1d.audio.frontend import SAMPLE_RATE, load_audio

    y = load_audio(row["audio"])
    with torch.no_grad():
        mel = logmel(torch.from_numpy(y).unsqueeze(0))[0].numpy()
    clip = str(row.get("render_id", Path(row["audio"]).stem))
    return Clip(clip, str(row["split"]), y, mel, len(y) / SAMPLE_RATE, dict(row))


def _progress(items: Sequence, desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="clip", leave=False)


# ----------------------------------------------------------------------------------------
# Onsets (C3)
# ----------------------------------------------------------------------------------------


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
    times (mean of :data:`CHANCE_DRAWS` draws; the same for every threshold)."""
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
    import mir_eval
    import pandas as pd

    df = read_manifest(corpus, "onsets")
    deltas = tuple(att.DELTAS)
    rng = np.random.default_rng(seed)
    results: dict[str, list] = {}
    keys: list | None = None
    clip_ids: dict[str, list[str]] = {}
    for split in (tune_split, eval_split):
        rows = select_clips(df, split, max_clips, seed)
        for row in _progress(list(rows.to_dict("records")), f"onsets {split}", progress):
            clip = load_clip(row, logmel)
            ref = mir_eval.io.load_events(row["annotation"])
            k, s = clip_onset_scores(clip, models, ref, deltas, rng)
            if keys is None:
                keys = k
            elif k != keys:
                raise RuntimeError("onset curve keys differ between clips")
            results.setdefault(split, []).append(s)
            clip_ids.setdefault(split, []).append(clip.clip)
    if keys is None or not results.get(eval_split):
        raise UserError(
            f"no {eval_split!r} clips in {Path(corpus) / 'onsets' / 'manifest.csv'}; "
            "choose another --eval-split"
        )
    index = pd.DataFrame(keys, columns=["model", "method", "layer", "head"])
    # threshold choice on the tuning split: mean F per curve and delta
    if results.get(tune_split):
        tune = np.stack(results[tune_split])  # (clips, curves, deltas, 3)
        mean_f = tune[..., 0].mean(axis=0)
        best = mean_f.argmax(axis=1)
        f_valid = mean_f.max(axis=1)
        tuning = pd.concat(
            [
                index.assign(delta=d, f=mean_f[:, j], n_clips=len(tune))
                for j, d in enumerate(deltas)
            ],
            ignore_index=True,
        )
    else:
        best = np.full(len(keys), deltas.index(0.07) if 0.07 in deltas else 0)
        f_valid = np.full(len(keys), np.nan)
        tuning = index.assign(delta=np.nan, f=np.nan, n_clips=0)
    ev = np.stack(results[eval_split])  # (clips, curves, deltas, 3)
    chosen = ev[:, np.arange(len(keys)), best]  # (clips, curves, 3)
    per_clip = []
    for c, clip in enumerate(clip_ids[eval_split]):
        per_clip.append(
            index.assign(
                split=eval_split,
                clip=clip,
                delta=[deltas[b] for b in best],
                f=chosen[c, :, 0],
                precision=chosen[c, :, 1],
                recall=chosen[c, :, 2],
            )
        )
    per_clip_df = pd.concat(per_clip, ignore_index=True)
    summary = summarise_f(per_clip_df, ["model", "method", "layer", "head"])
    # the validation F at the chosen threshold: what picks the headline curve, so that the
    # test F reported for it is not selected on the test clips themselves
    summary = summary.merge(
        index.assign(f_valid=f_valid), on=["model", "method", "layer", "head"], how="left"
    )
    return {"per_clip": per_clip_df, "summary": summary, "tuning": tuning}


# ----------------------------------------------------------------------------------------
# Self-similarity (C4) and chord-change novelty
# ----------------------------------------------------------------------------------------


def clip_references(clip: Clip) -> dict[str, np.ndarray]:
    """Frame-level references of a clip (``(T, ...)`` each): the audio features of
    :func:`vit1d.analysis.ssm.reference_features`, the exact chord label of each frame, the instrument
    label where the manifest names a time-resolved file (``instruments`` column), and the
    frame index (``position``)."""
    import mir_eval

    from vit1d.audio.frontend import frame_times

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


def standardised_input(mel: np.ndarray, model: Any) -> np.ndarray:
    """The log-mel as the model sees it, ``(mel - input_mean) / input_std``."""
    return (mel - float(model.input_mean)) / float(model.input_std)


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
        for dim in dims:
            ref = sm.reference_ssm(dim, refs[dim][start:stop])
            for name, st in stacks.items():
                scores, chance = sm.rank_scores(st, ref, rng, n_shuffles)
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
    :data:`CHANCE_DRAWS` random boundary sets of the labels' size. Returns DataFrames
    ``per_window``, ``summary``, ``novelty`` (per clip) and ``novelty_summary``, and
    ``examples``: :func:`example_ssms` of the first ``n_examples`` evaluation clips."""
    import mir_eval
    import pandas as pd

    df = read_manifest(corpus, "chords")
    rng = np.random.default_rng(seed)
    deltas = tuple(att.DELTAS)
    rows: list[dict] = []
    nov_scores: dict[str, list[tuple[str, dict]]] = {}
    examples: dict[str, dict[str, np.ndarray]] = {}
    for split in (tune_split, eval_split):
        sel = select_clips(df, split, max_clips, seed)
        for row in _progress(list(sel.to_dict("records")), f"ssm {split}", progress):
            clip = load_clip(row, logmel)
            r, novelty = clip_ssm_scores(clip, models, rng, n_shuffles, split == eval_split)
            if split == eval_split and len(examples) < n_examples:
                examples[clip.clip] = example_ssms(clip, models)
            if split == eval_split:
                rows.extend(r)
            ints, labs = mir_eval.io.load_labeled_intervals(row["annotation"])
            changes = sm.change_points(ints, labs)
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
            nov_scores.setdefault(split, []).append((clip.clip, scores))
    if not nov_scores.get(eval_split):
        raise UserError(
            f"no {eval_split!r} clips in {Path(corpus) / 'chords' / 'manifest.csv'}; "
            "choose another --eval-split"
        )
    per_window = pd.DataFrame(rows)
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
    novelty = pd.DataFrame(nov_rows)
    novelty_summary = summarise_f(novelty, ["model", "layer"])
    return {
        "per_window": per_window,
        "summary": summary,
        "novelty": novelty,
        "novelty_summary": novelty_summary,
        "examples": examples,
    }


# ----------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------


def provenance(
    checkpoint: Path, corpus: Path, seed: int, device: Any, args: dict, model: Any
) -> dict:
    """What produced a results folder: checkpoint (path, the loaded ``model``'s weights
    fingerprint, :func:`vit1d.core.provenance.weights_fingerprint`, and its config.json),
    corpus (root, manifest SHA-256s, its build seed where recorded), seed, hardware,
    library versions, arguments."""
    from vit1d.models.checkpoint import read_config
    from vit1d.models.device import hardware_summary

    manifests = {}
    for task in ("onsets", "chords"):
        p = corpus / task / "manifest.csv"
        if p.is_file():
            manifests[task] = file_sha256(p)
    corpus_info: dict[str, Any] = {"root": str(corpus), "manifests_sha256": manifests}
    for name in ("corpus.json", "build.json"):
        p = corpus / name
        if p.is_file():
            try:
                info = json.loads(p.read_text())
                cfg = info.get("config", info)
                corpus_info.setdefault("seed", cfg.get("seed"))
            except (json.JSONDecodeError, AttributeError):
                pass
    return {
        "checkpoint": {
            "path": str(checkpoint),
            "weights_sha256": weights_fingerprint(model),
            "config": read_config(checkpoint),
        },
        "corpus": corpus_info,
        "seed": seed,
        "random_init": f"torch.manual_seed({seed}); ViT1D(**config)",
        "hardware": hardware_summary(device),
        "versions": library_versions(),
        "args": args,
    }


def write_csv(df: Any, path: Path, run_id: str) -> Path:
    """Write a DataFrame as CSV atomically, with a ``run_id`` column first."""

    out = df.copy()
    out.insert(0, "run_id", run_id)
    atomic.write_text(path, out.to_csv(index=False, float_format="%.6g"))
    return path


def run_analyses(
    checkpoint: str | Path,
    corpus: str | Path,
    out: str | Path,
    seed: int = 0,
    max_clips: int = 0,
    tune_split: str = "valid",
    eval_split: str = "test",
    n_shuffles: int = 20,
    parts: Sequence[str] = ("onsets", "ssm"),
    device: str = "cpu",
    figures: Callable[[dict[str, Any], Path], dict[str, Path]] | None = None,
    progress: bool = True,
    boundary_window: float = sm.BOUNDARY_WINDOW,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Run the analyses of ``parts`` for ``checkpoint`` and its random-init twin over the
    corpus at ``corpus``; write the CSVs, ``provenance.json`` and, when ``figures`` is given
    (a writer such as :func:`vit1d.viz.figure_files.write_figures`), its figures into ``out``.
    Returns ``{name: path}`` of what was written."""
    import torch

    from vit1d.audio.frontend import LogMel
    from vit1d.models.checkpoint import load_pretrained
    from vit1d.models.device import select_device

    checkpoint, corpus, out = Path(checkpoint), Path(corpus), Path(out)
    if not corpus.is_dir():
        raise UserError(f"corpus folder {corpus} does not exist; pass --corpus ROOT")
    dev = select_device(device)
    model = load_pretrained(checkpoint, device=dev, head=False)
    models = {"trained": model, "random": random_twin(model, seed)}
    logmel = LogMel()
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(
        checkpoint,
        corpus,
        seed,
        dev,
        {
            "max_clips": max_clips,
            "tune_split": tune_split,
            "eval_split": eval_split,
            "n_shuffles": n_shuffles,
            "boundary_window": boundary_window,
            "parts": list(parts),
        },
        model,
    )
    run_id = hashlib.sha256(json.dumps(prov, sort_keys=True, default=str).encode()).hexdigest()[:12]
    prov["run_id"] = run_id
    prov["started"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    prov["seconds"] = {}
    # inference only; a context, not a global switch, so callers keep their grad mode
    with torch.no_grad():
        written: dict[str, Path] = {}
        results: dict[str, Any] = {}
        if "onsets" in parts:
            t0 = time.perf_counter()
            res = onset_analysis(
                corpus, models, logmel, tune_split, eval_split, max_clips, seed, progress
            )
            prov["seconds"]["onsets"] = round(time.perf_counter() - t0, 1)
            results["onsets"] = res
            written["onsets"] = write_csv(res["per_clip"], out / "onsets.csv", run_id)
            written["onsets_summary"] = write_csv(
                res["summary"], out / "onsets_summary.csv", run_id
            )
            written["onsets_tuning"] = write_csv(res["tuning"], out / "onsets_tuning.csv", run_id)
            s = res["summary"]
            att_rows = s[s["model"] == "trained"]
            if len(att_rows):
                metric = "f_valid" if att_rows["f_valid"].notna().any() else "f"
                method, layer, head = att.best_curve(att_rows, metric)
                prov["best_onset_curve"] = {"method": method, "layer": layer, "head": head}
            log(_onset_report(s))
        if "ssm" in parts:
            t0 = time.perf_counter()
            res = ssm_analysis(
                corpus,
                models,
                logmel,
                tune_split,
                eval_split,
                max_clips,
                seed,
                n_shuffles,
                progress,
                boundary_window,
            )
            prov["seconds"]["ssm"] = round(time.perf_counter() - t0, 1)
            results["ssm"] = res
            written["ssm"] = write_csv(res["per_window"], out / "ssm.csv", run_id)
            written["ssm_summary"] = write_csv(res["summary"], out / "ssm_summary.csv", run_id)
            written["novelty"] = write_csv(res["novelty"], out / "novelty.csv", run_id)
            written["novelty_summary"] = write_csv(
                res["novelty_summary"], out / "novelty_summary.csv", run_id
            )
            log(_ssm_report(res["summary"], res["novelty_summary"]))
        if figures:
            written.update(figures(results, out))
        prov["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        prov["files"] = sorted(p.name for p in written.values())
        atomic.write_text(out / "provenance.json", json.dumps(prov, indent=2, default=str))
        written["provenance"] = out / "provenance.json"
        return written


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


def read_results(folder: str | Path) -> dict[str, Any]:
    """The CSVs of an analyses folder as DataFrames (by file stem) and ``provenance`` (dict).
    Raises :class:`UserError` when the folder holds no results."""
    import pandas as pd

    folder = Path(folder)
    prov = folder / "provenance.json"
    if not prov.is_file():
        raise UserError(
            f"{folder} holds no analyses results (no provenance.json); run "
            "`vit1d analyses --checkpoint DIR --corpus ROOT --out DIR` first"
        )
    out: dict[str, Any] = {"provenance": json.loads(prov.read_text())}
    for path in sorted(folder.glob("*.csv")):
        out[path.stem] = pd.read_csv(path, dtype={"head": str})
    return out


def _onset_report(summary: Any) -> str:
    """A few lines on the onset results: spectral flux, and each model's best curve."""
    lines = ["onset F-measure (50 ms), mean over test clips:"]
    flux = summary[summary["model"] == "spectral_flux"]
    if len(flux):
        lines.append(f"  spectral flux: F = {flux['f'].iloc[0]:.3f}")
    chance = summary[summary["model"] == "chance"]
    if len(chance):
        lines.append(f"  chance (random times, true count): F = {chance['f'].iloc[0]:.3f}")
    for name in ("trained", "random"):
        s = summary[summary["model"] == name]
        if not len(s):
            continue
        for method in att.CURVES:
            m = s[s["method"] == method]
            if len(m):
                b = m.sort_values("f", ascending=False).iloc[0]
                lines.append(
                    f"  {name:7s} {method:12s} best layer {int(b['layer']):2d} head "
                    f"{b['head']:>7s}: F = {b['f']:.3f}"
                )
    return "\n".join(lines)


def _ssm_report(summary: Any, novelty: Any) -> str:
    """A few lines on the SSM results: each dimension's best layer per model."""
    lines = ["SSM Spearman score - chance (best layer), mean over test windows:"]
    for dim in summary["dimension"].unique():
        parts = []
        for name in ("trained", "random", "logmel"):
            s = summary[(summary["model"] == name) & (summary["dimension"] == dim)]
            if len(s):
                b = s.sort_values("above_chance", ascending=False).iloc[0]
                parts.append(f"{name} L{int(b['layer'])} {b['above_chance']:+.3f}")
        lines.append(f"  {dim:10s} " + "; ".join(parts))
    lines.append("chord-change F, best layer:")
    for name in novelty["model"].unique():
        s = novelty[novelty["model"] == name].sort_values("f", ascending=False).iloc[0]
        lines.append(f"  {name:7s} layer {int(s['layer']):2d}: F = {s['f']:.3f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------
