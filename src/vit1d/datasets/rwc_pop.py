"""RWC Music Database: Popular Music (Goto et al., ISMIR 2002), chord annotations by Cho &
Bello (ISMIR 2011): the chords task.

Sources: the audio CDs (RWC-MDB-P-2001 M01-M07, https://staff.aist.go.jp/m.goto/RWC-MDB/; not
downloadable), the chord annotations ``AIST.RWC-MDB-P-2001.CHORD.zip`` from
https://staff.aist.go.jp/m.goto/RWC-MDB/AIST-Annotation/ and optionally the metadata table
``rwc-p.csv`` from https://github.com/magdalenafuentes/metadata. mirdata's layout::

    DIR/audio/rwc-p-m01/1.wav ... rwc-p-m07/<track>.wav     (CD M0x, track n)
    DIR/annotations/AIST.RWC-MDB-P-2001.CHORD/RWC_Pop_Chords/N001-M01-T01.lab
    DIR/metadata-master/rwc-p.csv                             (optional: artists)

Chord files are matched to audio by their CD and track numbers (``N<piece>-M<cd>-T<track>``);
audio named by piece (``RM-P001.wav``) is found too. They are read with mirdata's
``rwc_popular.load_chords`` and rewritten as ``.lab`` files after checking every label.
Split: RWC has none; a seeded 70/10/20 split by artist (from ``rwc-p.csv``; without it, by
piece), so no artist is in two splits.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from vit1d.datasets._common import (
    AUDIO_SUFFIXES,
    Build,
    chord_label_ok,
    find_file,
    group_split,
    layout_error,
    mirdata_module,
    walk_files,
    write_lab,
)

NAME = "rwc_pop"
TITLE = "RWC Popular Music (chords)"
TASKS = ("chords",)
ORIGIN = (
    "audio: the RWC-MDB-P-2001 CDs (https://staff.aist.go.jp/m.goto/RWC-MDB/); chords: "
    "https://staff.aist.go.jp/m.goto/RWC-MDB/AIST-Annotation/AIST.RWC-MDB-P-2001.CHORD.zip; "
    "artists (optional): https://github.com/magdalenafuentes/metadata (rwc-p.csv)"
)
LAYOUT = (
    "DIR/audio/rwc-p-m0X/<track>.wav and the chord files N<piece>-M<cd>-T<track>.lab "
    "(e.g. DIR/annotations/AIST.RWC-MDB-P-2001.CHORD/RWC_Pop_Chords/), optionally "
    "DIR/metadata-master/rwc-p.csv"
)
CHORD_FILE = re.compile(r"^N(\d{3})-M(\d{2})-T(\d{2})\.lab$", re.IGNORECASE)
CD_FOLDER = re.compile(r"^rwc-p-m(\d{2})$", re.IGNORECASE)
PIECE_FILE = re.compile(r"^RM-P(\d{3})$", re.IGNORECASE)


def read_artists(path: Path) -> dict[int, str]:
    """Piece number -> artist from ``rwc-p.csv`` (columns: ``Piece No.`` like ``No. 1``, CD
    suffix, track, title, artist, ...; read by position, as mirdata does)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:2048], ",;\t")
    except csv.Error:
        dialect = csv.excel
    artists = {}
    for line in csv.reader(text.splitlines(), dialect):
        digits = re.findall(r"\d+", line[0]) if line else []
        if len(line) > 4 and digits and not line[0].startswith("Piece"):
            artists[int(digits[-1])] = line[4].strip()
    return artists


def build(source: Path, out_root: Path, seed: int = 0, quiet: bool = False) -> Path:
    """Write ``<out_root>/chords/manifest.csv`` (+ ``.lab`` files) from an RWC-Pop copy;
    returns the root."""
    b = Build.start(NAME, source, out_root, seed, TASKS)
    labs = [p for p in walk_files(b.source, (".lab",), b.out_root) if CHORD_FILE.match(p.name)]
    if not labs:
        raise layout_error(TITLE, b.source, "no chord files N###-M##-T##.lab", LAYOUT)
    by_track: dict[tuple[int, int], Path] = {}
    by_piece: dict[int, Path] = {}
    for p in walk_files(b.source, AUDIO_SUFFIXES, b.out_root):
        cd = CD_FOLDER.match(p.parent.name)
        if cd and p.stem.isdigit():
            by_track[(int(cd.group(1)), int(p.stem))] = p
        piece = PIECE_FILE.match(p.stem)
        if piece:
            by_piece[int(piece.group(1))] = p
    meta = find_file(b.source, "rwc-p.csv", depth=3)
    artists = read_artists(meta) if meta is not None else {}
    rp = mirdata_module("rwc_popular")
    rows = []
    for lab in labs:
        piece, cd, track = (int(g) for g in CHORD_FILE.match(lab.name).groups())  # type: ignore[union-attr]
        audio = by_track.get((cd, track)) or by_piece.get(piece)
        if not b.usable_audio(audio, f"{lab.name}: CD {cd} track {track} / piece {piece}"):
            continue
        try:
            chords = rp.load_chords(str(lab))
        except (ValueError, IndexError, TypeError) as exc:
            b.skip("unreadable chord file", f"{lab.name} ({exc})")
            continue
        bad = [c for c in chords.labels if not chord_label_ok(c)]
        if bad:
            b.skip("chord label mir_eval cannot parse", f"{lab.name}: {bad[0]!r}")
            continue
        out = b.annotation(f"RM-P{piece:03d}.lab")
        write_lab(out, chords.intervals, chords.labels)
        rows.append(
            {
                "audio": b.audio(audio),
                "annotation": b.rel(out),
                "work": f"RM-P{piece:03d}",
                "artist": artists.get(piece, ""),
            }
        )
    groups = [r["artist"] or r["work"] for r in rows]
    for r, s in zip(rows, group_split(groups, seed), strict=True):
        r["split"] = s
    how = "artist" if artists else "piece (no rwc-p.csv found)"
    b.write("chords", rows, ["audio", "split", "annotation", "work", "artist"])
    return b.finish(f"seeded 70/10/20 by {how} (seed {seed})", quiet)
