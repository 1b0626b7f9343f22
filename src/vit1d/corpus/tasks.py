"""Task manifests: which renders serve which task, in the on-disk format the probes read.

Every task gets ``<root>/<task>/manifest.csv``. Columns, in order: ``audio`` (relative to
the manifest), ``split``, the task's label columns, then ``work``, ``render_id``,
``duration`` and the render settings (``collection``, ``style``, ``ensemble``,
``instrumentation``, ``programs``, ``banks``, ``octave_shifts``, ``render_bpm``,
``transpose``, ``start_q``, ``drums``, ``humanize_ms``, ``reverb_rt60``, ``reverb_wet``,
``highpass_hz``, ``lowpass_hz``, ``noise``, ``snr_db``), so a pretraining sampler can build
batches whose negatives share them.

===========  =================================================  ==========================
task         rows                                               labels
===========  =================================================  ==========================
pretrain     pretraining renders (train and valid works only)   none
tagging      every music render                                 ``tags`` (``;``-joined)
key          music renders of works with a confirmed key        ``key`` (``C major``)
tempo        music renders with a constant beat, >= min_beats   ``bpm``
chords       music renders of works with >= chords_min_voices   ``annotation`` (``.lab``)
beats        music renders with >= min_beats beats              ``annotation``, ``downbeats``
onsets       every music render                                 ``annotation``
pitch        isolated notes                                     ``pitch`` (MIDI number)
instrument   isolated notes                                     ``instrument``
===========  =================================================  ==========================

Splits are by work (:func:`assign_split`), and the pretraining pool holds no test work. The
pool's twin renders, when the preset asks for them, are listed in ``pretrain/twins.csv``
(:func:`twin_manifest_text`), not in the pool's manifest: a sampler that ignores them trains on
the pool as before.
Used by :mod:`vit1d.corpus.build`.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Any

from vit1d.core import atomic
from vit1d.corpus.scores import stable_hash

TASKS = ("pretrain", "tagging", "key", "tempo", "chords", "beats", "onsets", "pitch", "instrument")

SETTING_COLUMNS = (
    "collection",
    "style",
    "ensemble",
    "instrumentation",
    "programs",
    "banks",
    "octave_shifts",
    "render_bpm",
    "transpose",
    "start_q",
    "drums",
    "humanize_ms",
    "reverb_rt60",
    "reverb_wet",
    "highpass_hz",
    "lowpass_hz",
    "noise",
    "snr_db",
)

#: The pretraining pool's twin renders (:mod:`vit1d.corpus.twins`), beside its manifest.
TWINS_CSV = "twins.csv"

LABEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "pretrain": (),
    "tagging": ("tags",),
    "key": ("key",),
    "tempo": ("bpm",),
    "chords": ("annotation",),
    "beats": ("annotation", "downbeats"),
    "onsets": ("annotation",),
    "pitch": ("pitch", "instrument", "dynamic"),
    "instrument": ("instrument", "pitch", "dynamic"),
}


def work_group(work_id: str) -> str:
    """The unit that must not straddle splits: a work, or a family of works.

    Movements in one folder (``mozart/k155/movement1.mxl``) form one group, as do the
    sections of one Palestrina movement (``Agnus_II_12_a``, ``Agnus_II_12_b``); each tune
    of a multi-tune ABC book (``essenFolksong/han1.abc#12``) is its own group.
    """
    if "#" in work_id:
        return work_id
    rel = work_id
    parts = rel.split("/")
    if len(parts) >= 3:
        return "/".join(parts[:2])
    stem = os.path.splitext(rel)[0]
    return re.sub(r"_[a-z]$", "", stem)


def assign_split(group: str, seed: int, valid: float, test: float) -> str:
    """``train``/``valid``/``test`` for a group, from a seeded hash (no shared state)."""
    u = stable_hash(seed, "split", group) / 2**32
    if u < test:
        return "test"
    if u < test + valid:
        return "valid"
    return "train"


def task_rows(records: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, list[dict]]:
    """Sort records into the tasks they serve (see the module table)."""
    t = cfg["tasks"]
    out: dict[str, list[dict]] = {task: [] for task in TASKS}
    for r in records:
        kind = r["kind"]
        lab = r["labels"]
        if kind == "pretrain":
            out["pretrain"].append(r)
        elif kind == "music":
            out["tagging"].append(r)
            out["onsets"].append(r)
            if lab.get("key"):
                out["key"].append(r)
            if lab["n_beats"] >= t["min_beats"] and lab["const_beat"]:
                out["tempo"].append(r)
            if lab["n_beats"] >= t["min_beats"] and "beats" in r["annotations"]:
                out["beats"].append(r)
            if lab["n_voices"] >= t["chords_min_voices"] and lab["chord_seconds"] > 0:
                out["chords"].append(r)
        elif kind == "notes":
            out["pitch"].append(r)
            out["instrument"].append(r)
    return out


def manifest_text(task: str, rows: list[dict[str, Any]]) -> str:
    """The CSV text of one task's manifest (rows sorted by render id)."""
    buf = io.StringIO()
    header = ["audio", "split", *LABEL_COLUMNS[task], "work", "render_id", "duration"]
    header += list(SETTING_COLUMNS)
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in sorted(rows, key=lambda r: r["render_id"]):
        lab = r["labels"]
        row: list[Any] = [f"../{r['audio']}", r["split"]]
        for col in LABEL_COLUMNS[task]:
            if col == "tags":
                row.append(";".join(lab["tags"]))
            elif col == "annotation":
                row.append(f"../{r['annotations'][task]}")
            elif col == "downbeats":
                row.append(f"../{r['annotations']['downbeats']}")
            else:
                row.append(lab[col])
        row += [r["work"], r["render_id"], r["duration"]]
        row += [r["settings"][c] for c in SETTING_COLUMNS]
        w.writerow(row)
    return buf.getvalue()


def twin_manifest_text(records: list[dict[str, Any]]) -> str:
    """``pretrain/twins.csv``: ``audio`` (relative to the manifest), ``split``, ``twin_of``
    (the original's ``render_id``), ``twin`` (its name), ``redraw``, ``work``,
    ``render_id``, ``duration`` and the render settings of each twin, sorted by id."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["audio", "split", "twin_of", "twin", "redraw", "work", "render_id", "duration"]
    w.writerow([*head, *SETTING_COLUMNS])
    for r in sorted(records, key=lambda r: r["render_id"]):
        row = [f"../{r['audio']}", r["split"], r["twin_of"], r["twin"], r["redraw"]]
        row += [r["work"], r["render_id"], r["duration"]]
        w.writerow(row + [r["settings"][c] for c in SETTING_COLUMNS])
    return buf.getvalue()


def write_manifests(root: Path, records: list[dict[str, Any]], cfg: dict[str, Any]) -> dict:
    """Write every task's manifest atomically; returns ``{task: {split: count}}``."""
    rows = task_rows(records, cfg)
    counts: dict[str, dict[str, int]] = {}
    for task, rs in rows.items():
        _write_atomic(root / task / "manifest.csv", manifest_text(task, rs))
        counts[task] = {s: sum(r["split"] == s for r in rs) for s in ("train", "valid", "test")}
    twin_rows = [r for r in records if r["kind"] == "twin"]
    if twin_rows:
        _write_atomic(root / "pretrain" / TWINS_CSV, twin_manifest_text(twin_rows))
    return counts


def _write_atomic(path: Path, text: str) -> None:
    atomic.write_text(path, text)
