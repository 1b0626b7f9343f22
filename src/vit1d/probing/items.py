"""Per-item probe results: every probe's test scores item by item, for paired comparisons.

Two models probed on one corpus are scored on the same test items, so a difference between
them is judged by resampling those items for both sides at once (:mod:`vit1d.probing.paired`). That
needs the scores per item, which ``probes.csv`` (one value per probe) does not hold.

**The table** ``<results>/probe_items/`` is one tidy table stored as a folder of Parquet files,
one per (model, checkpoint, corpus, task); ``pandas.read_parquet("<results>/probe_items")``
reads it whole. One row per (model, checkpoint, corpus, task, layer, pooling, seed, split,
metric, item) with:

* ``item``: the audio file, relative to the corpus root (the same for every model);
* ``weight``: the item's weight in the metric (chords: the track's duration; else 1);
* ``value``: the item's score (accuracy 0/1, MIREX key score, Acc1/Acc2, a track's majmin or
  beat F-measure).

Tagging's macro ROC-AUC and AP do not decompose over clips, so tagging keeps the per-clip
predictions instead: ``metric`` is ``score``, one row per (clip, ``tag``) with the probe's
logit in ``value`` and the label (0/1) in ``target``. Only the test split is kept (layers are
chosen on the validation split's summary rows).

A run replaces the rows of the (model, checkpoint, corpus, task, layer, pooling) it computed,
as ``probes.csv`` does; each file is written atomically, under the results folder's lock
(:func:`vit1d.probing.results.results_lock`). Used by :mod:`vit1d.probing.probe` (writing)
and :mod:`vit1d.ledger.claims` (reading, through :class:`ItemStore`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# rows a new run replaces: the same key as probes.csv
from vit1d.core import atomic
from vit1d.probing.results import REPLACE_KEY, results_lock

ITEMS_DIR = "probe_items"
ITEM_COLUMNS = [
    "model",
    "checkpoint",
    "corpus",
    "task",
    "layer",
    "pooling",
    "seed",
    "split",
    "metric",
    "item",
    "weight",
    "value",
    "tag",
    "target",
]
#: The metric name of tagging's per-clip predictions.
TAG_SCORE = "score"


def _require_parquet() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:  # pragma: no cover - pyarrow is a core dependency
        raise ImportError(
            "per-item probe results are stored as Parquet: pip install pyarrow"
        ) from exc


def scalar_items(
    probe: dict[str, Any],
    items: Sequence[str],
    values: np.ndarray,
    weights: np.ndarray | None,
) -> pd.DataFrame:
    """Rows of one probe's per-item scores; ``probe`` holds task, layer, pooling, seed,
    split and metric."""
    n = len(items)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    df = pd.DataFrame(
        {
            "item": np.asarray(items, dtype=object),
            "weight": w,
            "value": np.asarray(values, dtype=float),
            "tag": "",
            "target": np.nan,
        }
    )
    return df.assign(**probe)


def tagging_items(
    probe: dict[str, Any],
    items: Sequence[str],
    tags: Sequence[str],
    logits: np.ndarray,
    targets: np.ndarray,
) -> pd.DataFrame:
    """Rows of one tagging probe's predictions: ``logits`` and ``targets`` ``(N, K)``."""
    n, k = np.shape(logits)
    df = pd.DataFrame(
        {
            "item": np.repeat(np.asarray(items, dtype=object), k),
            "weight": 1.0,
            "value": np.asarray(logits, dtype=np.float32).ravel(),
            "tag": np.tile(np.asarray(tags, dtype=object), n),
            "target": np.asarray(targets, dtype=np.float32).ravel(),
        }
    )
    return df.assign(**{**probe, "metric": TAG_SCORE})


def _file_name(model: str, checkpoint: str, corpus: str, task: str) -> str:
    digest = hashlib.sha256(f"{model}\n{checkpoint}\n{corpus}".encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in model)[:40]
    return f"{safe}--{task}--{digest}.parquet"


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    df = df.reindex(columns=ITEM_COLUMNS)
    for col in ("model", "checkpoint", "corpus", "task", "pooling", "split", "metric", "tag"):
        df[col] = df[col].fillna("").astype(str)
    df["item"] = df["item"].astype(str)
    for col in ("layer", "seed"):
        df[col] = df[col].astype(np.int64)
    for col in ("weight", "value", "target"):
        df[col] = df[col].astype(np.float32 if col != "weight" else np.float64)
    return df


def write_items(results_dir: str | Path, frames: Sequence[pd.DataFrame]) -> list[Path]:
    """Merge per-item rows into ``<results>/probe_items/``: per (model, checkpoint, corpus,
    task) file, rows with the key of a new row are dropped and the new rows appended; the
    file is replaced atomically. Returns the files written."""
    _require_parquet()
    frames = [f for f in frames if len(f)]
    if not frames:
        return []
    new = _normalise(pd.concat(frames, ignore_index=True))
    folder = Path(results_dir) / ITEMS_DIR
    written = []
    with results_lock(results_dir):  # the lock of probes.csv: one writer at a time
        folder.mkdir(parents=True, exist_ok=True)
        for (model, ckpt, corpus, task), part in new.groupby(
            ["model", "checkpoint", "corpus", "task"], sort=False
        ):
            path = folder / _file_name(model, ckpt, corpus, task)
            if path.is_file():
                old = pd.read_parquet(path)
                keys = set(map(tuple, part[REPLACE_KEY].astype(str).drop_duplicates().to_numpy()))
                keep = [tuple(r) not in keys for r in old[REPLACE_KEY].astype(str).to_numpy()]
                part = pd.concat([_normalise(old.loc[keep]), part], ignore_index=True)
            with atomic.replacing(path) as tmp:
                part.to_parquet(tmp, index=False)
            written.append(path)
    return written


def read_items(results_dir: str | Path, **where: Any) -> pd.DataFrame:
    """The per-item table (optionally only rows whose columns equal ``where``'s values);
    an empty frame when the results folder has none."""
    folder = Path(results_dir) / ITEMS_DIR
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return pd.DataFrame(columns=ITEM_COLUMNS)
    _require_parquet()
    filters = [(k, "==", v) for k, v in where.items()] or None
    parts = [pd.read_parquet(f, filters=filters) for f in files]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=ITEM_COLUMNS)


class ItemStore:
    """Reads per-item matrices of probes from a results folder, one file at a time, cached.

    A probe is named by its summary row (``model``, ``checkpoint``, ``corpus``, ``task``,
    ``layer``, ``pooling``, ``metric``); :meth:`scores` gives the ``(seeds, items)`` matrix
    of its test scores, :meth:`tagging` the per-seed prediction matrices.
    """

    def __init__(self, results_dir: str | Path) -> None:
        self.folder = Path(results_dir) / ITEMS_DIR
        self._files: dict[str, pd.DataFrame] = {}

    def available(self) -> bool:
        return self.folder.is_dir() and any(self.folder.glob("*.parquet"))

    def _frame(self, row: Any) -> pd.DataFrame | None:
        name = _file_name(
            str(row["model"]), str(row["checkpoint"]), str(row["corpus"]), str(row["task"])
        )
        if name not in self._files:
            path = self.folder / name
            self._files[name] = pd.read_parquet(path) if path.is_file() else None
        return self._files[name]

    def _probe(self, row: Any, metric: str, split: str) -> pd.DataFrame | None:
        df = self._frame(row)
        if df is None:
            return None
        sel = df[
            (df["layer"] == int(row["layer"]))
            & (df["pooling"] == str(row["pooling"]))
            & (df["metric"] == metric)
            & (df["split"] == split)
        ]
        return sel if len(sel) else None

    def scores(
        self, row: Any, split: str = "test"
    ) -> tuple[np.ndarray, np.ndarray, list, list] | None:
        """``(matrix (S, N), weights (N,), items, seeds)`` of the probe of a summary row
        (its ``metric``); ``None`` when the per-item results are missing."""
        sel = self._probe(row, str(row["metric"]), split)
        if sel is None:
            return None
        wide = sel.pivot_table(index="seed", columns="item", values="value", aggfunc="first")
        weights = sel.drop_duplicates("item").set_index("item")["weight"]
        items = list(wide.columns)
        return wide.to_numpy(float), weights.loc[items].to_numpy(float), items, list(wide.index)

    def tagging(self, row: Any, split: str = "test") -> tuple[np.ndarray, list, list, list] | None:
        """``(y_true (N, K), [scores (N, K) per seed], items, seeds)`` of a tagging probe;
        ``None`` when missing."""
        sel = self._probe(row, TAG_SCORE, split)
        if sel is None:
            return None
        items = sorted(sel["item"].unique())
        tags = sorted(sel["tag"].unique())
        y = (
            sel.drop_duplicates(["item", "tag"])
            .pivot(index="item", columns="tag", values="target")
            .loc[items, tags]
            .to_numpy(float)
        )
        seeds, mats = [], []
        for seed, part in sel.groupby("seed"):
            m = part.pivot(index="item", columns="tag", values="value").loc[items, tags]
            seeds.append(int(seed))
            mats.append(m.to_numpy(float))
        return y, mats, items, seeds
