"""Bars and repeats of a score: bar structure, playing order, events laid out in that order.

music21's own ``expandRepeats`` (and ``stripTies``) cost as much as parsing a score, so
:mod:`vit1d.corpus.scores` expands repeats itself, on plain event lists:
:func:`bar_structure` reads each bar's offset, length, pickup padding, time signature and
repeat marks; :func:`repeat_order` follows repeat signs and first/second endings
(:func:`playing_order` keeps the written order where that cannot be trusted); :func:`expand`
lays a part's events out in that order; :func:`measure_rows` gives the bar table of a work
(``measures`` in the work dict of :mod:`vit1d.corpus.scores`).

Used by :mod:`vit1d.corpus.scores`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def bar_structure(score: Any, part: Any, bars: list[Any]) -> list[dict[str, Any]]:
    """Per bar of ``part``: offset, length, pickup padding, time signature, repeat marks."""
    from music21 import bar, meter, spanner

    endings: dict[int, set[int]] = {}
    try:
        brackets = part.spannerBundle.getByClass(spanner.RepeatBracket)
    except Exception:
        brackets = []
    for br in brackets:
        try:
            nums = {int(x) for x in br.getNumberList()}
        except Exception:
            continue
        for m in br.getSpannedElements():
            endings.setdefault(id(m), set()).update(nums)
    out: list[dict[str, Any]] = []
    current = None
    for i, m in enumerate(bars):
        ts = m.timeSignature or current
        if ts is None:
            ts = m.getContextByClass(meter.TimeSignature)
        if ts is None:
            return []
        current = ts
        bar_len = float(ts.barDuration.quarterLength)
        dur = float(m.duration.quarterLength)
        pad = float(m.paddingLeft or 0.0)
        if i == 0 and pad == 0.0 and 0 < dur < bar_len:
            pad = bar_len - dur  # an unmarked pickup bar
        left, right = m.leftBarline, m.rightBarline
        out.append(
            {
                "offset": float(m.offset),
                "dur": dur,
                "pad": pad,
                "ts": [
                    int(ts.numerator),
                    int(ts.denominator),
                    round(float(ts.beatDuration.quarterLength), 6),
                ],
                "start": isinstance(left, bar.Repeat) and left.direction == "start",
                "end": (
                    int(right.times or 2)
                    if isinstance(right, bar.Repeat) and right.direction == "end"
                    else 0
                ),
                "endings": endings.get(id(m), set()),
            }
        )
    return out


def repeat_order(bars: list[dict[str, Any]]) -> list[int]:
    """Bar indices in playing order: repeat signs and first/second endings followed."""
    order: list[int] = []
    played: dict[int, int] = {}
    section, pass_no, i = 0, 1, 0
    n = len(bars)
    while i < n and len(order) <= 4 * n:
        b = bars[i]
        if b["start"] and i != section:
            section, pass_no = i, 1
        if b["endings"] and pass_no not in b["endings"]:
            i += 1
            continue
        order.append(i)
        if b["end"]:
            played[i] = played.get(i, 0) + 1
            if played[i] < b["end"]:
                pass_no += 1
                i = section
                continue
            section, pass_no = i + 1, 1
        elif b["endings"] and (i + 1 >= n or not bars[i + 1]["endings"]):
            section, pass_no = i + 1, 1  # a last ending closes the repeated section
        i += 1
    return order


def expand(
    events: list[list[float]], bars: list[dict[str, Any]], order: list[int]
) -> list[list[float]]:
    """Lay a part's events out in playing order (bars repeated, skipped endings dropped)."""
    starts = np.asarray([b["offset"] for b in bars])
    idx = np.searchsorted(starts, np.asarray([e[0] for e in events]) + 1e-6, side="right") - 1
    by_bar: dict[int, list[list[float]]] = {}
    for e, k in zip(events, idx, strict=True):
        by_bar.setdefault(int(max(k, 0)), []).append(e)
    out: list[list[float]] = []
    t = 0.0
    for pos, i in enumerate(order):
        b = bars[i]
        follows = pos + 1 < len(order) and order[pos + 1] == i + 1
        for on, dur, midi in by_bar.get(i, []):
            if not follows:  # a tie into a bar that is not played next: cut at the bar line
                dur = min(dur, b["offset"] + b["dur"] - on)
            if dur > 0:
                out.append([round(on - b["offset"] + t, 6), round(dur, 6), midi])
        t += b["dur"]
    return out


def playing_order(bars: list[dict[str, Any]], bar_counts: list[int]) -> list[int] | None:
    """:func:`repeat_order` of ``bars``, or ``None`` (events stay as written) when there are no
    bars, the order runs past four passes, or a part with bars (``bar_counts``, one number per
    part) has another number of them."""
    order = repeat_order(bars) if bars else None
    if order is not None and (
        len(order) > 4 * len(bars) or any(n != len(bars) for n in bar_counts if n)
    ):
        order = None
    return order


def measure_rows(bars: list[dict[str, Any]], order: list[int] | None) -> list[list[float]]:
    """``[offset, duration, pad_left, numerator, denominator, beat]`` per bar in playing order
    (offsets as written when ``order`` is ``None``, else laid end to end from 0)."""
    measures: list[list[float]] = []
    if bars:
        seq = order if order is not None else list(range(len(bars)))
        t = bars[seq[0]]["offset"] if order is None else 0.0
        for i in seq:
            b = bars[i]
            off = b["offset"] if order is None else t
            measures.append([round(off, 6), round(b["dur"], 6), round(b["pad"], 6)] + b["ts"])
            t = off + b["dur"]
    return measures
