"""Content-preserving augmentations of log-mel views, for contrastive pretraining.

The two views of a positive pair come from one rendered track, so they share its timbre: the
cheapest way to match them is to recognise the instrument, and a model can solve NT-Xent
without hearing a pitch (the recipe study's pilot). Each view therefore gets its own random
change of the things a listener would call recording conditions, which leaves pitch, key,
harmony and rhythm intact:

* **gain**: a level offset :math:`x + g`, :math:`g \\sim U(-G, G)` dB;
* **EQ**: a smooth curve over the mel bands added in dB,
  :math:`e(b) = \\sum_{k=1}^{4} a_k \\cos(\\pi k b / B + \\phi_k)`, scaled so that
  :math:`\\max_b |e(b)| = u E` with :math:`u \\sim U(0, 1)`: it reshapes the spectral
  envelope (a crude timbre change) without moving any partial;
* **noise**: stationary noise with a random spectral tilt, ``noise_snr_db`` (+-5) dB below
  the view's mean power, added in the power domain:
  :math:`10 \\log_{10}(10^{x/10} + 10^{n/10})`;
* **reverb**: a late-reverb tail added in the power domain, the same in every band (so no
  partial moves): :math:`P'_t = P_t + w \\frac{1-r}{r} \\sum_{k \\ge 1} r^k P_{t-k}` with
  :math:`r = 10^{-6 h / T_{60}}` the per-frame power decay of a room whose level falls 60 dB in
  :math:`T_{60} \\sim U(0, R)` seconds (:math:`h` the hop in seconds) and
  :math:`w \\sim U(0, W)` the tail's energy relative to the dry sound. The corpus renders a
  reverb per track, shared by both views of a pair; a per-view one hides that cue.

No pitch shift (it would erase key) and no time stretch (it would erase tempo). All draws
come from ``numpy.random.default_rng([seed, step, 7])``, so augmentation is a pure function
of (seed, step) and a resumed run sees the same views. Used by :func:`vit1d.pretrain.train.pretrain`;
the recipe study (:mod:`vit1d.studies.recipes`, ``notebooks/03b_recipe.ipynb``) measures its effect.
"""

from __future__ import annotations

import numpy as np

from vit1d.audio.frontend import FRAME_RATE
from vit1d.pretrain.config import AugmentConfig
from vit1d.pretrain.data import FLOOR_DB

EQ_TERMS = 4


def is_active(cfg: AugmentConfig) -> bool:
    """Whether any augmentation is switched on."""
    return cfg.gain_db > 0 or cfg.eq_db > 0 or cfg.noise_snr_db > 0 or cfg.reverb_s > 0


def reverb_tails(
    power: np.ndarray, rt60_s: np.ndarray, wet: np.ndarray, frame_rate: float = FRAME_RATE
) -> np.ndarray:
    """``power`` ``(n, frames, bands)`` plus an exponential late-reverb tail per view:
    :math:`P_t + w_i \\frac{1-r_i}{r_i} \\sum_{k \\ge 1} r_i^k P_{t-k}`, with
    :math:`r_i = 10^{-6 / (T_{60,i} \\cdot \\text{frame rate})}` (the tail of one impulse
    holds ``wet`` times its energy). A view with ``rt60_s`` 0 is returned unchanged."""
    out = power.copy()
    rt60 = np.asarray(rt60_s, dtype=np.float64)
    r = np.where(rt60 > 0, 10.0 ** (-6.0 / (np.maximum(rt60, 1e-9) * frame_rate)), 0.0)
    gain = np.where(r > 0, np.asarray(wet) * (1 - r) / np.maximum(r, 1e-12), 0.0)
    tail = np.zeros((power.shape[0], power.shape[2]))
    for t in range(1, power.shape[1]):  # one-pole recursion: tail_t = r (tail_{t-1} + P_{t-1})
        tail = r[:, None] * (tail + power[:, t - 1])
        out[:, t] += (gain[:, None] * tail).astype(out.dtype)
    return out


def eq_curves(n: int, bands: int, max_db: float, rng: np.random.Generator) -> np.ndarray:
    """``(n, bands)`` smooth random EQ curves in dB, each with peak magnitude <= ``max_db``."""
    b = np.arange(bands) / bands
    k = np.arange(1, EQ_TERMS + 1)
    amp = rng.normal(size=(n, EQ_TERMS)) / k  # lower orders dominate: broad tilts and bumps
    phase = rng.uniform(0, 2 * np.pi, size=(n, EQ_TERMS))
    curves = np.einsum("nk,nkb->nb", amp, np.cos(np.pi * k[None, :, None] * b + phase[..., None]))
    peak = np.abs(curves).max(axis=1, keepdims=True) + 1e-9
    return curves / peak * (rng.uniform(0, 1, size=(n, 1)) * max_db)


def augment_views(views: np.ndarray, cfg: AugmentConfig, seed: int, step: int) -> np.ndarray:
    """Augment ``(N, frames, bands)`` dB log-mel views in place (and return them).

    Silence (the cache's dB floor, padding of short tracks) stays silence under gain and EQ;
    only a reverb tail can ring on into it.
    """
    if not is_active(cfg):
        return views
    rng = np.random.default_rng([seed, step, 7])
    n, _, bands = views.shape
    if cfg.reverb_s > 0:  # first, as in a room before the microphone; its own draws, so the
        # other augmentations draw what they drew before reverb existed
        room = np.random.default_rng([seed, step, 8])
        rt60 = room.uniform(0, cfg.reverb_s, size=n)
        wet = room.uniform(0, cfg.reverb_wet, size=n)
        floor = 10.0 ** (FLOOR_DB / 10.0)  # the floor is no sound: it does not reverberate
        power = np.maximum(10.0 ** (views.astype(np.float64) / 10.0) - floor, 0.0)
        power = reverb_tails(power, rt60, wet) + floor
        views[:] = (10.0 * np.log10(power)).astype(views.dtype)
    silent = views <= FLOOR_DB + 1e-3  # after the reverb: a tail rings on into silence
    if cfg.gain_db > 0:
        views += rng.uniform(-cfg.gain_db, cfg.gain_db, size=(n, 1, 1)).astype(views.dtype)
    if cfg.eq_db > 0:
        views += eq_curves(n, bands, cfg.eq_db, rng)[:, None, :].astype(views.dtype)
    if cfg.noise_snr_db > 0:
        power = 10.0 ** (views / 10.0)
        mean_db = 10.0 * np.log10(power.mean(axis=(1, 2)) + 1e-30)
        level = mean_db - cfg.noise_snr_db + rng.uniform(-5, 5, size=n)
        tilt = np.linspace(-1, 1, bands)[None, :] * rng.uniform(-6, 6, size=(n, 1))
        fluct = rng.exponential(1.0, size=views.shape)  # chi-square-like power per bin
        noise_db = level[:, None, None] + tilt[:, None, :]
        noisy = power + fluct * 10.0 ** (noise_db / 10.0)
        on = rng.random(n) < cfg.noise_prob
        views[on] = (10.0 * np.log10(noisy[on])).astype(views.dtype)
        silent &= ~on[:, None, None]
    views[silent] = FLOOR_DB
    np.maximum(views, FLOOR_DB, out=views)
    return views
