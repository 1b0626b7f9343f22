"""Job records: where a render's record lives, how it is written, and a music render's record.

A *record* (``records/<render_id>.json``) is the last file a job writes: its labels,
settings and the names of its files, so it exists only once everything it names is
complete. For a music render the labels (key, tags, beat, chord and onset counts) and the
annotation files come from the planned settings and the very notes sent to the synthesiser
(:mod:`vit1d.corpus.labels`); :func:`music_record` writes the annotation files and returns
the record.

Used by :mod:`vit1d.corpus.jobs` and :mod:`vit1d.corpus.build`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vit1d.core import atomic
from vit1d.corpus import labels
from vit1d.corpus.palette import INSTRUMENTS


def record_path(root: Path, render_id: str) -> Path:
    """The record file of ``render_id`` under the corpus folder ``root``."""
    return root / "records" / f"{render_id}.json"


def write_record(root: Path, render_id: str, rec: dict[str, Any]) -> None:
    """Write a job's record atomically (its last file: the job is then complete)."""
    # no fsync: one record per render (see write_audio)
    atomic.write_json(record_path(root, render_id), rec, fsync=False, indent=1, sort_keys=True)


def music_record(
    root: Path,
    render_id: str,
    work: dict[str, Any],
    split: str,
    s: dict[str, Any],
    nominal: list[tuple[float, float, int]],
    onsets: list[float],
    duration: float,
    n_samples: int,
) -> dict[str, Any]:
    """Labels of a music render from its settings ``s`` and notes; writes its annotation
    files and returns its record (without ``audio``, which the caller adds)."""
    sec_per_q = 60.0 / (s["bpm"] * s["beat_q"])
    start_q = s["start_q"]
    end_q = start_q + duration / sec_per_q
    beats_q, down, lens, _idx = labels.beat_grid(work["measures"], start_q, end_q)
    beats = (beats_q - start_q) * sec_per_q
    const_beat = bool(len(lens)) and bool(np.all(np.abs(lens - s["beat_q"]) < 1e-6))
    chords = labels.chord_segments(nominal, duration, min_dur=0.0)
    onset_times = labels.merge_onsets([t for t in onsets if t < duration])
    key = None
    if work.get("key"):
        key = labels.key_name(work["key"][0] + s["transpose"], work["key"][1])
    tags = music_tags(work, s, key)
    ann = _write_annotations(root, render_id, beats, down, chords, onset_times)
    majmin = sum(b - a for a, b, lab in chords if lab != "N")
    return {
        "render_id": render_id,
        "kind": render_id.split("/", 1)[0],
        "work": work["id"],
        "split": split,
        "duration": round(duration, 4),
        "n_samples": int(n_samples),
        "labels": {
            "tags": sorted(set(tags)),
            "key": key,
            "bpm": s["bpm"],
            "n_beats": int(len(beats)),
            "const_beat": const_beat,
            "chord_seconds": round(majmin, 3),
            "n_voices": len(s["parts_used"]),
            "n_onsets": int(len(onset_times)),
        },
        "annotations": ann,
        "settings": _settings_summary(work, s),
    }


def music_tags(work: dict[str, Any], s: dict[str, Any], key: str | None) -> list[str]:
    """The tags of a music render (with repeats): instruments, families, ensemble size,
    style, tempo class, mode, texture, drums, room and meter."""
    channels = s["channels"]
    instruments = sorted({c["instrument"] for c in channels})
    families = sorted({INSTRUMENTS[c["instrument"]].family for c in channels})
    n_players = len(channels) if s["ensemble"] != "keyboard" else 1
    tags = list(instruments) + families
    tags.append(labels.ensemble_tag(n_players))
    tags.append(work["style"])
    tags.append(labels.tempo_class(s["bpm"]))
    if key:
        tags.append(key.split()[1])
    if len(s["parts_used"]) == 1:
        tags.append("monophonic")
    if s["drums"]:
        tags.append("drums")
    if s["reverb_wet"] >= 0.2 and s["reverb_rt60"] >= 1.0:
        tags.append("reverberant")
    meter = _meter_tag(work["measures"])
    if meter:
        tags.append(meter)
    return tags


def _meter_tag(ms: list[list[float]]) -> str | None:
    """Compound, triple or duple meter from the first bar; ``None`` without bars."""
    if not ms:
        return None
    num, beat = ms[0][3], ms[0][5]
    if abs(beat - 1.5) < 1e-6 or abs(beat - 3.0) < 1e-6:
        return "compound_meter"
    if num in (3, 6, 9) or (num * 4.0 / ms[0][4]) / beat == 3:
        return "triple_meter"
    return "duple_meter"


def _write_annotations(
    root: Path,
    render_id: str,
    beats: np.ndarray,
    down: np.ndarray,
    chords: list[tuple[float, float, str]],
    onset_times: np.ndarray,
) -> dict[str, str]:
    """Write the beat, downbeat, chord and onset files; returns their names by kind."""
    ann: dict[str, str] = {}
    base = render_id.replace("/", "_")
    if len(beats):
        ann["beats"] = f"annotations/beats/{base}.txt"
        ann["downbeats"] = f"annotations/beats/{base}.downbeats.txt"
        labels.write_events(root / ann["beats"], beats, f"beats of {render_id}, seconds")
        labels.write_events(root / ann["downbeats"], beats[down], f"downbeats of {render_id}")
    ann["chords"] = f"annotations/chords/{base}.lab"
    labels.write_intervals(root / ann["chords"], chords)
    ann["onsets"] = f"annotations/onsets/{base}.txt"
    labels.write_events(root / ann["onsets"], onset_times, f"note onsets of {render_id}")
    return ann


def _settings_summary(work: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    """The settings a manifest shows for a music render (channels joined with ``;``)."""
    channels = s["channels"]
    return {
        "collection": work["collection"],
        "style": work["style"],
        "ensemble": s["ensemble"],
        "instrumentation": ";".join(c["instrument"] for c in channels),
        "programs": ";".join(str(c["program"]) for c in channels),
        "banks": ";".join(str(c["bank"]) for c in channels),
        "octave_shifts": ";".join(str(c["octave_shift"]) for c in channels),
        "render_bpm": s["bpm"],
        "transpose": s["transpose"],
        "start_q": s["start_q"],
        "drums": int(s["drums"]),
        "humanize_ms": s["humanize_ms"],
        "reverb_rt60": s["reverb_rt60"],
        "reverb_wet": s["reverb_wet"],
        "highpass_hz": s["highpass_hz"],
        "lowpass_hz": s["lowpass_hz"],
        "noise": s["noise"],
        "snr_db": s["snr_db"],
    }
