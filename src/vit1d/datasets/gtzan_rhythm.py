"""GTZAN with beat annotations (GTZAN-Rhythm, Marchand & Peeters 2015, in the version of
https://github.com/TempoBeatDownbeat/gtzan_tempo_beat that mirdata reads): the beats task.

Sources: the GTZAN genre collection (1000 clips of 30 s, ``genres.tar.gz``, originally
http://marsyas.info/downloads/datasets.html) and the beat annotations of
https://github.com/TempoBeatDownbeat/gtzan_tempo_beat. Layout (mirdata's, or any folders)::

    DIR/gtzan_genre/genres/blues/blues.00000.wav (or .au) ...
    DIR/gtzan_tempo_beat-main/beats/gtzan_blues_00000.beats ...   (``time<TAB>beat-in-bar``)

Audio and annotation are matched by genre and number. The ``.beats`` files are read with
mirdata's ``gtzan_genre.load_beats`` and rewritten as beat times and downbeat times, one per
line. Split: when the fault-filtered split of Kereliuk, Sturm & Larsen (2015) is found under
``DIR`` (``train_filtered.txt``, ``valid_filtered.txt``, ``test_filtered.txt``, lines like
``blues/blues.00029.wav``), that split (artist-conscious; clips it leaves out are skipped); else
a seeded 70/10/20 split by clip within each genre (GTZAN's files name no artists).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vit1d.datasets._common import (
    Build,
    find_file,
    group_split,
    layout_error,
    mirdata_module,
    walk_files,
    write_events,
)

NAME = "gtzan_rhythm"
TITLE = "GTZAN-Rhythm"
TASKS = ("beats",)
ORIGIN = (
    "audio: the GTZAN genre collection (genres.tar.gz, http://marsyas.info/downloads/"
    "datasets.html); beats: https://github.com/TempoBeatDownbeat/gtzan_tempo_beat"
)
LAYOUT = (
    "the audio <genre>.<nnnnn>.wav or .au (e.g. DIR/gtzan_genre/genres/blues/) and the "
    "annotations gtzan_<genre>_<nnnnn>.beats (e.g. DIR/gtzan_tempo_beat-main/beats/)"
)
BEATS = re.compile(r"^gtzan_([a-z]+)_(\d{5})\.beats$")
AUDIO = re.compile(r"^([a-z]+)\.(\d{5})\.(wav|au|flac|mp3)$")
FILTERED = {
    "train": "train_filtered.txt",
    "valid": "valid_filtered.txt",
    "test": "test_filtered.txt",
}
COLUMNS = ["audio", "split", "annotation", "downbeats", "work", "genre"]


def _filtered_split(source: Path) -> dict[str, str]:
    """Clip (``blues.00029``) -> split from the fault-filtered split files, if all exist."""
    files = {s: find_file(source, name, depth=3) for s, name in FILTERED.items()}
    if any(f is None for f in files.values()):
        return {}
    split = {}
    for s, path in files.items():
        for line in path.read_text().split():  # type: ignore[union-attr]
            clip = Path(line.strip()).name
            m = AUDIO.match(clip)
            split[f"{m.group(1)}.{m.group(2)}" if m else clip] = s
    return split


def build(source: Path, out_root: Path, seed: int = 0, quiet: bool = False) -> Path:
    """Write ``<out_root>/beats/manifest.csv`` (+ beat and downbeat files) from GTZAN and its
    beat annotations; returns the root."""
    b = Build.start(NAME, source, out_root, seed, TASKS)
    beats = {}
    for p in walk_files(b.source, (".beats",), b.out_root):
        m = BEATS.match(p.name)
        if m:
            beats[f"{m.group(1)}.{m.group(2)}"] = p
    if not beats:
        raise layout_error(TITLE, b.source, "no gtzan_<genre>_<nnnnn>.beats files", LAYOUT)
    audio = {}
    for p in walk_files(b.source, (".wav", ".au", ".flac", ".mp3"), b.out_root):
        m = AUDIO.match(p.name)
        if m:
            audio.setdefault(f"{m.group(1)}.{m.group(2)}", p)
    if not set(beats) & set(audio):
        raise layout_error(
            TITLE, b.source, "no <genre>.<nnnnn>.wav audio for the annotations", LAYOUT
        )
    gg = mirdata_module("gtzan_genre")
    rows = []
    for clip, ann in sorted(beats.items()):
        if not b.usable_audio(audio.get(clip), f"{clip}.wav"):
            continue
        try:
            data = gg.load_beats(str(ann))
        except (ValueError, IndexError) as exc:
            b.skip("unreadable beat file", f"{ann.name} ({exc})")
            continue
        times = np.asarray(data.times, dtype=float)
        if times.size == 0:
            b.skip("no beats in the annotation", ann.name)
            continue
        out = b.annotation(f"{clip}.txt")
        write_events(out, times)
        row = {
            "audio": b.audio(audio[clip]),
            "annotation": b.rel(out),
            "work": clip,
            "genre": clip.split(".")[0],
        }
        if data.positions is not None:
            down = b.annotation(f"{clip}.downbeats.txt")
            write_events(down, times[np.asarray(data.positions) == 1])
            row["downbeats"] = b.rel(down)
        rows.append(row)
    filtered = _filtered_split(b.source)
    if filtered:
        kept = []
        for r in rows:
            if r["work"] not in filtered:
                b.skip("not in the fault-filtered split", r["work"])
                continue
            r["split"] = filtered[r["work"]]
            kept.append(r)
        rows = kept
        rule = "the fault-filtered split (Kereliuk, Sturm & Larsen 2015)"
    else:
        splits = group_split([r["work"] for r in rows], seed, strata=[r["genre"] for r in rows])
        for r, s in zip(rows, splits, strict=True):
            r["split"] = s
        rule = f"seeded 70/10/20 by clip within each genre (seed {seed})"
        b.notes.append(
            "GTZAN names no artists, so one artist can be in two splits; put the fault-filtered "
            "split files (train_filtered.txt, ...) under the source for an artist-conscious split"
        )
    b.write("beats", rows, COLUMNS)
    return b.finish(rule, quiet)
