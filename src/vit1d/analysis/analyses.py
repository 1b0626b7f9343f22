"""The analyses runner: attention onsets (C3) and layer-wise self-similarity (C4) over a corpus.

``vit1d analyses --checkpoint DIR --corpus ROOT --out DIR`` runs a checkpoint and its
random-init twin (same config, ``torch.manual_seed(seed)``) over the corpus's task
manifests (docs/design.md, "Public API") and writes tidy CSVs:

* ``onsets.csv``: per test clip, model (``trained``, ``random``, ``spectral_flux``, and
  ``chance``: as many onsets as labelled, at random times), onset
  curve (:data:`vit1d.analysis.attention.CURVES`), layer (1..L), head (``0``.., ``mean``,
  ``rollout``): F, precision, recall of ``mir_eval.onset.f_measure`` (50 ms) against the
  ``onsets`` manifest's exact labels. The peak threshold of each (model, curve, layer, head)
  is chosen on the validation clips (``onsets_tuning.csv``), so every curve, spectral flux
  included, gets the same tuning budget (:mod:`vit1d.analysis.onsets`);
* ``onsets_summary.csv``: the mean over test clips of each row group;
* ``ssm.csv``: per window of each ``chords`` clip, model (``trained``, ``random``,
  ``logmel``: the model's standardised input), layer (0 = embeddings .. L), reference
  dimension (:data:`vit1d.analysis.ssm.DIMENSIONS`): Spearman score and its time-shift chance
  level (:mod:`vit1d.analysis.ssm_scores`);
* ``ssm_summary.csv``: means over test windows, and ``score - chance``;
* ``novelty.csv`` / ``novelty_summary.csv``: chord-change detection from each layer's SSM
  novelty (and from chroma novelty, and ``chance``: as many boundaries as labelled, at random
  times) with ``mir_eval.segment.detection`` (0.5 s), peak threshold chosen on the
  validation clips; with ``--figures``, PNG heatmaps and example SSM panels;
* ``provenance.json``: checkpoint (path, SHA-256 of the weights, config), corpus (root,
  manifest hashes), seed, thresholds chosen, clip counts, hardware and library versions,
  timings. Every CSV has a ``run_id`` column naming it.

The clips come from :mod:`vit1d.analysis.clips`. This module also reads a results folder
back (:func:`read_results`).

Used by: ``notebooks/06_attention.ipynb`` and ``notebooks/07_self_similarity.ipynb`` (they
read the CSVs), the book pipeline.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vit1d.analysis import attention as att
from vit1d.analysis import ssm as sm
from vit1d.analysis.clips import random_twin
from vit1d.analysis.onsets import onset_analysis
from vit1d.analysis.ssm_scores import ssm_analysis
from vit1d.audio.frontend import LogMel
from vit1d.core import atomic
from vit1d.core.errors import UserError
from vit1d.core.provenance import file_sha256, library_versions, weights_fingerprint
from vit1d.models.checkpoint import load_pretrained, read_config
from vit1d.models.device import hardware_summary, select_device


def provenance(
    checkpoint: Path, corpus: Path, seed: int, device: Any, args: dict, model: Any
) -> dict:
    """What produced a results folder: checkpoint (path, the loaded ``model``'s weights
    fingerprint, :func:`vit1d.core.provenance.weights_fingerprint`, and its config.json),
    corpus (root, manifest SHA-256s, its build seed where recorded), seed, hardware,
    library versions, arguments."""
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


def _start_provenance(
    checkpoint: Path, corpus: Path, seed: int, device: Any, args: dict, model: Any
) -> tuple[dict, str]:
    """:func:`provenance` with its ``run_id`` (a hash of it, so identical inputs name
    identical runs), start time and an empty ``seconds``; returns it and the run id."""
    prov = provenance(checkpoint, corpus, seed, device, args, model)
    run_id = hashlib.sha256(json.dumps(prov, sort_keys=True, default=str).encode()).hexdigest()[:12]
    prov["run_id"] = run_id
    prov["started"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    prov["seconds"] = {}
    return prov, run_id


def _finish_provenance(prov: dict, written: dict[str, Path], out: Path) -> Path:
    """Record the finish time and the files written in ``prov`` and write it as
    ``out/provenance.json``; returns its path."""
    prov["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    prov["files"] = sorted(p.name for p in written.values())
    atomic.write_text(out / "provenance.json", json.dumps(prov, indent=2, default=str))
    return out / "provenance.json"


def _write_onsets(
    res: dict[str, Any], out: Path, run_id: str, prov: dict, log: Callable[[str], None]
) -> dict[str, Path]:
    """Write the onset tables of :func:`vit1d.analysis.onsets.onset_analysis`, record the
    trained model's best curve in ``prov`` and log a report; returns what was written."""
    written = {
        "onsets": write_csv(res["per_clip"], out / "onsets.csv", run_id),
        "onsets_summary": write_csv(res["summary"], out / "onsets_summary.csv", run_id),
        "onsets_tuning": write_csv(res["tuning"], out / "onsets_tuning.csv", run_id),
    }
    s = res["summary"]
    att_rows = s[s["model"] == "trained"]
    if len(att_rows):
        metric = "f_valid" if att_rows["f_valid"].notna().any() else "f"
        method, layer, head = att.best_curve(att_rows, metric)
        prov["best_onset_curve"] = {"method": method, "layer": layer, "head": head}
    log(_onset_report(s))
    return written


def _write_ssm(
    res: dict[str, Any], out: Path, run_id: str, log: Callable[[str], None]
) -> dict[str, Path]:
    """Write the tables of :func:`vit1d.analysis.ssm_scores.ssm_analysis` and log a report;
    returns what was written."""
    written = {
        "ssm": write_csv(res["per_window"], out / "ssm.csv", run_id),
        "ssm_summary": write_csv(res["summary"], out / "ssm_summary.csv", run_id),
        "novelty": write_csv(res["novelty"], out / "novelty.csv", run_id),
        "novelty_summary": write_csv(res["novelty_summary"], out / "novelty_summary.csv", run_id),
    }
    log(_ssm_report(res["summary"], res["novelty_summary"]))
    return written


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
    checkpoint, corpus, out = Path(checkpoint), Path(corpus), Path(out)
    if not corpus.is_dir():
        raise UserError(f"corpus folder {corpus} does not exist; pass --corpus ROOT")
    dev = select_device(device)
    model = load_pretrained(checkpoint, device=dev, head=False)
    models = {"trained": model, "random": random_twin(model, seed)}
    logmel = LogMel()
    out.mkdir(parents=True, exist_ok=True)
    args = {
        "max_clips": max_clips,
        "tune_split": tune_split,
        "eval_split": eval_split,
        "n_shuffles": n_shuffles,
        "boundary_window": boundary_window,
        "parts": list(parts),
    }
    prov, run_id = _start_provenance(checkpoint, corpus, seed, dev, args, model)
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
            written.update(_write_onsets(res, out, run_id, prov, log))
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
            written.update(_write_ssm(res, out, run_id, log))
        if figures:
            written.update(figures(results, out))
        written["provenance"] = _finish_provenance(prov, written, out)
        return written


def read_results(folder: str | Path) -> dict[str, Any]:
    """The CSVs of an analyses folder as DataFrames (by file stem) and ``provenance`` (dict).
    Raises :class:`UserError` when the folder holds no results."""
    folder = Path(folder)
    prov = folder / "provenance.json"
    if not prov.is_file():
        raise UserError(
            f"{folder} holds no analyses results (no provenance.json); run "
            "`vit1d analyses --checkpoint DIR --corpus ROOT --out DIR` first"
        )
    out: dict[str, Any] = {"provenance": json.loads(prov.read_text())}
    for path in sorted(folder.glob("*.csv")):
        # run_id: a hex digest, which pandas would read as a number when it has no letter
        out[path.stem] = pd.read_csv(path, dtype={"head": str, "run_id": str})
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
