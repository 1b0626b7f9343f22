"""Room, equalisation, noise and loudness: what varies between renders besides the notes.

TinySoundFont has no reverb, so a room is simulated here: the dry render is convolved with
a synthetic impulse response (exponentially decaying noise with a given RT60, darkened by a
low-pass, after a short pre-delay). Equalisation is a random high-pass and low-pass pair
(the colour of a microphone or a small speaker), and noise is white or pink at a given
signal-to-noise ratio. All of it is seeded by the caller's generator, so a render is
reproducible bit for bit.

Loudness normalisation scales each file to the same gated RMS level (blocks of 400 ms,
blocks 40 dB below the loudest ignored, as in ITU-R BS.1770's relative gate), then lowers
it if a peak would pass -1 dBFS.

Used by :mod:`vit1d.corpus.jobs`.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, signal


def reverb(x: np.ndarray, sr: int, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Mix ``x`` with its convolution by a synthetic room response of decay time ``rt60``."""
    if wet <= 0 or rt60 <= 0:
        return x
    n = int(min(1.2 * rt60, 3.0) * sr)
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    cutoff = float(rng.uniform(2500.0, 7000.0))
    sos = signal.butter(2, min(cutoff, 0.45 * sr), "low", fs=sr, output="sos")
    ir = signal.sosfilt(sos, ir)
    pre = int(rng.uniform(0.005, 0.03) * sr)
    ir = np.concatenate([np.zeros(pre), ir])
    ir /= np.sqrt(np.sum(ir**2)) + 1e-12
    wet_sig = signal.fftconvolve(x, ir)[: len(x)]
    return ((1.0 - wet) * x + wet * wet_sig).astype(np.float32)


def equalise(x: np.ndarray, sr: int, highpass: float, lowpass: float) -> np.ndarray:
    """Second-order high-pass at ``highpass`` Hz and low-pass at ``lowpass`` Hz (0: off)."""
    y = x
    if highpass > 0:
        y = signal.sosfilt(signal.butter(2, highpass, "high", fs=sr, output="sos"), y)
    if 0 < lowpass < 0.5 * sr:
        y = signal.sosfilt(signal.butter(2, lowpass, "low", fs=sr, output="sos"), y)
    return np.asarray(y, dtype=np.float32)


def add_noise(x: np.ndarray, snr_db: float, color: str, rng: np.random.Generator) -> np.ndarray:
    """Add white or pink noise ``snr_db`` below the signal's RMS."""
    if color == "none" or len(x) == 0:
        return x
    if color == "pink":  # white noise shaped by 1/sqrt(f), at an FFT-friendly length
        n = fft.next_fast_len(len(x), real=True)
        spec = fft.rfft(rng.standard_normal(n))
        f = np.arange(len(spec), dtype=float)
        f[0] = 1.0
        noise = fft.irfft(spec / np.sqrt(f), n=n)[: len(x)]
    else:
        noise = rng.standard_normal(len(x))
    rms_x = gated_rms(x)
    rms_n = np.sqrt(np.mean(noise**2)) + 1e-12
    return (x + noise * (rms_x / rms_n) * 10 ** (-snr_db / 20)).astype(np.float32)


def gated_rms(x: np.ndarray, sr: int = 16000, block_s: float = 0.4, gate_db: float = 40.0) -> float:
    """RMS over 400 ms blocks, ignoring blocks more than ``gate_db`` below the loudest."""
    n = max(1, int(block_s * sr))
    nb = max(1, len(x) // n)
    blocks = x[: nb * n].reshape(nb, n) if len(x) >= n else x.reshape(1, -1)
    power = np.mean(blocks.astype(np.float64) ** 2, axis=1)
    if power.max() <= 0:
        return 0.0
    keep = power >= power.max() * 10 ** (-gate_db / 10)
    return float(np.sqrt(np.mean(power[keep])))


def normalise_loudness(x: np.ndarray, target_dbfs: float, peak_dbfs: float = -1.0) -> np.ndarray:
    """Scale to ``target_dbfs`` gated RMS, then down if the peak would exceed ``peak_dbfs``."""
    rms = gated_rms(x)
    if rms <= 0:
        return x.astype(np.float32)
    y = x * (10 ** (target_dbfs / 20) / rms)
    peak = float(np.max(np.abs(y)))
    limit = 10 ** (peak_dbfs / 20)
    if peak > limit:
        y = y * (limit / peak)
    return y.astype(np.float32)


def fade(x: np.ndarray, sr: int, fade_in_s: float = 0.005, fade_out_s: float = 0.05) -> np.ndarray:
    """Short linear fades, so a clip cut inside a note does not click."""
    y = x.copy()
    n_in = min(len(y), int(fade_in_s * sr))
    n_out = min(len(y), int(fade_out_s * sr))
    if n_in:
        y[:n_in] *= np.linspace(0.0, 1.0, n_in, dtype=np.float32)
    if n_out:
        y[-n_out:] *= np.linspace(1.0, 0.0, n_out, dtype=np.float32)
    return y
