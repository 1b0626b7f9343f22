"""Labels computed from the very note events that are rendered, so they are exact.

Everything here works on a *clip*: the notes of one render, already transposed and
placed in seconds. Nothing is estimated from audio:

* key names in the ``mir_eval.key`` spelling (``C major``, ``F# minor``);
* beats and downbeats from the bars (offset, pickup padding, time signature) and the tempo;
* chord segments from vertical slices of the score (what music21's ``chordify`` makes),
  reduced to the 24 major/minor triads and ``N`` in Harte syntax (``C:maj``, ``A:min``);
* onsets: the note-on times actually sent to the synthesiser, merged within 30 ms;
* annotation files in the formats ``mir_eval.io`` reads.

Used by :mod:`vit1d.corpus.jobs` and :mod:`vit1d.corpus.records`; the label checks in
``tests/test_corpus_labels.py`` compare these against the audio (onset detection, chroma,
pitch tracking).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vit1d.core import atomic

#: Pitch-class names used in key and chord labels.
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

#: The 24 key classes in a fixed order (major keys first).
KEYS = tuple(f"{n} major" for n in PITCH_NAMES) + tuple(f"{n} minor" for n in PITCH_NAMES)

#: The 25 chord classes of the majmin vocabulary (``N`` last).
CHORDS = tuple(f"{n}:maj" for n in PITCH_NAMES) + tuple(f"{n}:min" for n in PITCH_NAMES) + ("N",)

_TRIADS = [(r, "maj", frozenset({r, (r + 4) % 12, (r + 7) % 12})) for r in range(12)] + [
    (r, "min", frozenset({r, (r + 3) % 12, (r + 7) % 12})) for r in range(12)
]


def key_name(tonic_pc: int, mode: str) -> str:
    """``(9, "minor") -> "A minor"``."""
    return f"{PITCH_NAMES[tonic_pc % 12]} {mode}"


def chord_name(root_pc: int | None, quality: str | None) -> str:
    """``(0, "maj") -> "C:maj"``; ``None`` -> ``"N"``."""
    if root_pc is None or quality is None:
        return "N"
    return f"{PITCH_NAMES[root_pc % 12]}:{quality}"


def beat_grid(
    measures: Sequence[Sequence[float]], start_q: float, end_q: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Beats in ``[start_q, end_q)`` from the bars.

    Returns (beat offsets, is_downbeat, beat lengths, beat index in its bar). A bar with
    offset ``o``, length ``d`` and pickup padding ``p`` has beats at ``o + k * beat - p``
    for every ``k`` that lands inside ``[o, o + d)``; the one with ``k = 0`` (the start of
    a full bar) is a downbeat. Offsets are in quarter lengths.
    """
    beats: list[float] = []
    down: list[bool] = []
    lengths: list[float] = []
    index: list[int] = []
    for off, dur, pad, _num, _den, beat in measures:
        if off >= end_q or off + dur <= start_q or beat <= 0:
            continue
        k = int(np.ceil((pad - 1e-9) / beat))
        while True:
            t = off + k * beat - pad
            if t >= off + dur - 1e-9:
                break
            if start_q - 1e-9 <= t < end_q - 1e-9:
                beats.append(t)
                down.append(k == 0)
                lengths.append(beat)
                index.append(k)
            k += 1
    return (
        np.asarray(beats, dtype=float),
        np.asarray(down, dtype=bool),
        np.asarray(lengths, dtype=float),
        np.asarray(index, dtype=int),
    )


def slice_chord(
    pcs: frozenset[int], bass: int, prev: tuple[int, str] | None
) -> tuple[int, str] | None:
    """The major/minor triad of one vertical slice, or ``None`` for ``N``.

    In order: a complete triad in the slice (several, as in a seventh chord: the one whose
    root is the bass, else the first found); a diminished triad, read as the rootless
    dominant seventh it usually is in tonal music (B-D-F -> G:maj); the previous chord when
    the slice adds at most one foreign pitch class to it (passing and neighbour notes,
    suspensions, bare octaves); a lone third (root and third, nothing foreign: A-C ->
    A:min); else ``N``.
    """
    if not pcs:
        return None
    cands = [t for t in _TRIADS if t[2] <= pcs]
    if cands:
        chosen = next((t for t in cands if t[0] == bass), cands[0])
        return chosen[0], chosen[1]
    for r in range(12):
        if {r, (r + 3) % 12, (r + 6) % 12} <= pcs:
            return (r - 4) % 12, "maj"
    if prev is not None:
        prev_pcs = next(t[2] for t in _TRIADS if (t[0], t[1]) == prev)
        if len(pcs - prev_pcs) <= 1 and pcs & prev_pcs:
            return prev
    thirds = [
        t
        for t in _TRIADS
        if pcs <= t[2] and t[0] in pcs and (t[0] + (4 if t[1] == "maj" else 3)) % 12 in pcs
    ]
    if thirds:
        chosen = next((t for t in thirds if t[0] == bass), thirds[0])
        return chosen[0], chosen[1]
    return None


def chord_segments(
    notes: Sequence[tuple[float, float, int]], end: float, min_dur: float = 0.0
) -> list[tuple[float, float, str]]:
    """Chord labels of a note list: ``[(start, end, harte)]`` covering ``[0, end]``.

    ``notes`` are ``(onset, offset, midi)`` in any time unit. The time line is cut at every
    note boundary (a vertical slice, as in music21's ``chordify``) and each slice labelled
    by :func:`slice_chord`; silence is ``N``. Equal neighbours are merged; segments shorter
    than ``min_dur`` are absorbed into the previous one.
    """
    if not notes:
        return [(0.0, float(end), "N")]
    arr = np.asarray([(a, b, p) for a, b, p in notes if b > a], dtype=float)
    bounds = np.unique(np.concatenate([[0.0, end], arr[:, 0], arr[:, 1]]))
    bounds = bounds[(bounds >= 0) & (bounds <= end)]
    segs: list[tuple[float, float, str]] = []
    prev: tuple[int, str] | None = None
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        mid = 0.5 * (a + b)
        sounding = arr[(arr[:, 0] <= mid) & (arr[:, 1] > mid)]
        if len(sounding) == 0:
            label, prev = "N", None
        else:
            pcs = frozenset(int(p) % 12 for p in sounding[:, 2])
            bass = int(sounding[:, 2].min()) % 12
            prev = slice_chord(pcs, bass, prev)
            label = chord_name(*prev) if prev else "N"
        if segs and segs[-1][2] == label and abs(segs[-1][1] - a) < 1e-9:
            segs[-1] = (segs[-1][0], float(b), label)
        else:
            segs.append((float(a), float(b), label))
    if min_dur > 0 and len(segs) > 1:
        merged: list[tuple[float, float, str]] = [segs[0]]
        for s in segs[1:]:
            if s[1] - s[0] < min_dur or merged[-1][2] == s[2]:
                merged[-1] = (merged[-1][0], s[1], merged[-1][2])
            else:
                merged.append(s)
        segs = merged
    return segs


def merge_onsets(times: Sequence[float], window: float = 0.03) -> np.ndarray:
    """Sorted onset times with any onset closer than ``window`` to the previous kept one
    dropped (a chord's notes, humanised apart by a few ms, are one onset)."""
    out: list[float] = []
    for t in sorted(times):
        if not out or t - out[-1] >= window:
            out.append(float(t))
    return np.asarray(out)


def tempo_class(bpm: float) -> str:
    """``slow`` below 80 BPM, ``fast`` from 120 BPM, ``moderate`` between."""
    if bpm < 80:
        return "slow"
    if bpm >= 120:
        return "fast"
    return "moderate"


def ensemble_tag(n_players: int) -> str:
    if n_players <= 1:
        return "solo"
    if n_players == 2:
        return "duo"
    if n_players <= 4:
        return "small_ensemble"
    return "large_ensemble"


# ---------------------------------------------------------------------- annotation files


def _atomic_text(path: Path, text: str) -> None:
    atomic.write_text(path, text, fsync=False)  # one file per render (see write_audio)


def write_intervals(path: Path, segments: Sequence[tuple[float, float, str]]) -> None:
    """A ``.lab`` file (start, end, label; tab separated) for
    ``mir_eval.io.load_labeled_intervals``. Times are written to 0.1 ms; a segment shorter
    than that is dropped, so every written interval has a positive length."""
    lines = []
    for a, b, lab in segments:
        a4, b4 = round(a, 4), round(b, 4)
        if b4 > a4:
            lines.append(f"{a4:.4f}\t{b4:.4f}\t{lab}\n")
    _atomic_text(path, "".join(lines))


def write_events(path: Path, times: Sequence[float], header: str = "") -> None:
    """A one-column text file of times in seconds for ``mir_eval.io.load_events``."""
    head = f"# {header}\n" if header else ""
    _atomic_text(path, head + "".join(f"{t:.4f}\n" for t in times))
