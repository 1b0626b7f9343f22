"""In-process General-MIDI synthesis, and audio files on disk.

Two renderers with one interface turn note events (seconds, MIDI key, velocity, channel) into
a mono waveform: :class:`Synth` (TinySoundFont, fast) and :class:`NumpySynth` (the NumPy
SoundFont renderer of :mod:`vit1d.corpus.sf2`, used when TinySoundFont cannot be imported:
its releases declare PyAudio, which often cannot be installed). ``VIT1D_RENDERER=numpy`` or
``tinysoundfont`` picks one; :func:`renderer_version`, recorded in ``corpus.json``, names the
one that rendered. Both render at ``render_rate`` (32 kHz by default: they interpolate
samples without band-limiting, and rendering above the target rate keeps the aliasing out of
the 0-8 kHz band) and resample to 16 kHz with soxr. Every render starts from silence, so the
same events always give the same samples.

The SoundFont is a setting, never a requirement: ``None`` means the small GM SoundFont
that ships with ``pretty_midi`` (``TimGM6mb.sf2``); any ``.sf2`` path works (``.sf3``, whose
samples are compressed, with TinySoundFont only).

Audio is written as 16-bit FLAC (or WAV) through a temporary name and ``os.replace``, so an
interrupted build never leaves a half-written file under a final name.

Used by :mod:`vit1d.corpus.jobs`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import soundfile
import soxr

from vit1d.audio.frontend import SAMPLE_RATE
from vit1d.core import atomic
from vit1d.core.errors import UserError
from vit1d.corpus import sf2

INSTALL_HINT = (
    'the corpus builder, `pip install "vit1d[corpus]"`, renders with its NumPy renderer; for the '
    "faster TinySoundFont renderer add `pip install --no-deps tinysoundfont` (it declares "
    "PyAudio, which needs PortAudio's headers and which offline rendering never uses)"
)
RENDERERS = ("tinysoundfont", "numpy")


def default_soundfont() -> Path:
    """``TimGM6mb.sf2`` from the ``pretty_midi`` package."""
    try:
        import pretty_midi
    except ImportError:
        raise UserError(
            "no SoundFont given and pretty_midi (which ships TimGM6mb.sf2) is not installed: "
            'pass --soundfont PATH.sf2, or `pip install "vit1d[corpus]"`'
        ) from None
    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def resolve_soundfont(path: str | os.PathLike[str] | None) -> Path:
    """The SoundFont to use, checked to exist and be readable (else :class:`UserError`)."""
    sf = default_soundfont() if path in (None, "") else Path(path).expanduser()
    if not sf.is_file():
        raise UserError(
            f"SoundFont not found: {sf}. Pass --soundfont PATH to a General-MIDI .sf2 file, "
            "or leave it unset to use TimGM6mb.sf2 from pretty_midi"
        )
    if not os.access(sf, os.R_OK):
        raise UserError(f"SoundFont {sf} is not readable; fix its permissions")
    return sf.resolve()


def _tinysoundfont_imports() -> bool:
    try:
        import tinysoundfont._tinysoundfont  # noqa: F401
    except ImportError:
        return False
    return True


def renderer_name() -> str:
    """The renderer :func:`get_synth` uses: ``VIT1D_RENDERER`` if set (``numpy`` or
    ``tinysoundfont``), else TinySoundFont when it imports and the NumPy renderer otherwise."""
    choice = os.environ.get("VIT1D_RENDERER", "").strip().lower()
    if choice and choice not in RENDERERS:
        raise UserError(
            f"VIT1D_RENDERER={choice!r} is not a renderer: use one of {', '.join(RENDERERS)}, "
            "or leave it unset (TinySoundFont when installed, else NumPy)"
        )
    if choice == "numpy":
        return "numpy"
    if _tinysoundfont_imports():
        return "tinysoundfont"
    if choice == "tinysoundfont":
        raise UserError(
            f"VIT1D_RENDERER=tinysoundfont but tinysoundfont is not installed: {INSTALL_HINT}"
        )
    return "numpy"


def renderer_version() -> str:
    """Which renderer renders, and its version (recorded in ``corpus.json``)."""
    if renderer_name() == "numpy":
        return f"vit1d NumPy SoundFont renderer {sf2.VERSION} (numpy {np.__version__})"
    try:
        return f"tinysoundfont {version('tinysoundfont')}"
    except PackageNotFoundError:
        return "tinysoundfont (unknown version)"


def note_spans(
    notes: Sequence[Note], n_total: int, sr: int
) -> list[tuple[int, int, int, int, float]]:
    """(on, off, channel, key, velocity) in samples, sorted: the note-off moves earlier when
    the same key on the same channel is struck again, notes starting after ``n_total`` or
    ending before they start are dropped, and offs stop at ``n_total``."""
    spans = []
    by_key: dict[tuple[int, int], list[Note]] = {}
    for nt in notes:
        by_key.setdefault((nt.channel, nt.key), []).append(nt)
    for (ch, key), seq in by_key.items():
        seq.sort(key=lambda n: n.start)
        for i, nt in enumerate(seq):
            on = int(round(nt.start * sr))
            off = int(round(nt.end * sr))
            if i + 1 < len(seq):
                off = min(off, int(round(seq[i + 1].start * sr)))
            if on >= n_total or off <= on:
                continue
            spans.append((on, min(off, n_total), ch, key, float(nt.velocity)))
    return sorted(spans)


@dataclass(frozen=True)
class Note:
    """One note to synthesise: times in seconds, velocity in 0-1."""

    start: float
    end: float
    key: int
    velocity: float
    channel: int


@dataclass(frozen=True)
class Program:
    """What a channel plays: GM bank and program, drum kit or not, channel volume."""

    program: int
    bank: int = 0
    drums: bool = False
    volume: float = 1.0


class Synth:
    """A TinySoundFont synthesiser bound to one SoundFont file (the fast renderer)."""

    def __init__(self, soundfont: str | os.PathLike[str], render_rate: int = 32000):
        try:
            import tinysoundfont._tinysoundfont as tsf
        except ImportError:
            raise UserError(f"tinysoundfont is not installed: {INSTALL_HINT}") from None
        self._tsf = tsf
        self.path = Path(soundfont)
        self.render_rate = int(render_rate)
        try:
            self._sf = tsf.SoundFont(str(self.path))
        except Exception as exc:
            raise UserError(
                f"cannot load SoundFont {self.path}: {exc}. Is it a valid .sf2 file?"
            ) from None
        self._sf.set_output(tsf.OutputMode.Mono, self.render_rate, 0.0)
        self._sf.set_max_voices(256)

    def preset_name(self, program: int, bank: int = 0) -> str | None:
        name = self._sf.get_preset_name(bank, program)
        return None if name == "<None>" else name

    def render(
        self,
        programs: dict[int, Program],
        notes: Sequence[Note],
        duration: float,
        out_rate: int = SAMPLE_RATE,
    ) -> np.ndarray:
        """Synthesise ``notes`` for ``duration`` seconds; returns mono float32 at ``out_rate``.

        A note-off is moved earlier when the same key on the same channel is struck again
        before it, so a repeated note is never silenced by its predecessor's release.
        """
        sf = self._sf
        # tsf_reset only fast-releases voices still sounding from the previous render;
        # render those few milliseconds away so every render starts from silence
        sf.reset()
        flush = np.zeros(self.render_rate // 5, dtype=np.float32)
        sf.render(memoryview(flush).cast("B"), False)
        sf.reset()
        for ch, prog in programs.items():
            if prog.drums:
                sf.channel_set_bank(ch, 128)
                sf.channel_set_preset_number(ch, prog.program, True)
            else:
                sf.channel_set_bank(ch, prog.bank)
                sf.channel_set_preset_number(ch, prog.program, False)
            sf.channel_set_volume(ch, float(prog.volume))
        sr = self.render_rate
        n_total = int(round(duration * sr))
        events: list[tuple[int, int, int, int, float]] = []  # sample, kind, channel, key, vel
        for on, off, ch, key, vel in note_spans(notes, n_total, sr):
            events.append((on, 1, ch, key, vel))
            events.append((off, 0, ch, key, 0.0))
        events.sort()
        out = np.zeros(n_total, dtype=np.float32)
        pos = 0
        for sample, kind, ch, key, vel in events:
            if sample > pos:
                sf.render(memoryview(out[pos:sample]).cast("B"), False)
                pos = sample
            if kind:
                sf.channel_note_on(ch, key, min(max(vel, 0.0), 1.0))
            else:
                sf.channel_note_off(ch, key)
        if pos < n_total:
            sf.render(memoryview(out[pos:]).cast("B"), False)
        return _resample(out, sr, out_rate)


def _resample(out: np.ndarray, sr: int, out_rate: int) -> np.ndarray:
    if out_rate == sr:
        return out.astype(np.float32, copy=False)
    return soxr.resample(out, sr, out_rate, quality="HQ").astype(np.float32)


@dataclass
class _Voice:
    """One zone of one note: its start, length held, channel gain, and an exclusive-class cut."""

    note: int
    on: int
    held: int
    key: int
    velocity: float
    gain: float
    preset: int
    zone: sf2.Zone
    cut: int | None = None


class NumpySynth:
    """The NumPy SoundFont renderer (:mod:`vit1d.corpus.sf2`) with :class:`Synth`'s interface.

    Slower than TinySoundFont (see the README) and without its LFOs and modulators; same
    pitch, envelopes, filter, levels and note-off rule.
    """

    def __init__(self, soundfont: str | os.PathLike[str], render_rate: int = 32000):
        self.path = Path(soundfont)
        self.render_rate = int(render_rate)
        try:
            self._sf = sf2.SoundFont(self.path)
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot load SoundFont {self.path}: {exc}. Is it a valid .sf2 file?"
            ) from None

    def preset_name(self, program: int, bank: int = 0) -> str | None:
        return self._sf.preset_name(bank, program)

    def render(
        self,
        programs: dict[int, Program],
        notes: Sequence[Note],
        duration: float,
        out_rate: int = SAMPLE_RATE,
    ) -> np.ndarray:
        """Synthesise ``notes`` for ``duration`` seconds; returns mono float32 at ``out_rate``.

        Same note-off rule as :meth:`Synth.render`; notes on channels missing from
        ``programs`` are not played.
        """
        sr = self.render_rate
        n_total = int(round(duration * sr))
        out = np.zeros(n_total, dtype=np.float64)
        for v in self._voices(programs, notes, n_total, sr):
            y = self._sf.render_voice(
                v.zone, v.key, v.velocity, v.held, n_total - v.on, sr, cut=v.cut
            )
            out[v.on : v.on + len(y)] += v.gain * y
        return _resample(out.astype(np.float32), sr, out_rate)

    def _voices(
        self, programs: dict[int, Program], notes: Sequence[Note], n_total: int, sr: int
    ) -> list[_Voice]:
        """The voices of ``notes``; a note whose zone has an exclusive class cuts the sounding
        voices of that class in the same preset (SF2 exclusiveClass)."""
        presets = {
            ch: self._sf.find_preset(128 if p.drums else p.bank, p.program, p.drums)
            for ch, p in programs.items()
        }
        voices: list[_Voice] = []
        for i, (on, off, ch, key, vel) in enumerate(note_spans(notes, n_total, sr)):
            if ch not in presets or vel <= 0:
                continue
            vel = min(vel, 1.0)
            for zone in self._sf.zones(presets[ch], key, int(vel * 127)):
                group = zone.gens.get(sf2.EXCLUSIVE_CLASS, 0)
                for v in voices:
                    if group and v.cut is None and v.note != i and v.preset == presets[ch]:
                        if v.zone.gens.get(sf2.EXCLUSIVE_CLASS, 0) == group:
                            v.cut = on - v.on
                gain = max(float(programs[ch].volume), 0.0)
                voices.append(_Voice(i, on, off - on, key, vel, gain, presets[ch], zone))
        return voices


_SYNTHS: dict[tuple[str, str, int], Synth | NumpySynth] = {}


def get_synth(soundfont: str | os.PathLike[str], render_rate: int) -> Synth | NumpySynth:
    """One synthesiser per renderer, SoundFont and rate per process (loading costs a little):
    TinySoundFont when it imports, else NumPy; ``VIT1D_RENDERER`` forces one."""
    name = renderer_name()
    key = (name, str(soundfont), int(render_rate))
    if key not in _SYNTHS:
        cls = NumpySynth if name == "numpy" else Synth
        _SYNTHS[key] = cls(soundfont, render_rate)
    return _SYNTHS[key]


def write_audio(path: Path, audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write 16-bit mono FLAC or WAV (by extension) atomically."""
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
    # no fsync: thousands of files per corpus, and a kill needs only the rename
    with atomic.replacing(path, fsync=False) as tmp:
        soundfile.write(str(tmp), pcm, sr, format=fmt, subtype="PCM_16")
