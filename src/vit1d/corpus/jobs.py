"""One render job: seeded settings, synthesis, labels and files for one clip.

A job is named by its ``render_id`` (``pretrain/<n>``, ``music/<n>`` or
``notes/<instrument>/<pitch>/<dynamic>``); its random generator is seeded by the corpus seed
and that id alone, so a job gives the same bytes whichever worker runs it and whether the
build ran through or was resumed.

For a music job the settings are drawn in this order: tempo (log-uniform within the preset's
range, narrowed so the fastest notes stay playable), transposition, excerpt start (a bar
line), instrumentation (:func:`vit1d.corpus.palette.assign_ensemble`), drums, timing and
velocity humanisation, room, equalisation and noise. The labels are then computed from the
same note list that is sent to the synthesiser (:mod:`vit1d.corpus.labels`), and the job
writes, in this order, the audio, the annotation files and finally its *record*
(``records/<render_id>.json``: labels, settings, file names; :mod:`vit1d.corpus.records`).
A record exists only once everything it names is complete, which is what makes a build
resumable.

Used by :mod:`vit1d.corpus.build`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vit1d.audio.frontend import SAMPLE_RATE
from vit1d.corpus import effects, labels, records
from vit1d.corpus.palette import INSTRUMENTS, TINYSOL, Channel, assign_ensemble, drum_pattern
from vit1d.corpus.palette import INSTRUMENTS as _I
from vit1d.corpus.render import Note, Program, get_synth, write_audio
from vit1d.corpus.scores import stable_hash

#: Velocities (0-1) of the dynamics of the isolated-note set.
DYNAMICS = {"pp": 0.22, "p": 0.38, "mf": 0.58, "f": 0.78, "ff": 1.0}
DRUM_CHANNEL = 9
TAIL_S = 1.0  # release kept after the last note when a work ends inside a clip


def job_rng(seed: int, render_id: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), stable_hash("render", render_id)])


def _uniform(rng: np.random.Generator, lo_hi: list[float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


# ----------------------------------------------------------------------------- settings


def tempo_range(work: dict[str, Any], cfg: dict[str, Any]) -> tuple[float, float]:
    """The BPM range for a work: the preset's range, capped so that the shortest common
    notes (10th percentile of durations) last at least ``min_note_s``."""
    lo, hi = cfg["tempo_bpm"]
    beat = _main_beat(work)
    durs = np.concatenate([np.asarray(p)[:, 1] for p in work["parts"]])
    short = float(np.percentile(durs, 10))
    cap = 60.0 * short / (cfg["min_note_s"] * beat)
    hi = max(min(hi, cap), lo * 1.15)
    return float(lo), float(hi)


def _main_beat(work: dict[str, Any]) -> float:
    ms = work["measures"]
    if not ms:
        return 1.0
    beats = [m[5] for m in ms]
    return float(max(set(beats), key=beats.count))


def plan_music(
    work: dict[str, Any], render_id: str, seed: int, cfg: dict[str, Any], clip_s: float
) -> dict[str, Any]:
    """Draw the settings of one music render (everything random about it)."""
    rng = job_rng(seed, render_id)
    r = cfg["render"]
    fx = cfg["effects"]
    lo, hi = tempo_range(work, r)
    bpm = round(math.exp(rng.uniform(math.log(lo), math.log(hi))), 2)
    beat = _main_beat(work)
    sec_per_q = 60.0 / (bpm * beat)
    transpose = int(rng.integers(r["transpose"][0], r["transpose"][1] + 1))
    clip_q = clip_s / sec_per_q
    starts = [0.0]
    if work["measures"]:
        starts = [m[0] for m in work["measures"] if m[0] <= max(0.0, work["length"] - clip_q)]
        starts = starts or [0.0]
    start_q = 0.0 if rng.random() < 0.25 else float(rng.choice(starts))
    end_q = min(start_q + clip_q, work["length"])
    parts = excerpt_parts(work, start_q, end_q)
    keep = [i for i, p in enumerate(parts) if len(p)]
    if not keep:  # an excerpt of pure rests: start at the top
        start_q, end_q = 0.0, min(clip_q, work["length"])
        parts = excerpt_parts(work, start_q, end_q)
        keep = [i for i, p in enumerate(parts) if len(p)]
    ranges, monophonic = ensemble_inputs([parts[i] for i in keep], transpose)
    ensemble, channels, part_channel = draw_ensemble(rng, ranges, monophonic, r)
    drums = bool(work["measures"]) and rng.random() < r["drums_prob"]
    humanize_ms = _uniform(rng, r["humanize_ms"])
    settings: dict[str, Any] = {
        "bpm": bpm,
        "beat_q": beat,
        "transpose": transpose,
        "start_q": round(start_q, 6),
        "end_q": round(end_q, 6),
        "ensemble": ensemble,
        "channels": [c.__dict__ for c in channels],
        "part_channel": part_channel,
        "parts_used": keep,
        "drums": drums,
        "humanize_ms": round(humanize_ms, 3),
        "velocity": [round(float(v), 3) for v in rng.uniform(0.5, 0.9, size=len(channels))],
        "velocity_jitter": r["velocity_jitter"],
    }
    settings.update(_plan_effects(rng, fx))
    settings["noise_seed"] = int(rng.integers(0, 2**31 - 1))
    return settings


def excerpt_parts(work: dict[str, Any], start_q: float, end_q: float) -> list[np.ndarray]:
    """The note events ``(onset_q, duration_q, midi)`` of every part of ``work`` whose onsets
    lie in ``[start_q, end_q)``."""
    out = []
    for p in work["parts"]:
        arr = np.asarray(p, dtype=float)
        out.append(arr[(arr[:, 0] >= start_q - 1e-9) & (arr[:, 0] < end_q - 1e-9)])
    return out


def ensemble_inputs(parts: list[np.ndarray], transpose: int) -> tuple[list[tuple[int, int]], bool]:
    """What :func:`draw_ensemble` needs of the parts an excerpt plays: each one's transposed
    (lowest, highest) pitch, and whether the excerpt is a single monophonic line."""
    ranges = [(int(p[:, 2].min()) + transpose, int(p[:, 2].max()) + transpose) for p in parts]
    return ranges, len(parts) == 1 and _max_polyphony(parts[0]) <= 1


def draw_ensemble(
    rng: np.random.Generator,
    ranges: list[tuple[int, int]],
    monophonic: bool,
    render: dict[str, Any],
) -> tuple[str, list[Channel], list[int]]:
    """:func:`assign_ensemble` with the probabilities of a preset's ``render`` section."""
    return assign_ensemble(
        rng,
        ranges,
        monophonic,
        alt_prob=render["alt_program_prob"],
        keyboard_prob=render["keyboard_prob"],
        double_prob=render["double_prob"],
    )


def _plan_effects(rng: np.random.Generator, fx: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"reverb_rt60": 0.0, "reverb_wet": 0.0}
    if rng.random() < fx["reverb_prob"]:
        out["reverb_rt60"] = round(_uniform(rng, fx["rt60"]), 3)
        out["reverb_wet"] = round(_uniform(rng, fx["wet"]), 3)
    out["highpass_hz"] = 0.0
    out["lowpass_hz"] = 0.0
    if rng.random() < fx["eq_prob"]:
        out["highpass_hz"] = round(float(np.exp(rng.uniform(np.log(30), np.log(250)))), 1)
        out["lowpass_hz"] = round(float(np.exp(rng.uniform(np.log(2500), np.log(7500)))), 1)
    out["noise"] = "none"
    out["snr_db"] = 0.0
    if rng.random() < fx["noise_prob"]:
        out["noise"] = str(rng.choice(["white", "pink"]))
        out["snr_db"] = round(_uniform(rng, fx["snr_db"]), 2)
    return out


def _max_polyphony(events: np.ndarray) -> int:
    if len(events) == 0:
        return 0
    on = events[:, 0]
    off = events[:, 0] + events[:, 1]
    times = np.concatenate([on, off - 1e-6])
    steps = np.concatenate([np.ones(len(on)), -np.ones(len(off))])
    order = np.argsort(times, kind="stable")
    return int(np.max(np.cumsum(steps[order])))


# ---------------------------------------------------------------------------- execution


def music_notes(
    work: dict[str, Any], s: dict[str, Any], seed: int, render_id: str
) -> tuple[list[Note], list[tuple[float, float, int]], list[float], float]:
    """The notes of a planned render.

    Returns (notes to synthesise, nominal ``(on, off, key)`` of the pitched notes in
    seconds for chord labels, actual onset times of every note incl. drums, music length
    in seconds). Timing humanisation is a per-note Gaussian shift (``humanize_ms``,
    clipped at 2.5 sigma); velocities get a uniform jitter around each channel's level.
    """
    # a twin that keeps its original's production keeps its humanisation too (corpus.twins)
    rng = np.random.default_rng([int(seed), stable_hash("notes", s.get("notes_id", render_id))])
    sec_per_q = 60.0 / (s["bpm"] * s["beat_q"])
    start_q, end_q = s["start_q"], s["end_q"]
    channels = [Channel(**c) for c in s["channels"]]
    sigma = s["humanize_ms"] / 1000.0
    notes: list[Note] = []
    nominal: list[tuple[float, float, int]] = []
    onsets: list[float] = []
    for part_idx, ch_idx in zip(s["parts_used"], s["part_channel"], strict=True):
        arr = np.asarray(work["parts"][part_idx], dtype=float)
        arr = arr[(arr[:, 0] >= start_q - 1e-9) & (arr[:, 0] < end_q - 1e-9)]
        # every channel that plays this part (a doubled melody has two)
        chans = [ch_idx] if s["ensemble"] != "doubled" else list(range(len(channels)))
        for ci in chans:
            ch = channels[ci]
            synth_ch = ci if ci < DRUM_CHANNEL else ci + 1
            for on_q, dur_q, midi in arr:
                on = (on_q - start_q) * sec_per_q
                off = (min(on_q + dur_q, end_q) - start_q) * sec_per_q
                key = int(midi) + s["transpose"] + ch.octave_shift
                jit = (
                    float(np.clip(rng.normal(0, sigma), -2.5 * sigma, 2.5 * sigma))
                    if sigma
                    else 0.0
                )
                vel = s["velocity"][ci] + rng.uniform(-1, 1) * s["velocity_jitter"]
                t_on = max(0.0, on + jit)
                notes.append(Note(t_on, max(t_on + 0.03, off + jit), key, float(vel), synth_ch))
                onsets.append(t_on)
                if ci == ch_idx:
                    nominal.append((on, off, key))
    length = (end_q - start_q) * sec_per_q
    if s["drums"]:
        beats, _down, _lens, idx = labels.beat_grid(work["measures"], start_q, end_q)
        bar_beats = _bar_beats(work["measures"], beats)
        for b, k, nb in zip(beats, idx, bar_beats, strict=True):
            compound = abs(s["beat_q"] - 1.5) < 1e-6 or abs(s["beat_q"] - 3.0) < 1e-6
            for frac, key, vel in drum_pattern(nb, compound, int(k)):
                t = (b - start_q + frac * s["beat_q"]) * sec_per_q
                if t >= length:
                    continue
                t += float(rng.normal(0, 0.002))
                t = max(0.0, t)
                notes.append(Note(t, t + 0.1, key, vel, DRUM_CHANNEL))
                onsets.append(t)
    return notes, nominal, onsets, length


def _bar_beats(measures: list[list[float]], beats: np.ndarray) -> list[int]:
    """Number of beats in the bar (full bar, from its time signature) of each beat."""
    out = []
    for b in beats:
        nb = 4
        for off, dur, _pad, num, _den, beat in measures:
            if off - 1e-9 <= b < off + dur - 1e-9:
                bar = num * 4.0 / _den
                nb = max(1, int(round(bar / beat)))
                break
        out.append(nb)
    return out


def plain(s: dict[str, Any], instrument: str | None = "piano", drums: bool | None = None) -> dict:
    """A copy of planned settings with no room, EQ or noise, optionally every part played by
    one ``instrument`` and drums forced on or off: the label checks use it."""
    s = dict(s)
    if instrument is not None:
        s["channels"] = [Channel(instrument, _I[instrument].programs[0]).__dict__]
        s["part_channel"] = [0] * len(s["parts_used"])
        s["ensemble"] = "keyboard"
    if drums is not None:
        s["drums"] = drums
    s.update(reverb_rt60=0.0, reverb_wet=0.0, highpass_hz=0.0, lowpass_hz=0.0, noise="none")
    return s


def run_music(
    root: Path,
    render_id: str,
    work: dict[str, Any],
    split: str,
    seed: int,
    cfg: dict[str, Any],
    clip_s: float,
    soundfont: str,
    audio_ext: str = "flac",
    adjust: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    channels: set[int] | None = None,
    settings: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Plan, render and label one excerpt of ``work``; writes files and returns the record.

    ``adjust`` may rewrite the planned settings and ``channels`` keep only the notes of
    some synthesiser channels (9: the drum track) in the audio; the label checks use both
    (:func:`plain`) to test the written labels against simpler audio. ``settings`` replaces
    the plan (a twin's, :mod:`vit1d.corpus.twins`) and ``extra`` adds keys to the record.
    """
    s = plan_music(work, render_id, seed, cfg, clip_s) if settings is None else settings
    if adjust is not None:
        s = adjust(s)
    notes, nominal, onsets, length = music_notes(work, s, seed, render_id)
    if channels is not None:
        notes = [n for n in notes if n.channel in channels]
    ends_inside = s["end_q"] >= work["length"] - 1e-6
    duration = min(clip_s, length + TAIL_S) if ends_inside else min(clip_s, length)
    duration = max(duration, 1.0)
    audio = synthesize(s, notes, duration, soundfont, cfg)
    audio = finish_audio(audio, s, cfg)

    rel_audio = f"audio/{render_id}.{audio_ext}"
    write_audio(root / rel_audio, audio)
    rec = records.music_record(
        root, render_id, work, split, s, nominal, onsets, duration, len(audio)
    )
    rec["audio"] = rel_audio
    rec.update(extra or {})
    records.write_record(root, render_id, rec)
    return rec


def synthesize(
    s: dict[str, Any], notes: list[Note], duration: float, soundfont: str, cfg: dict[str, Any]
) -> np.ndarray:
    """Dry synthesis of planned notes (no room, EQ, noise or loudness yet)."""
    synth = get_synth(soundfont, cfg["render_rate"])
    programs: dict[int, Program] = {}
    for ci, c in enumerate(s["channels"]):
        synth_ch = ci if ci < DRUM_CHANNEL else ci + 1
        programs[synth_ch] = Program(c["program"], c["bank"], False, min(1.0, 0.8 * c["gain"]))
    if s.get("drums"):
        programs[DRUM_CHANNEL] = Program(0, 128, True, 0.7)
    return synth.render(programs, notes, duration)


def finish_audio(audio: np.ndarray, s: dict[str, Any], cfg: dict[str, Any]) -> np.ndarray:
    """Room, EQ, noise, fades and loudness normalisation, seeded by the plan."""
    rng = np.random.default_rng(s["noise_seed"])
    sr = SAMPLE_RATE
    y = effects.reverb(audio, sr, s["reverb_rt60"], s["reverb_wet"], rng)
    y = effects.equalise(y, sr, s["highpass_hz"], s["lowpass_hz"])
    y = effects.add_noise(y, s["snr_db"], s["noise"], rng)
    y = effects.fade(y, sr)
    return effects.normalise_loudness(y, cfg["effects"]["loudness_dbfs"])


# ------------------------------------------------------------------------ isolated notes


def note_jobs(cfg: dict[str, Any]) -> list[tuple[str, str, int, str]]:
    """Every isolated note to render: ``(render_id, instrument, midi, dynamic)``.

    Each of the 14 TinySOL instruments over its range, every ``pitch_step`` semitones
    (offset per instrument so all pitch classes occur), at each listed dynamic.
    """
    out = []
    step = int(cfg["pitch_step"])
    for k, name in enumerate(TINYSOL):
        ins = INSTRUMENTS[name]
        for midi in range(ins.low + (k % step), ins.high + 1, step):
            for dyn in cfg["dynamics"]:
                out.append((f"notes/{name}/{midi}/{dyn}", name, midi, dyn))
    return out


def run_note(
    root: Path,
    render_id: str,
    instrument: str,
    midi: int,
    dynamic: str,
    split: str,
    seed: int,
    cfg: dict[str, Any],
    soundfont: str,
    audio_ext: str = "flac",
) -> dict[str, Any]:
    """Render one isolated note (TinySOL-like): held ``note_s`` seconds, then released."""
    rng = job_rng(seed, render_id)
    ncfg = cfg["notes"]
    ins = INSTRUMENTS[instrument]
    hold = _uniform(rng, ncfg["hold_s"])
    duration = float(ncfg["clip_s"])
    fx = dict(cfg["effects"])
    fx["noise_prob"] = min(fx["noise_prob"], 0.3)
    s: dict[str, Any] = {"channels": [Channel(instrument, ins.programs[0]).__dict__]}
    s.update(_plan_effects(rng, fx))
    s["noise_seed"] = int(rng.integers(0, 2**31 - 1))
    onset = float(rng.uniform(0.05, 0.25))
    vel = DYNAMICS[dynamic]
    note = Note(onset, onset + hold, int(midi), vel, 0)
    audio = synthesize(s, [note], duration, soundfont, cfg)
    audio = finish_audio(audio, s, cfg)
    rel_audio = f"audio/{render_id}.{audio_ext}"
    write_audio(root / rel_audio, audio)
    rec = {
        "render_id": render_id,
        "kind": "notes",
        "work": f"note:{instrument}:{midi}",
        "split": split,
        "audio": rel_audio,
        "duration": duration,
        "n_samples": int(len(audio)),
        "labels": {
            "pitch": int(midi),
            "instrument": instrument,
            "dynamic": dynamic,
            "onset": round(onset, 4),
            "hold_s": round(hold, 4),
        },
        "annotations": {},
        "settings": {
            "collection": "isolated_notes",
            "style": "isolated_note",
            "ensemble": "solo",
            "instrumentation": instrument,
            "programs": str(ins.programs[0]),
            "banks": "0",
            "octave_shifts": "0",
            "render_bpm": 0.0,
            "transpose": 0,
            "start_q": 0.0,
            "drums": 0,
            "humanize_ms": 0.0,
            "reverb_rt60": s["reverb_rt60"],
            "reverb_wet": s["reverb_wet"],
            "highpass_hz": s["highpass_hz"],
            "lowpass_hz": s["lowpass_hz"],
            "noise": s["noise"],
            "snr_db": s["snr_db"],
        },
    }
    records.write_record(root, render_id, rec)
    return rec
