"""Scores from the corpus bundled with ``music21``, reduced to cached note events.

Parsing with music21 dominates the cost of building the corpus (a pilot spent most of
its time there), so every source file is parsed once, reduced to plain note events, and
the result is cached as gzipped JSON keyed by the file, the music21 version and
:data:`EXTRACT_VERSION`. Re-building a corpus, or building another preset, reads the cache.

A *work* (one score; an ABC or Essen file holds many) becomes a dict:

``id``
    ``<relative path>``, or ``<relative path>#<X>`` for tune ``X:`` of a multi-tune ABC file.
``collection``, ``style``, ``title``
    where it comes from (the corpus folder, its style tag, the title in the file).
``parts``
    one list of ``[onset, duration, midi]`` per part (quarter lengths, top part first),
    after expanding repeats (when music21 can) and merging tied notes, so one sounded note
    is one event: labels and audio come from the same list and cannot drift apart.
``measures``
    ``[offset, duration, pad_left, numerator, denominator, beat]`` per bar of the first
    part (quarter lengths; ``pad_left`` is the missing head of a pickup bar, ``beat`` the
    time signature's beat length), from which beats and downbeats are computed exactly.
``key``
    ``[tonic pitch class, "major"|"minor"]`` or ``None``: the key the file states
    (``K:`` field, MusicXML mode) or, for a bare key signature, the major or relative
    minor whose tonic is the final bass note; kept only when the final bass note is that
    tonic, so modal works (Dorian, Mixolydian, Renaissance modes) carry no key label.

Used by :mod:`vit1d.corpus.build`; developed in ``notebooks/02_corpus.ipynb``.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing as mp
import os
import re
import warnings
import zlib
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from vit1d.core import atomic
from vit1d.core.errors import UserError
from vit1d.corpus import repeats

#: Bumped whenever the extraction changes, so stale caches are never read.
EXTRACT_VERSION = 1

#: Score formats read, in order of preference when one piece exists in several formats.
SCORE_EXTENSIONS = (".mxl", ".musicxml", ".xml", ".krn", ".abc")

#: Corpus folders used, with the style tag their works carry.
COLLECTIONS: dict[str, str] = {
    "bach": "chorale",
    "palestrina": "renaissance",
    "lusitano": "renaissance",
    "monteverdi": "madrigal",
    "trecento": "medieval",
    "ciconia": "medieval",
    "luca": "medieval",
    "beethoven": "classical",
    "mozart": "classical",
    "haydn": "classical",
    "cpebach": "classical",
    "corelli": "baroque",
    "handel": "baroque",
    "essenFolksong": "folk_song",
    "oneills1850": "fiddle_tune",
    "ryansMammoth": "fiddle_tune",
    "nottingham-dataset": "fiddle_tune",
    "airdsAirs": "fiddle_tune",
    "miscFolk": "fiddle_tune",
    "schumann_robert": "romantic",
    "schumann_clara": "romantic",
    "schubert": "romantic",
    "chopin": "romantic",
    "verdi": "romantic",
    "weber": "romantic",
    "beach": "romantic",
    "joplin": "romantic",
    "liliuokalani": "romantic",
    "johnson_j_r": "romantic",
}

#: Works outside these bounds are skipped (too short to clip, too many parts to voice).
MIN_NOTES = 8
MAX_PARTS = 12


def music21_version() -> str:
    try:
        import music21
    except ImportError:
        raise UserError(
            'the corpus builder needs music21: install it with `pip install "vit1d[corpus]"`'
        ) from None
    return str(music21.__version__)


def corpus_root() -> Path:
    """The folder of the corpus that ships inside the music21 package."""
    music21_version()
    from music21 import common

    return Path(common.getCorpusFilePath())


def list_sources(collection: str) -> list[str]:
    """Score files of one corpus folder, relative to :func:`corpus_root`, sorted.

    Roman-numeral analyses (``.rntxt``) are not scores and are skipped; a piece stored in
    several formats (e.g. ``movement1.krn`` and ``movement1.mxl``) is read once, from the
    format first in :data:`SCORE_EXTENSIONS`.
    """
    root = corpus_root()
    folder = root / collection
    if not folder.is_dir():
        raise UserError(
            f"music21 corpus folder {collection!r} not found under {root}; "
            f"use one of: {', '.join(sorted(COLLECTIONS))}"
        )
    best: dict[str, tuple[int, str]] = {}
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext.lower() not in SCORE_EXTENSIONS:
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
            key = os.path.join(os.path.relpath(dirpath, root), stem)
            rank = SCORE_EXTENSIONS.index(ext.lower())
            if key not in best or rank < best[key][0]:
                best[key] = (rank, rel)
    return sorted(rel for _, rel in best.values())


def stable_hash(*parts: Any) -> int:
    """A 32-bit hash of ``parts`` that is the same in every process and Python run."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


def list_units(collection: str) -> list[str]:
    """Every work of a corpus folder as a *unit*: ``rel`` or ``rel#X`` (ABC tune ``X:``).

    ABC files (Essen, O'Neill, ...) hold up to hundreds of tunes; their tunes are listed
    from the ``X:`` reference numbers without parsing, and each is parsed on its own
    (music21's ``number=``), so a preset that samples 20 tunes from a file of 600 pays for 20.
    """
    units: list[str] = []
    root = corpus_root()
    for rel in list_sources(collection):
        if rel.lower().endswith(".abc"):
            text = (root / rel).read_text(encoding="latin-1")
            nums = sorted({int(x) for x in re.findall(r"^X:\s*(\d+)", text, flags=re.M)})
            if len(nums) > 1:
                units.extend(f"{rel}#{n}" for n in nums)
                continue
        units.append(rel)
    return units


def select_units(collections: dict[str, dict[str, Any]], seed: int) -> list[str]:
    """Pick works per collection (``{"works": int | "all"}``) by a seeded shuffle, so a
    preset and a seed always name the same works. Returned sorted."""
    out: list[str] = []
    for name in sorted(collections):
        units = list_units(name)
        n = collections[name].get("works", "all")
        if n != "all" and int(n) < len(units):
            rng = np.random.default_rng([seed, stable_hash("units", name)])
            units = [units[i] for i in sorted(rng.choice(len(units), int(n), replace=False))]
        out.extend(units)
    return sorted(out)


# --------------------------------------------------------------------------- extraction


def _cache_path(cache_dir: Path, unit: str, m21: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._#-]", "_", unit.replace("/", "__"))
    return cache_dir / f"events-v{EXTRACT_VERSION}-m21-{m21}" / f"{safe}.json.gz"


def load_unit(unit: str, cache_dir: str | Path) -> list[dict[str, Any]]:
    """The work(s) of one unit, from the cache or parsed now (and then cached).

    Returns work dicts (see the module docstring); a score music21 cannot read, or one
    without enough notes, comes back as ``{"id": ..., "error": reason}``.
    """
    m21 = music21_version()
    path = _cache_path(Path(cache_dir), unit, m21)
    if path.is_file():
        try:
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):  # a damaged cache entry: parse again
            pass
    works = parse_unit(unit)
    try:
        with atomic.replacing(path, fsync=False) as tmp, gzip.GzipFile(tmp, "wb", mtime=0) as raw:
            raw.write(json.dumps(works, separators=(",", ":")).encode("utf-8"))
    except OSError as exc:
        raise UserError(
            f"cannot write the score cache under {cache_dir}: {exc}; "
            "pass a writable folder with --cache DIR (or set cache_dir in the preset)"
        ) from None
    return works


def parse_unit(unit: str) -> list[dict[str, Any]]:
    """Parse one unit with music21 and extract every score in it."""
    from music21 import converter, stream

    rel, _, number = unit.partition("#")
    collection = rel.split("/", 1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            kwargs = {"number": int(number)} if number else {}
            parsed = converter.parse(
                str(corpus_root() / rel), forceSource=True, storePickle=False, **kwargs
            )
        except Exception as exc:  # music21 raises many types on malformed files
            return [{"id": unit, "error": f"parse: {type(exc).__name__}: {exc}"[:300]}]
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
        works = []
        for k, score in enumerate(scores, start=1):
            wid = unit if len(scores) == 1 else f"{unit}.{k}"
            try:
                works.append(extract_score(score, wid, collection))
            except Exception as exc:
                works.append({"id": wid, "error": f"extract: {type(exc).__name__}: {exc}"[:300]})
    return works


def extract_score(score: Any, work_id: str, collection: str) -> dict[str, Any]:
    """Reduce one music21 score to the work dict described in the module docstring.

    Tied notes are merged and repeats expanded here, on plain event lists (music21's own
    ``stripTies`` and ``expandRepeats`` cost as much as the parse itself).
    """
    from music21 import stream

    parts_src = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    measure_lists = [list(p.getElementsByClass(stream.Measure)) for p in parts_src]
    bars = repeats.bar_structure(score, parts_src[0], measure_lists[0])
    order = repeats.playing_order(bars, [len(ms) for ms in measure_lists])
    expanded = order is not None and order != list(range(len(bars)))

    parts: list[list[list[float]]] = []
    for part in parts_src:
        events = _merged_events(part)
        if events and order is not None:
            events = repeats.expand(events, bars, order)
        if events:
            events.sort()
            parts.append(events)
    if sum(len(p) for p in parts) < MIN_NOTES:
        return {"id": work_id, "error": "too few notes"}
    if len(parts) > MAX_PARTS:
        return {"id": work_id, "error": f"{len(parts)} parts"}
    # order parts from the highest to the lowest mean pitch
    parts.sort(key=lambda evs: -float(np.mean([e[2] for e in evs])))
    measures = repeats.measure_rows(bars, order)
    tonic_mode, key_source = _score_key(score, parts)

    title = None
    if score.metadata is not None:
        title = score.metadata.title or score.metadata.movementName
    length = max(e[0] + e[1] for p in parts for e in p)
    if measures:
        length = max(length, measures[-1][0] + measures[-1][1])
    return {
        "id": work_id,
        "collection": collection,
        "style": COLLECTIONS.get(collection, "other"),
        "title": str(title) if title else None,
        "parts": parts,
        "measures": measures,
        "key": list(tonic_mode) if tonic_mode else None,
        "key_source": key_source,
        "length": round(length, 6),
        "repeats_expanded": expanded,
    }


def _score_key(
    score: Any, parts: list[list[list[float]]]
) -> tuple[tuple[int, str] | None, str | None]:
    """``((tonic pitch class, mode), source)`` of the key the score states, or that its key
    signature implies, kept only when the final bass note is its tonic; else ``(None, None)``."""
    from music21 import key

    tonic_mode = None
    key_source = None
    sigs = list(score.recurse().getElementsByClass(key.KeySignature))
    final_bass = _final_bass_pc(parts)
    if sigs:
        first = sigs[0]
        if isinstance(first, key.Key):
            if first.mode in ("major", "minor"):
                tonic_mode = (int(first.tonic.pitchClass), str(first.mode))
                key_source = "stated"
        else:
            major = (7 * int(first.sharps)) % 12
            minor = (major + 9) % 12
            if final_bass == major:
                tonic_mode = (major, "major")
            elif final_bass == minor:
                tonic_mode = (minor, "minor")
            key_source = "signature+final"
    if tonic_mode is not None and tonic_mode[0] != final_bass:
        tonic_mode, key_source = None, None
    return tonic_mode, key_source


def _merged_events(part: Any) -> list[list[float]]:
    """``[onset, duration, midi]`` of one part with tied notes merged into one event."""
    from music21 import chord, harmony

    events: list[list[float]] = []
    open_ties: dict[int, int] = {}
    for n in part.flatten().notes:
        if isinstance(n, harmony.Harmony):  # chord symbols are not played notes
            continue
        ql = float(n.quarterLength)
        if ql <= 0 or n.duration.isGrace:
            continue
        onset = float(n.offset)
        subs = list(n.notes) if isinstance(n, chord.Chord) else [n]
        for sub in subs:
            if not hasattr(sub, "pitch"):
                continue  # unpitched percussion
            midi = int(round(sub.pitch.ps))
            tie = sub.tie or n.tie
            kind = tie.type if tie is not None else None
            j = open_ties.get(midi)
            if (
                kind in ("stop", "continue")
                and j is not None
                and abs(events[j][0] + events[j][1] - onset) < 1e-4
            ):
                events[j][1] = round(onset + ql - events[j][0], 6)
                if kind == "stop":
                    del open_ties[midi]
                continue
            events.append([round(onset, 6), round(ql, 6), midi])
            if kind in ("start", "continue"):
                open_ties[midi] = len(events) - 1
            else:
                open_ties.pop(midi, None)
    return events


def _final_bass_pc(parts: list[list[list[float]]]) -> int:
    """Pitch class of the lowest note sounding at the very end of the work."""
    end = max(e[0] + e[1] for p in parts for e in p)
    last = [e for p in parts for e in p if e[0] + e[1] >= end - 1e-6]
    return int(min(e[2] for e in last)) % 12


def load_works(
    units: Iterable[str],
    cache_dir: str | Path,
    workers: int = 1,
    progress: Any = None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Load (parsing what is not cached) every unit; returns (works, skipped).

    Parsing runs on ``workers`` processes; the result does not depend on their number.
    """
    units = list(units)
    results: dict[str, list[dict[str, Any]]] = {}
    m21 = music21_version()
    todo = [u for u in units if not _cache_path(Path(cache_dir), u, m21).is_file()]
    cached = [u for u in units if u not in set(todo)]
    for u in cached:
        results[u] = load_unit(u, cache_dir)
    if progress and cached:
        progress(len(cached), len(units))
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futs = {pool.submit(load_unit, u, str(cache_dir)): u for u in todo}
            for fut in as_completed(futs):
                results[futs[fut]] = fut.result()
                if progress:
                    progress(len(results), len(units))
    else:
        for u in todo:
            results[u] = load_unit(u, cache_dir)
            if progress:
                progress(len(results), len(units))
    works: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for u in units:
        works.extend(w for w in results[u] if "error" not in w)
        skipped.extend({"id": w["id"], "error": w["error"]} for w in results[u] if "error" in w)
    return works, skipped
