"""A small SoundFont 2 reader and renderer in NumPy, the fallback of :mod:`vit1d.corpus.render`.

TinySoundFont, the fast renderer, cannot always be installed (its releases declare PyAudio);
this module renders the same notes with NumPy and SciPy. It follows the SoundFont 2.04
specification ("SF2 §") and, where that leaves room, TinySoundFont 0.3 (``tsf.h``), so the
two renderers agree in pitch, level and envelopes (sample for sample on most presets).

Reading (SF2 §3 "RIFF Structure", §6 "The sdta-list Chunk", §7 "The pdta-list Chunk"):
``smpl`` as ``int16 / 32767``; the hydra ``phdr/pbag/pgen``, ``inst/ibag/igen`` and ``shdr``
as NumPy record arrays. Zones (§8.5 "Precedence and Absolute and Relative values", §9.4 "The
SoundFont Generator Model"): an instrument zone's generators replace its global zone's, which
replace the defaults of §8.1.3 "Generator Summary"; a preset zone's (over its global zone's)
are *added* to them, except the instrument-only ones (addresses, sampleModes, exclusiveClass,
overridingRootKey); key and velocity ranges intersect; sums are clamped to §8.1.3's ranges.

One zone of a note at output rate ``r`` (generators as in §8.1.2 "Generator Enumerators
Defined"):

* pitch: the read position advances ``2**(((key - root)*scale + cents)/1200) * sr/r`` samples
  per output sample (``root``: overridingRootKey, else the sample's originalPitch; ``scale``:
  scaleTuning; ``cents = 100*coarseTune + fineTune + pitchCorrection``; ``sr``: the sample's
  rate), with linear interpolation;
* loops (§6.2 "Sample Data Looping Rules", sampleModes): 0 plays to the end, 1 loops
  ``[startloop, endloop)``, 3 loops while the key is held, then plays to the end; addresses
  include the zone's fine and coarse offsets;
* volume envelope (times in timecents, ``2**(tc/1200)`` s): linear attack 0 -> 1, hold, then
  decay to the sustain level ``10**(-cB/200)`` and release fall as ``exp(-9.226 t/T)``
  (80 dB in the segment's time ``T``, as TinySoundFont: linear in dB, as the specification);
* gain ``10**(-initialAttenuation/200) * v * volume`` (velocity ``v`` in 0-1, channel
  volume): ``20*log10(127/vel)`` dB of velocity attenuation, as TinySoundFont, where the
  default modulator of §8.4 "Default Modulators" gives ``40*log10(127/vel)`` dB;
* filter: TinySoundFont's two-pole low-pass at initialFilterFc (``8.176*2**(c/1200)`` Hz),
  resonance initialFilterQ, swept with the pitch by the modulation envelope (linear decay
  and release; attack shortened at high velocity); coefficients change per 64-sample block,
  shared by blocks within 25 cents of each other;
* exclusiveClass: a note cuts the sounding notes of its class in the same preset (done by
  :class:`vit1d.corpus.render.NumpySynth`).

Left out: LFOs (vibrato, tremolo), all modulators (§8.4's defaults included: velocity to
filter cut-off, pitch wheel, controllers), pan (mono output: both samples of a stereo pair
summed, as TinySoundFont's mono mode), chorus and reverb, 24-bit (``sm24``) and compressed
SF3 samples (refused), the fixed key and velocity generators, and voice stealing.

Speed: about 10x slower than TinySoundFont on an AMD EPYC (20 s of four voices, 125 notes:
0.3-0.4 s, 50-70x real time, against 0.03-0.06 s), after a first call that imports
``scipy.signal``: each voice is computed as whole NumPy arrays, never sample by sample.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

VERSION = "1"  # of the rendering rules below; recorded in corpus.json through renderer_version

# generator operators (SF2 §8.1.2)
MOD_ENV_TO_PITCH, FILTER_FC, FILTER_Q, MOD_ENV_TO_FC = 7, 8, 9, 11
MOD_ENV, VOL_ENV = 25, 33  # delay, attack, hold, decay, sustain, release, key->hold, key->decay
INSTRUMENT, KEY_RANGE, VEL_RANGE = 41, 43, 44
ATTENUATION, COARSE_TUNE, FINE_TUNE, SAMPLE_ID, SAMPLE_MODES = 48, 51, 52, 53, 54
SCALE_TUNING, EXCLUSIVE_CLASS, ROOT_KEY = 56, 57, 58

#: sample header address -> its fine and coarse (32768 samples) offset generators
ADDRESSES = (("start", 0, 4), ("end", 1, 12), ("loop_start", 2, 45), ("loop_end", 3, 50))
#: defaults other than 0 (SF2 §8.1.3): envelope times -12000 timecents, open filter
DEFAULTS = {FILTER_FC: 13500, SCALE_TUNING: 100, ROOT_KEY: -1, 46: -1, 47: -1}
DEFAULTS.update({env + i: -12000 for env in (MOD_ENV, VOL_ENV) for i in (0, 1, 2, 3, 5)})
#: generators a preset zone may not set (SF2 §8.1.2; ranges and Instrument are handled apart)
INSTRUMENT_ONLY = {0, 1, 2, 3, 4, 12, 45, 46, 47, 50, 53, 54, 57, 58}
#: the ranges sums are clamped to (SF2 §8.1.3)
LIMITS = {FILTER_FC: (1500, 13500), FILTER_Q: (0, 960), ATTENUATION: (0, 1440)}
LIMITS.update({MOD_ENV_TO_PITCH: (-12000, 12000), MOD_ENV_TO_FC: (-12000, 12000)})
_ENV_LIMITS = [(-12000, 5000), (-12000, 8000)] * 2 + [(0, 0), (-12000, 8000)] + [(-1200, 1200)] * 2
LIMITS.update({env + i: lim for env in (MOD_ENV, VOL_ENV) for i, lim in enumerate(_ENV_LIMITS)})
LIMITS.update({MOD_ENV + 4: (0, 1000), VOL_ENV + 4: (0, 1440)})  # sustain levels

BLOCK = 64  # samples per modulation-envelope and filter update (TinySoundFont's block)
NEPERS = 9.226  # exponential segments fall exp(-9.226) = -80 dB in their time
FAST_RELEASE_S = 0.01  # release of a zero release time and of a cut (exclusive class)
FILTER_STEP_CENTS = 25.0


_FIELDS = {  # SF2 §7.2-§7.10: field name, NumPy format, ...
    "phdr": "name S20 program <u2 bank <u2 bag <u2 library <u4 genre <u4 morphology <u4",
    "pbag": "gen <u2 mod <u2",
    "pgen": "op <u2 amount <i2",
    "inst": "name S20 bag <u2",
    "ibag": "gen <u2 mod <u2",
    "igen": "op <u2 amount <i2",
    "shdr": "name S20 start <u4 end <u4 loop_start <u4 loop_end <u4 rate <u4 pitch u1 "
    "correction i1 link <u2 type <u2",
}
HYDRA = {
    k: np.dtype({"names": f.split()[::2], "formats": f.split()[1::2]}) for k, f in _FIELDS.items()
}


@dataclass(frozen=True)
class Zone:
    """One resolved (preset x instrument) zone: ranges, sample addresses and generators."""

    keys: tuple[int, int]
    vels: tuple[int, int]
    start: int
    end: int
    loop_start: int
    loop_end: int
    loop_mode: int  # 0 none, 1 continuous, 3 until release
    root: int
    cents: int  # coarse and fine tune and the sample's pitch correction
    rate: int
    gens: dict[int, int]


@dataclass(frozen=True)
class Envelope:
    """An envelope in samples (delay, attack, hold, decay, release) and a 0-1 sustain level."""

    delay: int
    attack: int
    hold: int
    decay: int
    sustain: float
    release: int


def _chunks(data: bytes, start: int, stop: int) -> Iterator[tuple[bytes, int, int]]:
    """RIFF chunks between ``start`` and ``stop``: (id, data offset, size) (SF2 §3.1)."""
    pos = start
    while pos + 8 <= stop:
        cid, size = struct.unpack_from("<4sI", data, pos)
        yield cid, pos + 8, min(size, stop - pos - 8)
        pos += 8 + size + (size & 1)


def read_riff(data: bytes) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The ``smpl`` samples (int16) and the hydra record arrays of a SoundFont file's bytes."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise ValueError("not a SoundFont 2 file (no RIFF 'sfbk' header)")
    samples, hydra = None, {}
    for cid, pos, size in _chunks(data, 12, len(data)):
        kind = data[pos : pos + 4] if cid == b"LIST" else b""
        for sub, p, n in _chunks(data, pos + 4, pos + size) if kind else ():
            name = sub.decode("latin-1")
            if kind == b"sdta" and name == "smpl":
                samples = np.frombuffer(data, "<i2", n // 2, p)
            elif kind == b"pdta" and name in HYDRA:
                hydra[name] = np.frombuffer(data, HYDRA[name], n // HYDRA[name].itemsize, p)
    missing = [k for k in ("smpl", *HYDRA) if (samples if k == "smpl" else hydra.get(k)) is None]
    if missing:
        raise ValueError(f"incomplete SoundFont: no {', '.join(missing)} chunk")
    if np.any(hydra["shdr"]["type"] & 0x10):
        raise ValueError("compressed (SF3) samples: the NumPy renderer reads 16-bit .sf2 only")
    return samples, hydra


def _zones(bags: np.ndarray, gens: np.ndarray, first: int, stop: int) -> list[dict[int, int]]:
    """The generators (operator -> signed amount) of bags ``first..stop-1`` (SF2 §7.3, §7.5)."""
    out = []
    for b in range(first, min(stop, len(bags) - 1)):
        g = gens[bags["gen"][b] : bags["gen"][b + 1]]
        out.append(dict(zip(g["op"].tolist(), g["amount"].tolist(), strict=True)))
    return out


def _split_global(zones: list[dict[int, int]], last: int) -> tuple[dict, list[dict]]:
    """(global zone, local zones): a first zone without the ``last`` generator is global."""
    if zones and last not in zones[0]:
        return zones[0], [z for z in zones[1:] if last in z]
    return {}, [z for z in zones if last in z]


def _overlap(a: int | None, b: int | None) -> tuple[int, int]:
    """The intersection of two rangesType amounts (low byte, high byte; absent: 0-127)."""
    given = [x for x in (a, b) if x is not None]
    return max([0, *(x & 0xFF for x in given)]), min([127, *((x >> 8) & 0xFF for x in given)])


def seconds(timecents: float) -> float:
    """``2**(tc/1200)`` seconds; the -12000 default (and anything under -11950) is 0 s."""
    return 0.0 if timecents < -11950 else float(2.0 ** (timecents / 1200.0))


class SoundFont:
    """A SoundFont 2 file: its presets, their zones, and the rendering of one zone's note."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        raw, self.hydra = read_riff(self.path.read_bytes())
        self.samples = np.concatenate([raw / np.float32(32767.0), np.zeros(2, np.float32)])
        self.presets: dict[tuple[int, int], int] = {}  # (bank, program) -> phdr index
        for i, ph in enumerate(self.hydra["phdr"][:-1]):  # the last record is the terminal
            self.presets.setdefault((int(ph["bank"]), int(ph["program"])), i)
        if not self.presets:
            raise ValueError("the SoundFont holds no presets")
        self._resolved: dict[int, list[Zone]] = {}

    def preset_name(self, bank: int, program: int) -> str | None:
        i = self.presets.get((bank, program))
        return None if i is None else self.hydra["phdr"]["name"][i].decode("latin-1")

    def find_preset(self, bank: int, program: int, drums: bool = False) -> int:
        """The preset a MIDI channel plays, with TinySoundFont's fallbacks for missing ones."""
        tries = [(128 | bank, program), (128, program), (128, 0)] if drums else []
        for key in [*tries, (bank, program), (0, program)]:
            if key in self.presets:
                return self.presets[key]
        return self.presets[min(self.presets)]

    def zones(self, preset: int, key: int, velocity: int) -> list[Zone]:
        """The zones of ``preset`` that play ``key`` at MIDI ``velocity`` (0-127)."""
        if preset not in self._resolved:
            self._resolved[preset] = self._resolve(preset)
        return [
            z
            for z in self._resolved[preset]
            if z.keys[0] <= key <= z.keys[1] and z.vels[0] <= velocity <= z.vels[1]
        ]

    def _resolve(self, p: int) -> list[Zone]:
        h = self.hydra
        pzones = _zones(h["pbag"], h["pgen"], h["phdr"]["bag"][p], h["phdr"]["bag"][p + 1])
        pglobal, plocal = _split_global(pzones, INSTRUMENT)
        out = []
        for pz in plocal:
            i = pz[INSTRUMENT] & 0xFFFF
            if i >= len(h["inst"]) - 1:
                continue
            izones = _zones(h["ibag"], h["igen"], h["inst"]["bag"][i], h["inst"]["bag"][i + 1])
            iglobal, ilocal = _split_global(izones, SAMPLE_ID)
            for iz in ilocal:
                zone = self._zone({**DEFAULTS, **iglobal, **iz}, {**pglobal, **pz})
                if zone is not None:
                    out.append(zone)
        return out

    def _zone(self, g: dict[int, int], pg: dict[int, int]) -> Zone | None:
        """Instrument generators ``g`` plus preset generators ``pg`` (SF2 §8.5), resolved."""
        keys = _overlap(g.get(KEY_RANGE), pg.get(KEY_RANGE))
        vels = _overlap(g.get(VEL_RANGE), pg.get(VEL_RANGE))
        sid = g[SAMPLE_ID] & 0xFFFF
        if keys[0] > keys[1] or vels[0] > vels[1] or sid >= len(self.hydra["shdr"]) - 1:
            return None
        for op, amount in pg.items():
            if op not in INSTRUMENT_ONLY and op not in (INSTRUMENT, KEY_RANGE, VEL_RANGE):
                g[op] = g.get(op, 0) + amount
        for op, (lo, hi) in LIMITS.items():
            g[op] = min(max(g.get(op, 0), lo), hi)
        s = self.hydra["shdr"][sid]
        start, end, loop_start, loop_end = (
            int(s[name]) + g.get(fine, 0) + 32768 * g.get(coarse, 0)
            for name, fine, coarse in ADDRESSES
        )
        start = min(max(start, 0), len(self.samples) - 2)
        end = min(max(end, start), len(self.samples) - 2)
        mode = g.get(SAMPLE_MODES, 0) & 3
        if mode == 2 or not start <= loop_start < loop_end <= end:
            mode = 0
        root = g[ROOT_KEY] if 0 <= g[ROOT_KEY] <= 127 else int(s["pitch"])
        root = root if root <= 127 else 60  # 255: unpitched
        cents = 100 * g.get(COARSE_TUNE, 0) + g.get(FINE_TUNE, 0) + int(s["correction"])
        rate = max(int(s["rate"]), 1)
        return Zone(keys, vels, start, end, loop_start, loop_end, mode, root, cents, rate, g)

    def render_voice(
        self,
        z: Zone,
        key: int,
        velocity: float,
        held: int,
        length: int,
        rate: int,
        cut: int | None = None,
    ) -> np.ndarray:
        """One zone of a note at output ``rate``: at most ``length`` samples, the key released
        after ``held`` samples and, with ``cut``, a fast release from sample ``cut`` on."""
        g, vel127 = z.gens, int(velocity * 127)
        vol = envelope_params(g, VOL_ENV, key, rate, vel127)
        n = min(length, held + vol.release)
        if cut is not None and cut < n:
            n = min(n, cut + int(FAST_RELEASE_S * rate))
        if n <= 0:
            return np.zeros(0, np.float32)
        env = envelope(vol, n, held, exponential=True)
        if cut is not None and cut < n:
            env[cut:] = env[cut] * np.exp(-NEPERS * np.arange(n - cut) / (n - cut))
        mod = np.zeros(0)
        if g[MOD_ENV_TO_PITCH] or g[MOD_ENV_TO_FC]:
            modenv = envelope_params(g, MOD_ENV, key, rate, vel127)
            mod = envelope(modenv, n, held, exponential=False)[::BLOCK]
        cents = (key - z.root) * g[SCALE_TUNING] + z.cents
        ratio = 2.0 ** (cents / 1200.0) * z.rate / rate
        if g[MOD_ENV_TO_PITCH]:
            ratio = ratio * np.repeat(2.0 ** (mod * g[MOD_ENV_TO_PITCH] / 1200.0), BLOCK)[:n]
        pos, nxt = positions(z, ratio, n, held)
        n = len(pos)
        i = pos.astype(np.int64)
        x = self.samples[i] + (pos - i) * (self.samples[nxt] - self.samples[i])
        fc = g[FILTER_FC] + (
            mod * g[MOD_ENV_TO_FC] if len(mod) else np.zeros((n + BLOCK - 1) // BLOCK)
        )
        x = lowpass(x, fc[: (n + BLOCK - 1) // BLOCK], g[FILTER_Q], rate)
        gain = 10.0 ** (-g[ATTENUATION] / 200.0) * min(max(velocity, 0.0), 1.0)
        return (x * env[:n] * gain).astype(np.float32)


def envelope_params(g: dict[int, int], base: int, key: int, rate: int, vel127: int) -> Envelope:
    """The volume (``base`` = VOL_ENV) or modulation (MOD_ENV) envelope of a note, in samples.

    keynumTo...Hold/Decay add ``amount * (60 - key)`` timecents; the modulation attack lasts
    ``(145 - vel)/144`` of its time (TinySoundFont); a zero release is 10 ms.
    """
    delay, attack, hold, decay, sustain, release, key_hold, key_decay = (
        g[base + i] for i in range(8)
    )
    attack_s = seconds(attack) * ((145 - vel127) / 144.0 if base == MOD_ENV else 1.0)
    if base == VOL_ENV:
        level = 0.0 if sustain >= 1000 else 10.0 ** (-sustain / 200.0)
    else:
        level = 1.0 - sustain / 1000.0
    return Envelope(
        delay=int(seconds(delay) * rate),
        attack=int(attack_s * rate),
        hold=int(seconds(hold + key_hold * (60 - key)) * rate),
        decay=int(seconds(decay + key_decay * (60 - key)) * rate),
        sustain=level,
        release=max(int(seconds(release) * rate), int(FAST_RELEASE_S * rate)),
    )


def envelope(e: Envelope, n: int, held: int, exponential: bool) -> np.ndarray:
    """Levels 0-1 of samples ``0..n-1`` of a note released at sample ``held``.

    Attack ``(t - delay)/attack``, hold 1, then decay to the sustain level (``exp(-9.226
    m/decay)`` or ``1 - m/decay`` after ``m`` samples); from the release the level ``L``
    reached falls as ``L*exp(-9.226 r/release)`` or ``L*(1 - r/release)``.
    """

    def held_level(t: np.ndarray) -> np.ndarray:
        rise = np.clip((t - e.delay) / e.attack, 0.0, 1.0) if e.attack else (t >= e.delay) * 1.0
        m = t - (e.delay + e.attack + e.hold)
        if not e.decay:
            fall = np.full_like(t, e.sustain)
        elif exponential:
            fall = np.exp(-NEPERS * np.maximum(m, 0.0) / e.decay)
            fall = np.where((m >= e.decay) & (e.sustain == 0), 0.0, np.maximum(fall, e.sustain))
        else:
            fall = np.maximum(1.0 - m / e.decay, e.sustain)
        return np.where(m >= 0, fall, rise)

    level = held_level(np.arange(min(n, held), dtype=np.float64))
    if n <= held:
        return level
    start = float(held_level(np.array([float(held)]))[0])
    r = np.arange(n - held, dtype=np.float64) / e.release
    rel = start * (np.exp(-NEPERS * r) if exponential else np.clip(1.0 - r, 0.0, None))
    return np.concatenate([level, np.where(r < 1.0, rel, 0.0)])


def positions(
    z: Zone, ratio: float | np.ndarray, n: int, held: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read positions of ``n`` output samples and the index after each (SF2 §6.2).

    The position advances by ``ratio`` per sample from the zone's start; inside a loop it
    wraps to ``startloop + (p - startloop) mod (endloop - startloop)`` and the sample after
    ``endloop - 1`` is ``startloop``. Mode 3 stops wrapping at the release (``held``) and
    plays on. Positions end at the zone's end address.
    """
    if np.ndim(ratio):
        pos = z.start + np.concatenate([[0.0], np.cumsum(ratio[: n - 1])])
    else:
        pos = z.start + np.arange(n, dtype=np.float64) * float(ratio)
    nxt_wraps = np.zeros(n, dtype=bool)
    if z.loop_mode:
        stop = n if z.loop_mode == 1 else min(held, n)
        length = z.loop_end - z.loop_start
        shift = 0.0
        if 0 < stop < n:
            after = pos[stop]
            wrapped = z.loop_start + (after - z.loop_start) % length
            shift = (wrapped if after >= z.loop_end else after) - after
        loop = pos[:stop]
        over = loop >= z.loop_end
        loop[over] = z.loop_start + (loop[over] - z.loop_start) % length
        pos[stop:] += shift
        nxt_wraps[:stop] = loop.astype(np.int64) + 1 >= z.loop_end
    inside = np.flatnonzero(pos >= z.end)
    keep = int(inside[0]) if len(inside) else n
    pos, nxt_wraps = pos[:keep], nxt_wraps[:keep]
    nxt = np.where(nxt_wraps, z.loop_start, pos.astype(np.int64) + 1)
    return pos, nxt


def biquad(cents: float, q_cb: int, rate: int) -> tuple[list[float], list[float]]:
    """TinySoundFont's low-pass biquad (after earlevel.com): cut-off ``8.176*2**(c/1200)``
    Hz, ``1/Q = 10**(-q_cb/200)``; ``K = tan(pi fc/rate)``, ``b = [K^2, 2K^2, K^2]/norm``,
    ``a = [1, 2(K^2-1)/norm, (1 - K/Q + K^2)/norm]``, ``norm = 1 + K/Q + K^2``."""
    k = math.tan(math.pi * 8.176 * 2.0 ** (cents / 1200.0) / rate)
    qinv = 10.0 ** (-q_cb / 200.0)
    norm = 1.0 + k * qinv + k * k
    kk = k * k / norm
    return [kk, 2.0 * kk, kk], [1.0, 2.0 * (k * k - 1.0) / norm, (1.0 - k * qinv + k * k) / norm]


def lowpass(x: np.ndarray, fc: np.ndarray, q_cb: int, rate: int) -> np.ndarray:
    """``x`` through the low-pass whose cut-off (cents) is ``fc[b]`` in 64-sample block ``b``.

    Runs of blocks within 25 cents share one ``scipy.signal.lfilter`` call, the filter state
    carried across; blocks at or above 13500 cents or half the rate pass unfiltered.
    """
    active = (fc <= 13500) & (8.176 * 2.0 ** (fc / 1200.0) < 0.499 * rate)
    if not active.any():
        return x
    step = np.where(active, np.round(fc / FILTER_STEP_CENTS), -1.0)
    change = np.flatnonzero(np.diff(step) != 0) + 1
    out, zi = x.copy(), np.zeros(2)
    for b0, b1 in zip(np.r_[0, change], np.r_[change, len(step)], strict=True):
        if active[b0]:
            b, a = biquad(step[b0] * FILTER_STEP_CENTS, q_cb, rate)
            out[b0 * BLOCK : b1 * BLOCK], zi = lfilter(b, a, x[b0 * BLOCK : b1 * BLOCK], zi=zi)
    return out
