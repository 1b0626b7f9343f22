"""Ballroom (Gouyon et al., IEEE TASLP 2006; beat annotations: Krebs, Böck & Widmer, ISMIR
2013): the beats task.

Sources: the audio, ``data1.tar.gz`` of the ISMIR 2004 tempo contest
(http://mtg.upf.edu/ismir2004/contest/tempoContest/node5.html), and the beat annotations of
https://github.com/CPJKU/BallroomAnnotations. Layout (mirdata's, or the two unpacked side by
side)::

    DIR/BallroomData/ChaChaCha/Albums-Cafe_Paradiso-05.wav ...   (a folder per dance)
    DIR/BallroomAnnotations/Albums-Cafe_Paradiso-05.beats ...    (``time beat-in-bar``)

Audio and annotation are matched by file name. The ``.beats`` files are read with mirdata's
``ballroom.load_beats`` and rewritten as beat times and downbeat times (beat 1), one per line.
Split: Ballroom has none; a seeded 70/10/20 split by album (``Albums-<album>-NN`` files; other
files are their own group), so the tracks of one album are in one split.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vit1d.datasets._common import (
    Build,
    group_split,
    layout_error,
    mirdata_module,
    walk_files,
    write_events,
)

NAME = "ballroom"
TITLE = "Ballroom"
TASKS = ("beats",)
ORIGIN = (
    "audio: http://mtg.upf.edu/ismir2004/contest/tempoContest/node5.html (data1.tar.gz); "
    "beats: https://github.com/CPJKU/BallroomAnnotations"
)
LAYOUT = (
    "the audio DIR/BallroomData/<Dance>/<name>.wav and the annotations "
    "DIR/BallroomAnnotations/<name>.beats (any folder names under DIR)"
)
ALBUM = re.compile(r"^(Albums-.+)-\d+$")
COLUMNS = ["audio", "split", "annotation", "downbeats", "work", "genre"]


def group_of(stem: str) -> str:
    """The album of ``Albums-<album>-NN``; other names are their own group."""
    m = ALBUM.match(stem)
    return m.group(1) if m else stem


def build(source: Path, out_root: Path, seed: int = 0, quiet: bool = False) -> Path:
    """Write ``<out_root>/beats/manifest.csv`` (+ beat and downbeat files) from a Ballroom
    copy; returns the root."""
    b = Build.start(NAME, source, out_root, seed, TASKS)
    beats = {p.stem: p for p in walk_files(b.source, (".beats",), b.out_root)}
    if not beats:
        raise layout_error(TITLE, b.source, "no .beats annotation files", LAYOUT)
    audio = {p.stem: p for p in walk_files(b.source, (".wav", ".flac", ".mp3"), b.out_root)}
    if not set(beats) & set(audio):
        raise layout_error(TITLE, b.source, "no audio file named like a .beats file", LAYOUT)
    br = mirdata_module("ballroom")
    rows = []
    for stem, ann in sorted(beats.items()):
        if not b.usable_audio(audio.get(stem), f"{stem}.wav"):
            continue
        try:
            data = br.load_beats(str(ann))
        except (ValueError, IndexError) as exc:
            b.skip("unreadable beat file", f"{ann.name} ({exc})")
            continue
        if data is None or len(data.times) == 0:
            b.skip("no beats in the annotation", ann.name)
            continue
        times = np.asarray(data.times, dtype=float)
        out = b.annotation(f"{stem}.txt")
        down = b.annotation(f"{stem}.downbeats.txt")
        write_events(out, times)
        write_events(down, times[np.asarray(data.positions) == 1])
        rows.append(
            {
                "audio": b.audio(audio[stem]),
                "annotation": b.rel(out),
                "downbeats": b.rel(down),
                "work": group_of(stem),
                "genre": audio[stem].parent.name,
            }
        )
    for r, s in zip(rows, group_split([r["work"] for r in rows], seed), strict=True):
        r["split"] = s
    b.write("beats", rows, COLUMNS)
    return b.finish(f"seeded 70/10/20 by album (seed {seed})", quiet)
