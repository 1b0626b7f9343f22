"""What the claims read: the results files the book's chapters wrote (probes, per-item scores,
analyses, pretraining runs), gathered into :class:`Inputs`, and the probe comparisons a claim
rests on (a model against a baseline, each at the view chosen on validation)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vit1d.ledger.verdicts import Comparison, outcome
from vit1d.probing.compare import (
    final_rows,
    normal_diff,
    probe_difference,
)
from vit1d.probing.items import ItemStore


@dataclass
class Inputs:
    """What the ledger reads (any part may be missing: ``None``)."""

    probes: Any = None  # probes_summary.csv
    onsets: Any = None  # analyses onsets.csv
    onsets_summary: Any = None
    ssm: Any = None  # analyses ssm.csv
    novelty: Any = None  # analyses novelty.csv
    runs: dict[str, Any] | None = None  # pretrain_runs.json
    items: ItemStore | None = None  # probe_items/: per-item test scores for paired intervals
    sources: dict[str, str] = field(default_factory=dict)


def _read_csv(path: Path) -> Any:
    if path.is_file() and path.stat().st_size > 0:
        return pd.read_csv(path, dtype={"head": str, "checkpoint": str, "run_id": str})
    return None


#: Folders under the results folder searched for the analyses CSVs, in order: one
#: ``vit1d analyses`` run with both parts, or the attention and self-similarity chapters'
#: runs of one part each.
ANALYSES_DIRS = ("analyses", "attention", "ssm")


def load_inputs(results_dir: str | Path, analyses_dir: str | Path | None = None) -> Inputs:
    """Read the ledger's inputs from a results folder; each analyses CSV is taken from the
    first of ``analyses_dir`` (when given) and :data:`ANALYSES_DIRS` that holds it."""
    results_dir = Path(results_dir)
    folders = ([Path(analyses_dir)] if analyses_dir else []) + [
        results_dir / d for d in ANALYSES_DIRS
    ]

    def find(name: str) -> Path:
        for folder in folders:
            if (folder / name).is_file():
                return folder / name
        return folders[0] / name

    files = {
        "probes": results_dir / "probes_summary.csv",
        "onsets": find("onsets.csv"),
        "onsets_summary": find("onsets_summary.csv"),
        "ssm": find("ssm.csv"),
        "novelty": find("novelty.csv"),
    }
    inputs = Inputs(**{k: _read_csv(p) for k, p in files.items()})
    runs_path = results_dir / "pretrain_runs.json"
    if runs_path.is_file():
        inputs.runs = json.loads(runs_path.read_text())
    files["runs"] = runs_path
    store = ItemStore(results_dir)
    if store.available():
        inputs.items = store
        files["items"] = store.folder
    inputs.sources = {k: str(p) for k, p in files.items() if p.exists()}
    return inputs


def _view_text(label: str, row: Any) -> str:
    """``label (layer N pooling)``, with ``, test-chosen`` when no valid rows existed."""
    where = f"layer {int(row['layer'])} {row['pooling']}"
    if row.get("chosen_on", "valid") == "test":
        where += ", chosen on test"
    return f"{label} ({where})"


def probe_comparison(
    claim: str,
    name: str,
    a: Any,
    b: Any,
    a_label: str,
    b_label: str,
    items: ItemStore | None,
    threshold: float = 0.0,
) -> Comparison:
    """``a - b`` of two summary rows: a paired bootstrap over the test items both were scored
    on (:func:`vit1d.probing.compare.probe_difference`), or, without per-item results, the normal
    approximation from the two summary intervals."""
    res = probe_difference(a, b, items)
    if res is not None and np.isfinite(res.diff):
        d, lo, hi, n = res.diff, res.ci_low, res.ci_high, res.n_items
        unit = str(a.get("unit", "item"))
        method = f"paired bootstrap over {n} test {unit}s and the seeds"
    else:
        (d, lo, hi), n = normal_diff(a, b), int(a.get("n", 0) or 0)
        method = "normal approximation from the summary CIs (no per-item results)"
    c = Comparison(
        claim,
        name,
        _view_text(a_label, a),
        _view_text(b_label, b),
        float(a["mean"]),
        float(b["mean"]),
        float(d),
        float(lo),
        float(hi),
        method,
        n_items=n,
    )
    c.outcome = outcome(c.ci_low, c.ci_high, threshold)
    return c


def final_both(summary: Any, model: str) -> Any:
    """The valid and test rows of ``model``'s final checkpoint (what :func:`best_row` needs)."""
    return final_rows(summary, model, split=None)
