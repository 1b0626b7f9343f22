"""Probe results kept beside fixed models, reused by every build whose inputs are the same.

Three of the book's models do not depend on the build's own training: the committed reference
checkpoint (``checkpoints/reference``), the committed equal-compute masked foil
(``checkpoints/reference/foil``, which a preset may take instead of training its own) and the
random initialisation (its weights are a function of the architecture and the init seed).
The default corpus's tasks are rendered from a seed, so extracting and fitting them in every
book build is work done twice (docs/design.md, "No work done twice"): about 13 of the default
book's minutes on a 2-core CPU. ``vit1d reference --probe-only`` probes them once, with the
default pipeline preset's probe settings, and writes the results beside them (``results/``:
``probes.csv``, ``probes_summary.csv``, ``probes_runs.json``, ``probe_items/``) with the key of
everything they depend on (``reuse.json``, :func:`reuse_key`):

* the weights (:func:`weights_id`: SHA-256 of a checkpoint's ``model.safetensors``; the
  fingerprint of each init seed's network for a random initialisation);
* the corpus's name and each task's manifest (SHA-256: its files, splits and labels);
* the probe seeds and the whole :class:`~vit1d.probing.linear.ProbeConfig` (solvers, caps);
* the code that reads, extracts and fits (:func:`code_fingerprint`).

A chapter whose key equals the committed one merges those rows into its own results
(:func:`merge_committed`) instead of probing; any difference and it probes the model
itself, as before, and says why (:func:`mismatch`). The features' precision is not in the key:
results probed in bf16 on one CPU are reused on a CPU that would extract in float32 (the
``precision`` column says which), a difference far inside the probes' intervals.

Per-item scores are kept only at the views the claims ledger can pair (:func:`claim_views`):
tagging's per-clip predictions at all 39 views would take 8 MB.

Used by :mod:`vit1d.studies.reference` (writing) and :mod:`vit1d.book.chapters` (reading).
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from vit1d.core import atomic
from vit1d.core.provenance import file_sha256, weights_fingerprint
from vit1d.features.sources import ModelSpec, random_model
from vit1d.probing.compare import best_row
from vit1d.probing.items import ITEMS_DIR, read_items, write_items
from vit1d.probing.linear import ProbeConfig
from vit1d.probing.results import (
    COLUMNS,
    PROBES_CSV,
    RUNS_JSON,
    SUMMARY_COLUMNS,
    SUMMARY_CSV,
    read_results,
    record_run,
    results_lock,
    upsert_csv,
)
from vit1d.probing.tasks import GLOBAL_TASKS, Task

KEY_FILE = "reuse.json"
RESULTS_DIR = "results"
#: The library packages a probe result depends on: decoding and log-mel, the model, feature
#: extraction and pooling, the probes and their metrics.
CODE_PACKAGES = ("audio", "models", "features", "probing")


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return tree


def code_fingerprint(packages: Sequence[str] = CODE_PACKAGES, src: Path | None = None) -> str:
    """SHA-256 over the syntax trees of the modules of ``<src>/<package>`` for ``packages``
    (``src``: the installed ``vit1d``), docstrings dropped (comments are not in the tree):
    editing prose keeps committed results, editing code does not."""
    src = src or Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for package in packages:
        for path in sorted((src / package).rglob("*.py")):
            tree = _without_docstrings(ast.parse(path.read_text(encoding="utf-8")))
            h.update(f"{path.relative_to(src)}\n{ast.dump(tree)}\n".encode())
    return h.hexdigest()


def weights_id(group: Sequence[ModelSpec]) -> str:
    """The weights of a source group as the key names them: the SHA-256 of a checkpoint's
    ``model.safetensors``; for a random initialisation, the backbone's fingerprint
    (:func:`~vit1d.core.provenance.weights_fingerprint`) of each init seed's network, joined
    by ``+``, so another initialisation code or random generator shows."""
    kinds = {spec.kind for spec in group}
    if kinds == {"checkpoint"} and len(group) == 1:
        return file_sha256(Path(group[0].path) / "model.safetensors")
    if kinds == {"random"}:
        return "+".join(weights_fingerprint(random_model(s.config or {}, s.seed)) for s in group)
    raise ValueError(f"no committed results for sources of kind {', '.join(sorted(kinds))}")


def reuse_key(
    weights: str,
    tasks: Sequence[Task],
    corpus: str,
    seeds: Sequence[int],
    config: ProbeConfig,
) -> dict[str, Any]:
    """What probe results of the model with ``weights`` (:func:`weights_id`) on ``tasks``
    depend on (module docstring)."""
    return {
        "weights_sha256": weights,
        "corpus": corpus,
        "tasks": {t.name: file_sha256(t.manifest) for t in tasks},
        "seeds": [int(s) for s in seeds],
        "config": json.loads(json.dumps(asdict(config))),  # tuples as lists, as read back
        "code": code_fingerprint(),
    }


def write_key(results: str | Path, key: dict[str, Any]) -> Path:
    """Write ``reuse.json`` into a results folder (atomically)."""
    path = Path(results) / KEY_FILE
    atomic.write_json(path, key, indent=2, sort_keys=True)
    return path


def mismatch(results: str | Path, key: dict[str, Any]) -> str | None:
    """``None`` when the results at ``results`` were computed from the inputs of ``key`` (every
    task of ``key`` among them); else why not, in words."""
    path = Path(results) / KEY_FILE
    if not path.is_file():
        return f"no committed probe results at {Path(results)}"
    try:
        have = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return f"{path} cannot be read ({exc})"
    for field, what in (
        ("weights_sha256", "the weights differ"),
        ("corpus", "another corpus"),
        ("seeds", "other probe seeds"),
        ("config", "other probe settings"),
        ("code", "the extraction or probing code changed"),
    ):
        if have.get(field) != key[field]:
            return f"the committed probe results do not apply: {what}"
    for task, sha in key["tasks"].items():
        if have.get("tasks", {}).get(task) != sha:
            return f"the committed probe results do not apply: {task}'s manifest differs"
    return None


def claim_views(summary: pd.DataFrame) -> set[tuple[str, int, str]]:
    """The (task, layer, pooling) views of a model's results that the claims ledger pairs:
    at each layer, the pooling chosen on validation (the layer curves, and the best view among
    them); from layer 1 on, the best ``avg`` and the best ``cls`` view (pooling compared)."""
    views = set()
    for task in sorted(set(summary["task"])):
        rows = summary[summary["task"] == task]
        picks = [best_row(rows[rows["layer"].astype(int) == k], task) for k in set(rows["layer"])]
        if task in GLOBAL_TASKS:
            picks += [best_row(rows, task, [p], min_layer=1) for p in ("avg", "cls")]
        views |= {(task, int(r["layer"]), str(r["pooling"])) for r in picks if r is not None}
    return views


def keep_claim_items(results: str | Path, model: str) -> int:
    """Drop ``model``'s per-item rows outside :func:`claim_views` from ``results``; returns the
    rows kept."""
    _, summary = read_results(results)
    mine = summary[summary["model"] == model]
    keep = claim_views(mine)
    folder = Path(results) / ITEMS_DIR
    kept = 0
    with results_lock(results):
        for path in sorted(folder.glob("*.parquet")):
            items = pd.read_parquet(path)
            if items.empty or items["model"].iloc[0] != model:
                continue
            views = zip(items["task"], items["layer"].astype(int), items["pooling"], strict=True)
            part = items[[v in keep for v in views]]
            with atomic.replacing(path) as tmp:
                part.to_parquet(tmp, index=False)
            kept += len(part)
    return kept


def merge_committed(
    results: str | Path, into: str | Path, model: str, checkpoint: str, tasks: Sequence[str]
) -> list[str]:
    """Merge ``model``'s rows for ``tasks`` from the committed ``results`` folder into the
    results folder ``into``, their ``checkpoint`` column set to ``checkpoint`` (the name the
    build gives the folder); the runs' provenance is copied with ``reused_from``. Returns the
    run ids merged."""
    probes, summary = read_results(results)
    pick = {
        name: df[(df["model"] == model) & df["task"].isin(list(tasks))].assign(
            checkpoint=checkpoint
        )
        for name, df in (("probes", probes), ("summary", summary))
    }
    if pick["summary"].empty:
        raise ValueError(f"{results} holds no {model} rows for {', '.join(tasks)}")
    items = read_items(results, model=model)
    items = items[items["task"].isin(list(tasks))].assign(checkpoint=checkpoint)
    runs = json.loads((Path(results) / RUNS_JSON).read_text())
    run_ids = sorted(set(pick["summary"]["run_id"].astype(str)))
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    with results_lock(into):  # as one probe run: its rows, items and provenance together
        upsert_csv(into / PROBES_CSV, pick["probes"].to_dict("records"), COLUMNS)
        upsert_csv(into / SUMMARY_CSV, pick["summary"].to_dict("records"), SUMMARY_COLUMNS)
        write_items(into, [items])
        for run_id in run_ids:
            record_run(into, run_id, {**runs.get(run_id, {}), "reused_from": str(results)})
    return run_ids
