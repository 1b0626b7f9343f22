"""Self-similarity matrices of the model's layers and of musical references (claim C4).

In the spirit of libfmp's chapter on SSMs (Mueller, FMP C4), one concept per function:

* :func:`cosine_ssm`: ``S[i, j] = <x_i, x_j> / (||x_i|| ||x_j||)`` for frame vectors
  ``x_t`` (a layer's tokens, or a feature such as chroma);
* :func:`scalar_ssm`: ``S[i, j] = -|x_i - x_j|`` for a one-dimensional feature (loudness),
  where a cosine would be meaningless;
* :func:`label_ssm`: ``S[i, j] = [label_i = label_j]`` for frame labels (exact chords,
  instruments);
* reference features on the model's frame grid (16 kHz, hop 512, centred frames), all from
  librosa: :func:`chroma` (harmony, CQT chroma), :func:`mfcc` (timbre; ``c_0`` dropped, since
  it is loudness), :func:`rms_db` (loudness), :func:`tempogram` (rhythm: local
  autocorrelation of the onset strength);
* :func:`rank_score`: how much a layer's SSM agrees with a reference SSM, the Spearman rank
  correlation of their strict upper triangles (entries ``i < j``). Rank correlation needs no
  common scale between a cosine of tokens and, say, a loudness difference, and a 0/1 label
  SSM is handled through ties. The diagonal is left out because it is 1 by construction;
* :func:`chance_score`: the same score after moving the reference in time
  (:func:`shuffle_ssm`). The default, a circular shift of both axes, keeps the reference's
  own structure (smoothness, the similarity of neighbouring frames) and breaks only its
  alignment with the music; so any SSM with a strong diagonal band scores above zero against
  any smooth reference, and that is what the chance level must contain. A random permutation
  of frames (``mode="permute"``) gives the textbook zero-centred chance;
* :func:`checkerboard_kernel` and :func:`novelty_curve`: Foote's novelty, the correlation of a
  Gaussian-tapered checkerboard kernel along the SSM's diagonal (libfmp's
  ``compute_novelty_ssm``, written from the formula); peaks mark changes such as chord
  changes, scored with :func:`boundary_f_measure` (``mir_eval.segment.detection``, 0.5 s).

Used by: ``notebooks/07_self_similarity.ipynb``, :mod:`vit1d.analysis.ssm_scores`,
:mod:`vit1d.analysis.analyses`, :mod:`vit1d.viz.widgets`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import librosa
import mir_eval
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.stats import rankdata

from vit1d.audio.grid import HOP_LENGTH, SAMPLE_RATE

SR, HOP = SAMPLE_RATE, HOP_LENGTH

#: Half-width in frames of the checkerboard kernel for chord changes (8 frames = 0.26 s: the
#: kernel spans about 0.5 s, the corpus's shortest chords).
NOVELTY_KERNEL = 8

#: Boundary hit window in seconds (``mir_eval.segment.detection``; the issue's 0.5 s).
BOUNDARY_WINDOW = 0.5

#: Tempogram window in frames (64 frames = 2 s: at least two beats at 60 bpm).
TEMPOGRAM_WIN = 64


# ----------------------------------------------------------------------------------------
# Similarity matrices
# ----------------------------------------------------------------------------------------


def cosine_ssm(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``S[i, j] = <x_i, x_j> / (||x_i|| ||x_j||)`` for rows ``x_t`` of ``x`` ``(T, D)``;
    a zero row has similarity 0 to everything."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected frame vectors (T, D), got shape {x.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
    return x @ x.T


def scalar_ssm(x: np.ndarray) -> np.ndarray:
    """``S[i, j] = -|x_i - x_j|`` for a one-dimensional feature ``(T,)`` (a similarity:
    0 on the diagonal, more negative the more two frames differ)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return -np.abs(x[:, None] - x[None, :])


def label_ssm(labels: Sequence) -> np.ndarray:
    """``S[i, j] = 1`` if frames ``i`` and ``j`` carry the same label, else 0."""
    lab = np.asarray(labels)
    return (lab[:, None] == lab[None, :]).astype(np.float64)


def position_ssm(n: int) -> np.ndarray:
    """``S[i, j] = -|i - j|``: similarity by closeness in time alone. Every smooth SSM agrees
    with it; it is listed beside the musical references to show that share."""
    return scalar_ssm(np.arange(n, dtype=np.float64))


def layer_ssms(hidden: np.ndarray) -> np.ndarray:
    """Cosine SSMs ``(L+1, T, T)`` of each layer's frame tokens ``hidden`` ``(L+1, T, dim)``
    (index 0 the embeddings, then each block)."""
    return np.stack([cosine_ssm(h) for h in np.asarray(hidden)])


# ----------------------------------------------------------------------------------------
# Reference features (librosa), on the model's frame grid
# ----------------------------------------------------------------------------------------


def _fit(feature: np.ndarray, n_frames: int) -> np.ndarray:
    """Crop or edge-pad a ``(D, T')`` feature to ``n_frames`` frames, returned as ``(T, D)``
    (librosa features have ``1 + n // hop`` frames like the log-mel; this guards the rest)."""
    f = np.asarray(feature, dtype=np.float64)
    if f.shape[1] < n_frames:
        f = np.pad(f, ((0, 0), (0, n_frames - f.shape[1])), mode="edge")
    return f[:, :n_frames].T


def n_frames_of(y: np.ndarray, hop_length: int = HOP) -> int:
    """Frames of the model's front end for ``len(y)`` samples: ``1 + len(y) // hop``."""
    return 1 + len(y) // hop_length


def chroma(y: np.ndarray, sr: int = SR, hop_length: int = HOP) -> np.ndarray:
    """CQT chroma ``(T, 12)`` (``librosa.feature.chroma_cqt``, 7 octaves from C1)."""
    c = librosa.feature.chroma_cqt(y=np.asarray(y, dtype=np.float32), sr=sr, hop_length=hop_length)
    return _fit(c, n_frames_of(y, hop_length))


def mfcc(y: np.ndarray, sr: int = SR, hop_length: int = HOP, n_mfcc: int = 20) -> np.ndarray:
    """MFCCs ``c_1 .. c_{n-1}`` ``(T, n_mfcc - 1)`` (``librosa.feature.mfcc``, n_fft 1024,
    128 mel bands as the model's input). ``c_0`` is dropped: it is the frame's overall level,
    which the loudness reference already covers, so this one stays about spectral shape."""
    m = librosa.feature.mfcc(
        y=np.asarray(y, dtype=np.float32),
        sr=sr,
        n_mfcc=n_mfcc,
        n_fft=1024,
        hop_length=hop_length,
        n_mels=128,
    )
    return _fit(m[1:], n_frames_of(y, hop_length))


def rms_db(y: np.ndarray, hop_length: int = HOP, frame_length: int = 1024) -> np.ndarray:
    """Frame loudness ``(T,)`` in dB: ``20 log10(max(rms, 1e-5))`` of
    ``librosa.feature.rms`` (centred frames)."""
    r = librosa.feature.rms(
        y=np.asarray(y, dtype=np.float32), frame_length=frame_length, hop_length=hop_length
    )
    return _fit(20.0 * np.log10(np.maximum(r, 1e-5)), n_frames_of(y, hop_length))[:, 0]


def tempogram(
    y: np.ndarray, sr: int = SR, hop_length: int = HOP, win_length: int = TEMPOGRAM_WIN
) -> np.ndarray:
    """Autocorrelation tempogram ``(T, win_length - 1)`` of the onset strength
    (``librosa.feature.tempogram``), lags 1 .. win_length - 1: row ``t`` is the local
    periodicity profile around frame ``t``. Lag 0 is dropped: librosa scales every frame so
    that it is 1, and it would dominate any similarity between frames."""
    oenv = librosa.onset.onset_strength(
        y=np.asarray(y, dtype=np.float32), sr=sr, hop_length=hop_length
    )
    tg = librosa.feature.tempogram(
        onset_envelope=oenv, sr=sr, hop_length=hop_length, win_length=win_length
    )
    return _fit(tg[1:], n_frames_of(y, hop_length))


def frame_labels(
    intervals: np.ndarray, labels: Sequence[str], times: np.ndarray, fill: str = "N"
) -> np.ndarray:
    """The label of each time in ``times`` from labelled intervals ``(K, 2)``: the interval
    with ``start <= t < end`` (the last one wins where they overlap); ``fill`` elsewhere."""
    out = np.full(len(times), fill, dtype=object)
    ints = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    times = np.asarray(times, dtype=np.float64)
    for (start, end), lab in zip(ints, labels, strict=True):
        out[(times >= start) & (times < end)] = lab
    return out


#: Reference dimensions, in the order the tables list them (``instrument`` only where a
#: clip has time-resolved instrument labels).
DIMENSIONS = ("chroma", "chords", "mfcc", "rms", "tempogram", "instrument", "position")

#: The musical dimension each reference stands for.
DIMENSION_GROUP = {
    "chroma": "harmony",
    "chords": "harmony",
    "mfcc": "timbre",
    "rms": "loudness",
    "tempogram": "rhythm",
    "instrument": "instrument",
    "position": "time",
}


def reference_features(y: np.ndarray, sr: int = SR, hop_length: int = HOP) -> dict[str, np.ndarray]:
    """Every audio reference feature of a clip on the model's frame grid: ``chroma``
    ``(T, 12)``, ``mfcc`` ``(T, 19)``, ``rms`` ``(T,)``, ``tempogram`` ``(T, win - 1)``."""
    return {
        "chroma": chroma(y, sr, hop_length),
        "mfcc": mfcc(y, sr, hop_length),
        "rms": rms_db(y, hop_length),
        "tempogram": tempogram(y, sr, hop_length),
    }


def reference_ssm(name: str, feature: np.ndarray) -> np.ndarray:
    """The SSM of one reference: ``rms`` by :func:`scalar_ssm`, labels (``chords``,
    ``instrument``) by :func:`label_ssm`, ``position`` from the length, ``tempogram`` by the
    cosine of frame-centred profiles (their Pearson correlation), other vectors by
    :func:`cosine_ssm`."""
    if name == "rms":
        return scalar_ssm(feature)
    if name in ("chords", "instrument"):
        return label_ssm(feature)
    if name == "position":
        return position_ssm(len(feature))
    if name == "tempogram":
        # Pearson correlation of periodicity profiles: every profile is positive with a
        # common decay over lag, so an uncentred cosine would call all frames alike
        f = np.asarray(feature, dtype=np.float64)
        return cosine_ssm(f - f.mean(axis=1, keepdims=True))
    return cosine_ssm(feature)


# ----------------------------------------------------------------------------------------
# Scores
# ----------------------------------------------------------------------------------------


def upper_entries(s: np.ndarray) -> np.ndarray:
    """The strict upper triangle ``{S[i, j] : i < j}`` of a square matrix, as a vector."""
    s = np.asarray(s)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {s.shape}")
    return s[np.triu_indices(s.shape[0], k=1)]


def rank_matrix(s: np.ndarray) -> np.ndarray:
    """The ranks (1 = smallest, ties averaged, as Spearman's rho needs) of the strict upper
    triangle of ``s``, written back into a symmetric matrix with a zero diagonal.

    Moving a symmetric SSM in time (:func:`shuffle_ssm`) only rearranges its off-diagonal
    entries, so the ranks of a moved matrix are the moved ranks: ranking once serves every
    shuffle (this is what makes the chance levels cheap)."""
    s = np.asarray(s)
    n = s.shape[0]
    iu = np.triu_indices(n, k=1)
    r = np.zeros((n, n))
    r[iu] = rankdata(upper_entries(s))
    return r + r.T


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def rank_score(s: np.ndarray, ref: np.ndarray) -> float:
    """Spearman's rho between the strict upper triangles of ``s`` and ``ref``: the Pearson
    correlation of their ranks (:func:`rank_matrix`). 1 when ``s`` orders frame pairs as
    ``ref`` does; NaN when either is constant there (e.g. a window inside one chord), so
    averages can skip it."""
    return _pearson(upper_entries(rank_matrix(s)), upper_entries(rank_matrix(ref)))


def shuffle_ssm(s: np.ndarray, rng: np.random.Generator, mode: str = "roll") -> np.ndarray:
    """Move an SSM in time: ``S'[i, j] = S[p(i), p(j)]`` with ``p`` a circular shift by a
    random ``k`` in ``[T/4, 3T/4]`` (``mode="roll"``; keeps the matrix's own structure) or a
    random permutation (``mode="permute"``)."""
    s = np.asarray(s)
    return s[np.ix_(*(2 * [_shuffle_index(s.shape[0], rng, mode)]))]


def _shuffle_index(n: int, rng: np.random.Generator, mode: str) -> np.ndarray:
    if mode == "roll":
        k = int(rng.integers(max(1, n // 4), max(2, 3 * n // 4 + 1)))
        return (np.arange(n) + k) % n
    if mode == "permute":
        return rng.permutation(n)
    raise ValueError(f"unknown shuffle mode {mode!r}; use 'roll' or 'permute'")


def chance_score(
    s: np.ndarray,
    ref: np.ndarray,
    rng: np.random.Generator,
    n: int = 20,
    mode: str = "roll",
) -> float:
    """Chance level of :func:`rank_score`: its mean over ``n`` time-moved references
    (:func:`shuffle_ssm`), NaN-skipping."""
    return float(rank_scores(np.asarray(s)[None], ref, rng, n, mode)[1][0])


@dataclass(frozen=True)
class RankedStack:
    """A stack of SSMs ``(K, T, T)`` ranked for :func:`rank_scores`: each one's centred
    upper-triangle ranks (:func:`rank_matrix`) ``(K, T (T-1) / 2)`` and their norms ``(K,)``.
    Ranking is most of a score's cost and does not depend on the reference, so a window's
    layers are ranked once for all its references (:func:`rank_stack`)."""

    centred: np.ndarray
    norms: np.ndarray
    size: int  # T


def rank_stack(ssms: np.ndarray) -> RankedStack:
    """:class:`RankedStack` of a stack of SSMs ``(K, T, T)``."""
    ssms = np.asarray(ssms)
    t = ssms.shape[-1]
    iu = np.triu_indices(t, k=1)
    layers = np.stack([rank_matrix(s)[iu] for s in ssms])
    layers = layers - layers.mean(axis=1, keepdims=True)
    return RankedStack(layers, np.sqrt((layers * layers).sum(axis=1)), t)


def rank_scores(
    ssms: np.ndarray | RankedStack,
    ref: np.ndarray,
    rng: np.random.Generator,
    n: int = 20,
    mode: str = "roll",
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rank_score` and :func:`chance_score` of a stack of SSMs ``(K, T, T)`` (the
    layers, or their :func:`rank_stack`) against one reference, with the same ``n`` shuffles
    for every layer. Returns ``(scores (K,), chance (K,))``."""
    ranked = ssms if isinstance(ssms, RankedStack) else rank_stack(ssms)
    layers, lnorm = ranked.centred, ranked.norms
    t = ref.shape[0]
    if t != ranked.size:
        raise ValueError(f"reference has {t} frames, the SSMs {ranked.size}")
    iu = np.triu_indices(t, k=1)
    rref = rank_matrix(ref)

    def corr(vec: np.ndarray) -> np.ndarray:
        v = vec - vec.mean()
        den = lnorm * np.sqrt((v * v).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, layers @ v / np.where(den > 0, den, 1.0), np.nan)

    scores = corr(rref[iu])
    shuffled = []
    for _ in range(n):
        p = _shuffle_index(t, rng, mode)
        shuffled.append(corr(rref[np.ix_(p, p)][iu]))
    if not shuffled:
        return scores, np.full(len(layers), np.nan)
    with warnings.catch_warnings():  # all-NaN columns (constant layer SSM) stay NaN quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        chance = np.nanmean(np.stack(shuffled), axis=0)
    return scores, chance


# ----------------------------------------------------------------------------------------
# Novelty and boundaries
# ----------------------------------------------------------------------------------------


def checkerboard_kernel(half_width: int, var: float = 0.5) -> np.ndarray:
    """Foote's checkerboard kernel ``(2L, 2L)`` with a Gaussian taper (libfmp's taper):
    ``K[a, b] = sign(u_a) sign(u_b) exp(-(u_a^2 + u_b^2) / (2 (L var)^2))`` with
    ``u_a = a + 1/2`` for ``a = -L .. L-1``, scaled so ``sum |K| = 1``. Positive on the two
    same-side quadrants, negative on the two cross quadrants.

    libfmp's kernel has odd size with a zero centre row; this one has even size, so the
    novelty at frame ``n`` compares frames ``n-L .. n-1`` with ``n .. n+L-1`` and a change
    that starts at frame ``n`` peaks at ``n`` exactly (the odd kernel gives a two-frame
    plateau, ``n-1`` and ``n``, and peak picking keeps the earlier: 32 ms early)."""
    if half_width < 1:
        raise ValueError(f"kernel half-width must be >= 1, got {half_width}")
    u = np.arange(-half_width, half_width, dtype=np.float64) + 0.5
    taper = np.exp(-(u**2) / (2.0 * (half_width * var) ** 2))
    k = np.outer(np.sign(u) * taper, np.sign(u) * taper)
    return k / np.abs(k).sum()


def novelty_curve(
    s: np.ndarray,
    half_width: int = NOVELTY_KERNEL,
    var: float = 0.5,
    padding: str = "symmetric",
    exclude_edges: bool = False,
) -> np.ndarray:
    """Novelty ``nu[n] = sum_{a,b} K[a, b] S[n + a, n + b]`` along the diagonal of ``s``
    (``(T, T)``) with ``K`` from :func:`checkerboard_kernel` (``a, b = -L .. L-1``): high
    where frames ``n-L .. n-1`` are similar among themselves, frames ``n .. n+L-1`` too, and
    the two groups differ, i.e. where something changes at frame ``n``.

    Outside the matrix, ``padding="symmetric"`` mirrors it about its edges
    (``S[-1-a, -1-b] = S[a, b]``), so a window edge looks like a continuation and scores 0;
    ``"constant"`` pads zeros as libfmp does, which makes edges look like changes, hence
    libfmp's ``exclude_edges`` (first and last ``L`` values set to 0)."""
    s = np.asarray(s, dtype=np.float64)
    n = s.shape[0]
    kernel = checkerboard_kernel(half_width, var)
    m = kernel.shape[0]
    if padding not in ("symmetric", "constant"):
        raise ValueError(f"unknown padding {padding!r}; use 'symmetric' or 'constant'")
    padded = np.pad(s, half_width, mode=padding)
    # block n of the padded matrix holds original rows/cols n-L .. n+L-1
    blocks = sliding_window_view(padded, (m, m))[np.arange(n), np.arange(n)]
    nov = np.einsum("nab,ab->n", blocks, kernel)
    if exclude_edges:
        nov[: min(half_width, n)] = 0.0
        nov[max(n - half_width, 0) :] = 0.0
    return nov


def change_points(intervals: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Times where the label changes: the starts of intervals whose label differs from the
    previous interval's (the first interval's start is not a change)."""
    ints = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    order = np.argsort(ints[:, 0], kind="stable")
    ints = ints[order]
    labs = [labels[i] for i in order]
    return np.array([ints[i, 0] for i in range(1, len(ints)) if labs[i] != labs[i - 1]])


def boundaries_to_intervals(boundaries: np.ndarray, duration: float) -> np.ndarray:
    """Segments ``(K+1, 2)`` covering ``[0, duration]`` split at ``boundaries`` (sorted; those
    outside ``(0, duration)`` dropped)."""
    b = np.sort(np.asarray(boundaries, dtype=np.float64).reshape(-1))
    b = b[(b > 0) & (b < duration)]
    edges = np.concatenate([[0.0], b, [float(duration)]])
    return np.stack([edges[:-1], edges[1:]], axis=1)


def random_boundaries(n: int, duration: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` boundary times drawn uniformly in ``(0, duration)``, sorted: the chance level of
    boundary detection when the number of boundaries is known (an optimistic chance, since a
    detector is not told that number)."""
    return np.sort(rng.uniform(0.0, float(duration), size=int(n)))


def boundary_f_measure(
    reference: np.ndarray,
    estimated: np.ndarray,
    duration: float,
    window: float = BOUNDARY_WINDOW,
) -> tuple[float, float, float]:
    """``(F, precision, recall)`` of estimated boundary times against reference boundary times
    inside a clip of ``duration`` s, by ``mir_eval.segment.detection`` (hit window ``± window``,
    ``trim=True`` so the clip's own start and end are not counted as boundaries)."""
    ref = boundaries_to_intervals(reference, duration)
    est = boundaries_to_intervals(estimated, duration)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        p, r, f = mir_eval.segment.detection(ref, est, window=window, trim=True)
    return float(f), float(p), float(r)
