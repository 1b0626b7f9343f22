"""The instrument palette: who plays each part of a rendered score.

The palette is TinySOL-like: the 14 instruments of TinySOL (tuba,
French horn, trombone, trumpet, accordion, contrabass, violin, viola, cello, bassoon,
clarinet, flute, oboe, alto saxophone) plus piano, organ, guitar and choir. Each instrument
has its playing range (TinySOL's, in MIDI numbers) and one or more General-MIDI programs:
several presets per instrument and per family are what keep instrument tags from being
solved by one fixed spectral envelope (a task must discriminate).

An *ensemble* is a recipe that maps the parts of a score, highest to lowest, onto
instruments: a string quartet, a wind quintet, a brass choir, a choir, a keyboard playing
every part, a solo line over a keyboard, or a free mixture. :func:`assign_ensemble` picks
instruments whose range fits each part (shifting a part by octaves when needed: octaves keep
key and chord labels exact) and returns one channel per part.

Used by :mod:`vit1d.corpus.jobs` and :mod:`vit1d.corpus.records`; shown in
``notebooks/02_corpus.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Instrument:
    """One playable instrument: GM programs (bank 0), family and range (MIDI numbers)."""

    name: str
    family: str
    programs: tuple[int, ...]
    low: int
    high: int
    tinysol: bool = False
    sustained: bool = True


#: The palette. Ranges follow TinySOL's recorded ranges (rounded to the instrument's usual
#: compass); programs are General-MIDI numbers, 0-based, first one the canonical preset.
INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in [
        Instrument("violin", "strings", (40, 110), 55, 96, tinysol=True),
        Instrument("viola", "strings", (41,), 48, 84, tinysol=True),
        Instrument("cello", "strings", (42,), 36, 79, tinysol=True),
        Instrument("contrabass", "strings", (43, 32), 28, 67, tinysol=True),
        Instrument("flute", "woodwinds", (73, 74), 60, 96, tinysol=True),
        Instrument("oboe", "woodwinds", (68, 69), 58, 91, tinysol=True),
        Instrument("clarinet", "woodwinds", (71,), 50, 91, tinysol=True),
        Instrument("bassoon", "woodwinds", (70,), 34, 75, tinysol=True),
        Instrument("alto_sax", "woodwinds", (65, 64, 66), 49, 81, tinysol=True),
        Instrument("trumpet", "brass", (56, 59), 54, 84, tinysol=True),
        Instrument("horn", "brass", (60, 61), 34, 77, tinysol=True),
        Instrument("trombone", "brass", (57,), 40, 72, tinysol=True),
        Instrument("tuba", "brass", (58,), 28, 65, tinysol=True),
        # TimGM6mb's accordion samples are 60-70 cents flat above MIDI 76 (measured with pyin)
        Instrument("accordion", "keyboards", (21, 23), 41, 76, tinysol=True),
        Instrument("piano", "keyboards", (0, 1, 2), 21, 108, sustained=False),
        Instrument("organ", "keyboards", (19, 16, 17, 20), 24, 96),
        Instrument("guitar", "plucked", (24, 25), 40, 84, sustained=False),
        Instrument("choir", "voices", (52, 53), 40, 81),
    ]
}

#: TinySOL's 14 instruments, in a fixed order (the isolated-note tasks use these).
TINYSOL = tuple(name for name, ins in INSTRUMENTS.items() if ins.tinysol)

#: Instruments that can play every part of a score on one channel.
KEYBOARDS = ("piano", "organ", "accordion", "guitar")

#: Ensemble recipes: candidate instruments per part, from the top voice down. A part takes
#: the first candidate of its row whose range fits (after octave shifts); part ``i`` of
#: ``n`` uses the row at the same relative height, so the top part always takes the first
#: row and the bass the last.
ENSEMBLES: dict[str, list[tuple[str, ...]]] = {
    "strings": [
        ("violin",),
        ("violin", "viola"),
        ("viola", "violin"),
        ("cello", "viola"),
        ("cello", "contrabass"),
    ],
    "winds": [
        ("flute", "oboe"),
        ("oboe", "clarinet"),
        ("clarinet", "alto_sax"),
        ("bassoon", "horn"),
        ("bassoon",),
    ],
    "brass": [("trumpet",), ("trumpet", "horn"), ("horn",), ("trombone",), ("tuba", "trombone")],
    "choir": [("choir",)] * 5,
    "mixed": [tuple(INSTRUMENTS)] * 5,
}

#: GM percussion keys used by the drum track.
KICK, SNARE, HIHAT_CLOSED, RIDE = 36, 38, 42, 51


@dataclass(frozen=True)
class Channel:
    """One synthesiser channel: an instrument, its program, gain and octave shift."""

    instrument: str
    program: int
    bank: int = 0
    gain: float = 1.0
    octave_shift: int = 0  # semitones, a multiple of 12

    @property
    def family(self) -> str:
        return INSTRUMENTS[self.instrument].family


def fit_octave(low: int, high: int, ins: Instrument) -> int | None:
    """Octave shift (semitones) that puts ``[low, high]`` inside ``ins``'s range, or None.

    The smallest shift wins; a part wider than the instrument never fits.
    """
    for shift in (0, 12, -12, 24, -24, 36, -36):
        if low + shift >= ins.low and high + shift <= ins.high:
            return shift
    return None


def pick_program(rng: np.random.Generator, ins: Instrument, alt_prob: float) -> int:
    """The canonical program, or with probability ``alt_prob`` one of the alternates."""
    if len(ins.programs) > 1 and rng.random() < alt_prob:
        return int(rng.choice(ins.programs[1:]))
    return ins.programs[0]


def assign_ensemble(
    rng: np.random.Generator,
    ranges: list[tuple[int, int]],
    monophonic: bool,
    alt_prob: float = 0.4,
    keyboard_prob: float = 0.2,
    double_prob: float = 0.3,
) -> tuple[str, list[Channel], list[int]]:
    """Choose who plays each part.

    ``ranges`` holds each part's (lowest, highest) MIDI pitch after transposition, top part
    first. Returns the ensemble name, the channels, and for each part the index of its
    channel. A monophonic work is a solo (or, with ``double_prob``, a melody doubled by a
    second instrument, which the caller plays as an extra channel on the same notes);
    a polyphonic work is played by a keyboard alone (``keyboard_prob``), a solo line over
    a keyboard, or one of :data:`ENSEMBLES`.
    """
    names = list(INSTRUMENTS)
    if monophonic:
        low, high = ranges[0]
        fits = [n for n in names if fit_octave(low, high, INSTRUMENTS[n]) is not None]
        first = str(rng.choice(fits))
        chans = [_channel(rng, first, low, high, alt_prob)]
        if rng.random() < double_prob:
            others = [n for n in fits if n != first]
            second = str(rng.choice(others))
            chans.append(_channel(rng, second, low, high, alt_prob, gain=0.7))
            return "doubled", chans, [0]
        return "solo", chans, [0]

    low = min(r[0] for r in ranges)
    high = max(r[1] for r in ranges)
    u = rng.random()
    if u < keyboard_prob:
        fits = [n for n in KEYBOARDS if fit_octave(low, high, INSTRUMENTS[n]) is not None]
        if fits:
            kb = str(rng.choice(fits))
            return "keyboard", [_channel(rng, kb, low, high, alt_prob)], [0] * len(ranges)
    if u < keyboard_prob + 0.15 and len(ranges) > 1:
        # a solo line on the top part, every other part on one keyboard
        lo2 = min(r[0] for r in ranges[1:])
        hi2 = max(r[1] for r in ranges[1:])
        kbs = [n for n in KEYBOARDS if fit_octave(lo2, hi2, INSTRUMENTS[n]) is not None]
        solos = [
            n
            for n in names
            if n not in KEYBOARDS and fit_octave(*ranges[0], INSTRUMENTS[n]) is not None
        ]
        if kbs and solos:
            solo = _channel(rng, str(rng.choice(solos)), *ranges[0], alt_prob, gain=1.2)
            kb = _channel(rng, str(rng.choice(kbs)), lo2, hi2, alt_prob, gain=0.8)
            return "solo+keyboard", [solo, kb], [0] + [1] * (len(ranges) - 1)
    kind = str(rng.choice(["strings", "winds", "brass", "choir", "mixed", "mixed"]))
    rows = ENSEMBLES[kind]
    chans: list[Channel] = []
    for i, (lo, hi) in enumerate(ranges):
        pos = 0 if len(ranges) == 1 else round(i * (len(rows) - 1) / (len(ranges) - 1))
        row = rows[pos]
        if kind == "mixed":
            row = tuple(rng.permutation(row))
        cands = [n for n in row if fit_octave(lo, hi, INSTRUMENTS[n]) is not None]
        if not cands:  # fall back to anything in the palette that fits
            cands = [n for n in names if fit_octave(lo, hi, INSTRUMENTS[n]) is not None]
        if not cands:
            cands = ["piano"]
        chans.append(_channel(rng, cands[0], lo, hi, alt_prob))
    return kind, chans, list(range(len(ranges)))


def _channel(
    rng: np.random.Generator, name: str, low: int, high: int, alt_prob: float, gain: float = 1.0
) -> Channel:
    ins = INSTRUMENTS[name]
    shift = fit_octave(low, high, ins)
    return Channel(name, pick_program(rng, ins, alt_prob), 0, gain, 0 if shift is None else shift)


def drum_pattern(n_beats: int, compound: bool, beat_index: int) -> list[tuple[float, int, float]]:
    """Drum hits for one beat: ``(fraction of the beat, GM key, velocity 0-1)``.

    Kick on the downbeat (and the middle beat of a 4-beat bar), snare on the other beats,
    closed hi-hat on every beat and its subdivisions (2 per beat, 3 in compound meters).
    """
    hits: list[tuple[float, int, float]] = []
    if beat_index == 0 or (n_beats == 4 and beat_index == 2):
        hits.append((0.0, KICK, 0.95))
    else:
        hits.append((0.0, SNARE, 0.8))
    sub = 3 if compound else 2
    for k in range(sub):
        hits.append((k / sub, HIHAT_CLOSED, 0.55 if k == 0 else 0.35))
    return hits
