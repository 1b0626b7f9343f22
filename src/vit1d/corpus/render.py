"""In-process General-MIDI synthesis with TinySoundFont, and audio files on disk.

:class:`Synth` turns note events (seconds, MIDI key, velocity, channel) into a mono
waveform: it renders at ``render_rate`` (32 kHz by default: TinySoundFont interpolates
samples without band-limiting, and rendering above the target rate keeps its aliasing
out of the 0-8 kHz band) and resamples to 16 kHz with soxr. Every render starts from a
reset synthesiser, so the same events always give the same samples.

The SoundFont is a setting, never a requirement: ``None`` means the small GM SoundFont
that ships with ``pretty_midi`` (``TimGM6mb.sf2``); any ``.sf2``/``.sf3`` path works.

Audio is written as 16-bit FLAC (or WAV) through a temporary name and ``os.replace``, so an
interrupted build never leaves a half-written file under a final name.

Used by :mod:`vit1d.corpus.jobs`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vit1d.errors import UserError
from vit1d.frontend import SAMPLE_RATE

INSTALL_HINT = (
    'install the corpus builder with `pip install "vit1d[corpus]"` and the renderer with '
    "`pip install --no-deps tinysoundfont` (it declares PyAudio, which needs PortAudio's "
    "headers and which offline rendering never uses)"
)


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


def renderer_version() -> str:
    try:
        from importlib.metadata import version

        return f"tinysoundfont {version('tinysoundfont')}"
    except Exception:
        return "tinysoundfont (unknown version)"


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
    """A TinySoundFont synthesiser bound to one SoundFont file."""

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
                events.append((on, 1, ch, key, float(nt.velocity)))
                events.append((min(off, n_total), 0, ch, key, 0.0))
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
        if out_rate != sr:
            import soxr

            out = soxr.resample(out, sr, out_rate, quality="HQ").astype(np.float32)
        return out


_SYNTHS: dict[tuple[str, int], Synth] = {}


def get_synth(soundfont: str | os.PathLike[str], render_rate: int) -> Synth:
    """One :class:`Synth` per SoundFont and rate per process (loading costs a little)."""
    key = (str(soundfont), int(render_rate))
    if key not in _SYNTHS:
        _SYNTHS[key] = Synth(soundfont, render_rate)
    return _SYNTHS[key]


def write_audio(path: Path, audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write 16-bit mono FLAC or WAV (by extension) atomically."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
    sf.write(str(tmp), pcm, sr, format=fmt, subtype="PCM_16")
    os.replace(tmp, path)
