"""TinySOL (Cella et al. 2020; Ircam Studio On Line): the pitch and instrument tasks.

Source: https://zenodo.org/record/3685367 (``TinySOL.tar.gz`` and ``TinySOL_metadata.csv``).
Layout::

    DIR/TinySOL_metadata.csv (or DIR/annotation/TinySOL_metadata.csv)
    DIR/<audio root>/Winds/Flute/ordinario/Fl-ord-C4-mf-N-N.wav ...

where the audio root (``DIR``, ``DIR/audio``, ``DIR/TinySOL``, ...) is the folder the
metadata's ``Path`` column is relative to; it is found by looking. Labels: ``Pitch ID`` (MIDI
number) and the instrument, named as in the embedded corpus (``Vc`` -> ``cello``, ``ClBb`` ->
``clarinet``, ...) so that both corpora share a vocabulary. Split: TinySOL's official folds
(balanced in instrument, pitch range and dynamics), folds 0-2 train, 3 valid, 4 test. mirdata's
tinysol loader reads this CSV only through its downloaded index, so the CSV is parsed here.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from vit1d.datasets._common import Build, find_file, find_root, layout_error

NAME = "tinysol"
TITLE = "TinySOL"
TASKS = ("pitch", "instrument")
ORIGIN = "https://zenodo.org/record/3685367 (TinySOL.tar.gz unpacked, TinySOL_metadata.csv)"
LAYOUT = (
    "DIR/TinySOL_metadata.csv (or DIR/annotation/) and the unpacked audio whose paths it "
    "lists (Brass/, Keyboards/, Strings/, Winds/)"
)
#: Official fold -> split.
FOLD_SPLIT = {"0": "train", "1": "train", "2": "train", "3": "valid", "4": "test"}
#: TinySOL's instrument abbreviations -> the embedded corpus's instrument names.
INSTRUMENTS = {
    "Acc": "accordion",
    "ASax": "alto_sax",
    "Bn": "bassoon",
    "BTb": "tuba",
    "Cb": "contrabass",
    "ClBb": "clarinet",
    "Fl": "flute",
    "Hn": "horn",
    "Ob": "oboe",
    "Tbn": "trombone",
    "TpC": "trumpet",
    "Va": "viola",
    "Vc": "cello",
    "Vn": "violin",
}
NEEDED = ("Path", "Fold", "Instrument (abbr.)", "Pitch ID")


def instrument_name(abbr: str, full: str) -> str:
    """The corpus's name of a TinySOL instrument (a slug of the full name if unknown)."""
    return INSTRUMENTS.get(abbr) or re.sub(r"[^a-z0-9]+", "_", full.lower()).strip("_") or abbr


def build(source: Path, out_root: Path, seed: int = 0, quiet: bool = False) -> Path:
    """Write ``<out_root>/pitch/manifest.csv`` and ``<out_root>/instrument/manifest.csv`` from a
    TinySOL copy; returns the root. ``seed`` is unused: the split is the official folds."""
    b = Build.start(NAME, source, out_root, seed, TASKS)
    meta = find_file(b.source, "TinySOL_metadata.csv", depth=2)
    if meta is None:
        raise layout_error(TITLE, b.source, "no TinySOL_metadata.csv", LAYOUT)
    with open(meta, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        records = list(reader)
        missing = [c for c in NEEDED if c not in (reader.fieldnames or [])]
    if missing:
        raise layout_error(TITLE, b.source, f"{meta.name} lacks columns {missing}", LAYOUT)
    root = find_root(b.source, [r["Path"] for r in records if r["Path"]])
    if root is None:
        raise layout_error(TITLE, b.source, f"none of the audio files {meta.name} lists", LAYOUT)
    pitch_rows, instrument_rows = [], []
    for r in records:
        split = FOLD_SPLIT.get(r["Fold"].strip())
        if split is None:
            b.skip("no official fold", r["Path"])
            continue
        try:
            pitch = int(round(float(r["Pitch ID"])))
        except ValueError:
            b.skip("no MIDI pitch", r["Path"])
            continue
        path = root / r["Path"]
        if not b.usable_audio(path, r["Path"]):
            continue
        instrument = instrument_name(r["Instrument (abbr.)"], r.get("Instrument (in full)", ""))
        row = {
            "audio": b.audio(path),
            "split": split,
            "pitch": str(pitch),
            "instrument": instrument,
            "dynamic": r.get("Dynamics", ""),
            "work": f"{instrument}:{pitch}",
        }
        pitch_rows.append(row)
        instrument_rows.append(dict(row))
    b.write("pitch", pitch_rows, ["audio", "split", "pitch", "instrument", "dynamic", "work"])
    b.write(
        "instrument", instrument_rows, ["audio", "split", "instrument", "pitch", "dynamic", "work"]
    )
    return b.finish("official folds: 0-2 train, 3 valid, 4 test", quiet)
