"""Attention maps, attention rollout and onset curves read from attention (claim C3).

The paper shows layer-wise attention maps in which note onsets are visible. Here that
observation becomes a measurement: turn each layer's (and head's) attention into an *onset
curve*, one value per frame, pick its peaks, and score them against exact onset labels
with ``mir_eval.onset.f_measure`` (50 ms window), beside spectral flux and the same model at
random initialisation.

Notation: a clip's log-mel is cut into windows of at most ``max_frames`` frames (the model's
4 s). For one window, layer ``l`` and head ``h``, ``A = A^{(l,h)}`` is the ``(1+T) x (1+T)``
attention matrix whose row ``i`` (the *query*) sums to 1; index 0 is the class token, frames
are ``1..T``. :func:`frame_attention` keeps the frame-to-frame block ``F = A[1:, 1:]``
(``T x T``, row ``t`` = what frame ``t`` looks at).

Onset curves (:data:`CURVES`), each ``c[t] >= 0`` for frames ``t = 0..T-1``:

* ``received``: attention a frame receives, ``c[t] = (1/T) sum_i F[i, t]``. An onset frame
  may act as an anchor that other frames of its note attend to.
* ``cls``: the class token's attention to each frame, ``c[t] = A[0, 1+t]``.
* ``row_change``: how much a frame's attention row differs from its predecessor's, the total
  variation distance ``c[t] = 1/2 sum_j |F[t, j] - F[t-1, j]|`` (``c[0] = 0``). When a new
  note starts, the frames of the new note attend to a different set of frames.
* ``checkerboard``: the symmetrised map ``(F + F^T) / 2`` read as a self-similarity matrix,
  and its novelty along the diagonal (:func:`vit1d.analysis.ssm.novelty_curve`, libfmp's checkerboard
  kernel), positive part: block structure aligned with notes gives peaks at their starts.

The curve kept for the headline is ``row_change`` (:data:`KEPT_CURVE`); the book shows all
four. Why: on the smoke corpus and checkpoint (49 clips, 26 for test) it had the highest
validation F in every model, the trained one (test F .64 at its best layer and head, against
.49 for spectral flux and .26 for ``received``) and the random-init twin alike; it uses each
frame's whole attention row, needs no kernel size, and keeps frame resolution.
``checkerboard`` comes second (its kernel blurs onsets closer than 4 frames); ``received`` and
``cls`` follow where attention *goes*, which in these models is a few key columns that do not
sit on onsets. :func:`best_curve` picks the (curve, layer, head) on validation clips for each
run, so the choice is re-made, not assumed, on every corpus and checkpoint.

Peaks come from :func:`pick_peaks` (``librosa.util.peak_pick`` with windows in seconds,
the same for every curve, and the threshold ``delta`` chosen per curve on the validation
split, so spectral flux and attention get the same tuning budget).

Used by: ``notebooks/06_attention.ipynb``, :mod:`vit1d.analysis.onsets`,
:mod:`vit1d.analysis.ssm_scores`, :mod:`vit1d.analysis.analyses`, :mod:`vit1d.viz.widgets`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import librosa
import mir_eval
import numpy as np

from vit1d.analysis.ssm import novelty_curve
from vit1d.audio.grid import HOP_LENGTH, SAMPLE_RATE

#: Onset-curve names, in the order the tables list them.
CURVES = ("received", "cls", "row_change", "checkerboard")

#: The curve the book leads with (see the module docstring for why).
KEPT_CURVE = "row_change"

#: Onset evaluation window in seconds (``mir_eval.onset.f_measure``'s default, MIREX's).
ONSET_WINDOW = 0.05

#: Thresholds tried for :func:`pick_peaks` on the validation split (curves are min-max
#: normalised to [0, 1] per clip first, so these are fractions of the clip's range).
DELTAS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)

#: Half-width in frames of the checkerboard kernel of the ``checkerboard`` curve
#: (4 frames = 128 ms at 31.25 frames/s: about the shortest note of the corpus).
ONSET_KERNEL = 4


# ----------------------------------------------------------------------------------------
# Windows and attention maps
# ----------------------------------------------------------------------------------------


def frame_windows(n_frames: int, size: int) -> list[tuple[int, int]]:
    """Cut ``n_frames`` frames into consecutive, non-overlapping windows of at most ``size``
    frames: ``[(0, size), (size, 2 size), ..., (k size, n_frames)]``.

    The model has learned positions for ``size`` (= ``max_frames``, 4 s) frames only, so a
    longer clip is analysed window by window and the per-frame curves are concatenated.
    """
    if size < 1:
        raise ValueError(f"window size must be >= 1, got {size}")
    return [(s, min(s + size, n_frames)) for s in range(0, n_frames, size)]


@dataclass
class WindowOutput:
    """One window's model outputs as NumPy arrays (float32, on the CPU).

    ``attentions``: ``(L, H, 1+T, 1+T)`` (rows sum to 1, index 0 the class token);
    ``hidden``: ``(L+1, T, dim)`` frame tokens (class token dropped) of the embeddings and of
    each block; ``start``: the window's first frame in the clip.
    """

    start: int
    attentions: np.ndarray | None
    hidden: np.ndarray | None


def run_windows(
    model, mel: np.ndarray, attentions: bool = True, hidden: bool = True, device=None
) -> list[WindowOutput]:
    """Run ``model`` (a :class:`vit1d.ViT1D`) on a clip's log-mel ``(T, n_mels)`` window by
    window (:func:`frame_windows` with ``model.max_frames``) and return attention maps and/or
    hidden states per window. Runs in fp32 under ``torch.no_grad``: attention maps are
    analysed, not trained, and fp32 keeps rows summing to 1 exactly enough."""
    import torch  # lazy: tests/test_grid.py requires this module to import without torch

    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2:
        raise ValueError(f"expected a log-mel (T, n_mels), got shape {mel.shape}")
    if device is None:
        device = next(model.parameters()).device
    out: list[WindowOutput] = []
    with torch.no_grad():
        for start, stop in frame_windows(mel.shape[0], model.max_frames):
            x = torch.from_numpy(mel[start:stop]).unsqueeze(0).to(device)
            res = model(x, output_hidden_states=hidden, output_attentions=attentions)
            att = torch.stack(res.attentions, 0)[:, 0].float().cpu().numpy() if attentions else None
            hid = (
                torch.stack(res.hidden_states, 0)[:, 0, 1:].float().cpu().numpy()
                if hidden
                else None
            )
            out.append(WindowOutput(start=start, attentions=att, hidden=hid))
    return out


def frame_attention(attn: np.ndarray) -> np.ndarray:
    """The frame-to-frame block ``A[..., 1:, 1:]`` of attention maps ``(..., 1+T, 1+T)``
    (class-token row and column dropped; rows then sum to ``1 - A[t, 0]``)."""
    return np.asarray(attn)[..., 1:, 1:]


def attention_rollout(attentions: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020) through the layers of one window.

    ``attentions``: ``(L, H, N, N)``. Each layer's heads are averaged and the residual
    connection is modelled as identity: ``Â_l = (1 - r) mean_h A_l + r I`` (rows still sum
    to 1). The rollout to layer ``l`` is the product ``R_l = Â_l Â_{l-1} ... Â_1``, so
    ``R_l[i, j]`` is the share of input token ``j`` in token ``i`` after ``l`` layers if
    information only mixed through attention. Returns ``(L, N, N)``, rows summing to 1.
    """
    a = np.asarray(attentions, dtype=np.float64)
    if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"expected attentions (L, H, N, N), got shape {a.shape}")
    n = a.shape[-1]
    eye = np.eye(n)
    rollout = np.empty((a.shape[0], n, n))
    r = eye
    for layer in range(a.shape[0]):
        mixed = (1.0 - residual) * a[layer].mean(axis=0) + residual * eye
        r = mixed @ r
        rollout[layer] = r
    return rollout


# ----------------------------------------------------------------------------------------
# Onset curves from one attention map
# ----------------------------------------------------------------------------------------


def received_attention(attn: np.ndarray) -> np.ndarray:
    """``c[t] = (1/T) sum_i F[i, t]``: mean attention frame ``t`` receives from the frames
    (``attn`` ``(1+T, 1+T)``, ``F`` its frame block)."""
    f = frame_attention(attn)
    return f.mean(axis=0)


def cls_attention(attn: np.ndarray) -> np.ndarray:
    """``c[t] = A[0, 1+t]``: the class token's attention to frame ``t``."""
    return np.asarray(attn)[0, 1:].copy()


def row_change(attn: np.ndarray) -> np.ndarray:
    """``c[t] = 1/2 sum_j |F[t, j] - F[t-1, j]|`` (total variation between consecutive
    attention rows of the frame block), ``c[0] = 0``: large where what a frame attends to
    changes, as at a note onset."""
    f = frame_attention(attn)
    c = np.zeros(f.shape[0])
    c[1:] = 0.5 * np.abs(np.diff(f, axis=0)).sum(axis=1)
    return c


def checkerboard_onsets(attn: np.ndarray, half_width: int = ONSET_KERNEL) -> np.ndarray:
    """Novelty of the symmetrised frame block ``(F + F^T) / 2`` along its diagonal with a
    Gaussian-tapered checkerboard kernel of half-width ``half_width`` frames
    (:func:`vit1d.analysis.ssm.novelty_curve`), positive part."""

    f = frame_attention(attn)
    s = 0.5 * (f + f.T)
    return np.maximum(novelty_curve(s, half_width), 0.0)


_CURVE_FUNCS = {
    "received": received_attention,
    "cls": cls_attention,
    "row_change": row_change,
    "checkerboard": checkerboard_onsets,
}


def onset_curve(attn: np.ndarray, method: str) -> np.ndarray:
    """The onset curve ``method`` (one of :data:`CURVES`) of one attention map
    ``(1+T, 1+T)``; returns ``(T,)``."""
    try:
        func = _CURVE_FUNCS[method]
    except KeyError:
        raise ValueError(f"unknown onset curve {method!r}; choose from {CURVES}") from None
    return np.asarray(func(attn), dtype=np.float64)


def head_maps(attentions: np.ndarray) -> dict[str, np.ndarray]:
    """The maps analysed per window: ``{head: (L, 1+T, 1+T)}`` for each head (``"0"``,
    ``"1"``, ...), their mean (``"mean"``) and the attention rollout (``"rollout"``)."""
    a = np.asarray(attentions)
    maps = {str(h): a[:, h] for h in range(a.shape[1])}
    maps["mean"] = a.mean(axis=1)
    maps["rollout"] = attention_rollout(a)
    return maps


def clip_onset_curves(
    windows: Sequence[WindowOutput], methods: Iterable[str] = CURVES
) -> dict[tuple[str, int, str], np.ndarray]:
    """Onset curves for a whole clip: ``{(method, layer, head): (T_clip,)}`` with layers
    numbered from 1 (block 1 .. L) and heads as in :func:`head_maps`. Each window's curve is
    computed on its own map and the windows are concatenated in time."""
    methods = tuple(methods)
    parts: dict[tuple[str, int, str], list[np.ndarray]] = {}
    for win in windows:
        if win.attentions is None:
            raise ValueError("run_windows(..., attentions=True) is needed for onset curves")
        for head, maps in head_maps(win.attentions).items():
            for layer in range(maps.shape[0]):
                for m in methods:
                    parts.setdefault((m, layer + 1, head), []).append(onset_curve(maps[layer], m))
    return {k: np.concatenate(v) for k, v in parts.items()}


# ----------------------------------------------------------------------------------------
# Reference curve, peak picking, scoring
# ----------------------------------------------------------------------------------------


def spectral_flux(y: np.ndarray, sr: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """Spectral-flux onset strength (``librosa.onset.onset_strength``: half-wave rectified
    log-mel difference, averaged over bands), on the model's frame grid (centred frames,
    hop 512)."""
    return librosa.onset.onset_strength(
        y=np.asarray(y, dtype=np.float32), sr=sr, hop_length=hop_length
    )


def normalise_curve(curve: np.ndarray) -> np.ndarray:
    """Min-max normalisation to [0, 1] (``(c - min) / (max - min)``; zeros if flat), so one
    peak-picking threshold means the same for every curve."""
    c = np.asarray(curve, dtype=np.float64)
    lo, hi = float(np.min(c)), float(np.max(c))
    if not np.isfinite(hi - lo) or hi - lo <= 0:
        return np.zeros_like(c)
    return (c - lo) / (hi - lo)


def pick_peaks(
    curve: np.ndarray,
    frame_rate: float,
    delta: float = 0.07,
    pre_max: float = 0.03,
    post_max: float = 0.03,
    pre_avg: float = 0.1,
    post_avg: float = 0.1,
    wait: float = 0.03,
) -> np.ndarray:
    """Peak times in seconds of an onset curve sampled at ``frame_rate`` frames/s.

    The curve is normalised (:func:`normalise_curve`) and passed to
    ``librosa.util.peak_pick``: frame ``n`` is a peak if it is the maximum of
    ``[n - pre_max, n + post_max]``, exceeds the mean of ``[n - pre_avg, n + post_avg]`` by
    ``delta``, and comes ``wait`` after the previous peak. The windows are given in seconds
    (librosa's ``onset_detect`` defaults) and converted to frames (at least 1). Frame ``n``
    is at time ``n / frame_rate`` (centred frames).
    """
    c = normalise_curve(curve)
    if c.size < 3 or not np.any(c > 0):
        return np.zeros(0)

    def frames(sec: float) -> int:
        return max(1, int(round(sec * frame_rate)))

    peaks = librosa.util.peak_pick(
        c,
        pre_max=frames(pre_max),
        post_max=frames(post_max),
        pre_avg=frames(pre_avg),
        post_avg=frames(post_avg),
        delta=float(delta),
        wait=frames(wait) if wait > 0 else 0,
    )
    return np.asarray(peaks, dtype=np.float64) / frame_rate


def onset_f_measure(
    reference: np.ndarray, estimated: np.ndarray, window: float = ONSET_WINDOW
) -> tuple[float, float, float]:
    """``(F, precision, recall)`` of estimated against reference onset times (seconds) with
    ``mir_eval.onset.f_measure``: a reference onset is hit by at most one estimate within
    ``± window``. Empty sets score 0 (mir_eval's convention; its warning is silenced)."""
    ref = np.sort(np.asarray(reference, dtype=np.float64).reshape(-1))
    est = np.sort(np.asarray(estimated, dtype=np.float64).reshape(-1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        f, p, r = mir_eval.onset.f_measure(ref, est, window=window)
    return float(f), float(p), float(r)


def score_curve(
    curve: np.ndarray,
    reference: np.ndarray,
    frame_rate: float,
    delta: float = 0.07,
    window: float = ONSET_WINDOW,
) -> tuple[float, float, float]:
    """Curve -> :func:`pick_peaks` -> :func:`onset_f_measure`: ``(F, precision, recall)``."""
    return onset_f_measure(reference, pick_peaks(curve, frame_rate, delta=delta), window)


def best_curve(summary, metric: str = "f") -> tuple[str, int, str]:
    """``(method, layer, head)`` of the attention curve with the highest mean ``metric`` in a
    summary table (a DataFrame with columns ``method``, ``layer``, ``head``, ``metric``)."""
    row = summary.sort_values(metric, ascending=False).iloc[0]
    return str(row["method"]), int(row["layer"]), str(row["head"])
