"""Twin renders: the same pretraining excerpt played again by other players in another room.

A rendered track has one instrumentation, one room and one EQ, and two crops of it can be
matched by those alone (the recipe study in ``notebooks/03b_recipe.ipynb``). Because the
corpus is rendered from scores, an excerpt can be played a second time: a *twin* keeps the
score window, tempo, transposition and drum track of its original (so its beats, chords and
key are the same, and its length is the same to the sample) and redraws one set of
settings:

===============  ==========================================================================
redraw           what is drawn again
===============  ==========================================================================
orchestration    the instrumentation: ensemble, instruments, GM programs, octave placement
                 (and the channel levels when the number of channels changes)
production       room, EQ, noise, channel levels, timing and velocity humanisation
both             all of the above
===============  ==========================================================================

A twin of ``pretrain/00012`` is ``twin/<redraw>/00012`` (``twin/<redraw>-2/00012`` for a
second twin of that kind, and so on); its generator is seeded by the corpus seed and that id,
so it is reproducible like every other job. An orchestration twin draws instrumentations
until one differs from the original's (at most :data:`TRIES` times: a one-line melody with a
narrow range may fit few instruments). Timing humanisation, when it is not redrawn, is the
original's note for note.

The pretraining pool's twins are listed in ``pretrain/twins.csv``
(:func:`vit1d.corpus.tasks.twin_manifest_text`), one row per twin, ``twin_of`` naming the
original's ``render_id``. The sampler of :mod:`vit1d.pretrain.data` crops the second view of a pair
from a twin (``data.twin_prob``).

Used by :mod:`vit1d.corpus.build`; tested against the audio in ``tests/test_twins.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vit1d.corpus import jobs
from vit1d.corpus.config import REDRAWS

__all__ = ["REDRAWS", "plan_twin", "redraw_of", "run_twin", "twin_id", "twin_names"]
#: Instrumentation draws an orchestration twin makes before it accepts the original's.
TRIES = 20


def twin_names(twins: list[str]) -> list[tuple[str, str]]:
    """``(name, redraw)`` of each entry of a preset's ``pretrain.twins``: the first twin of a
    kind is named by its redraw (``both``), the k-th by ``<redraw>-k`` (``both-2``)."""
    seen: dict[str, int] = {}
    out = []
    for redraw in twins:
        seen[redraw] = seen.get(redraw, 0) + 1
        out.append((redraw if seen[redraw] == 1 else f"{redraw}-{seen[redraw]}", redraw))
    return out


def twin_id(original: str, name: str) -> str:
    """``("pretrain/00012", "both") -> "twin/both/00012"``."""
    return f"twin/{name}/{original.rsplit('/', 1)[1]}"


def redraw_of(name: str) -> str:
    """The redraw of a twin name (``both-2`` -> ``both``)."""
    return name.split("-", 1)[0]


def plan_twin(
    work: dict[str, Any],
    original: str,
    twin: str,
    redraw: str,
    seed: int,
    cfg: dict[str, Any],
    clip_s: float,
) -> dict[str, Any]:
    """The settings of twin ``twin`` of render ``original``: the original's plan
    (:func:`vit1d.corpus.jobs.plan_music`) with ``redraw`` drawn again from the twin's own
    generator. ``notes_id`` in the result names whose humanisation the notes follow."""
    if redraw not in REDRAWS:
        raise ValueError(f"unknown twin redraw {redraw!r}; use one of {', '.join(REDRAWS)}")
    s = jobs.plan_music(work, original, seed, cfg, clip_s)
    rng = jobs.job_rng(seed, twin)
    r, fx = cfg["render"], cfg["effects"]
    n_before = len(s["channels"])
    if redraw in ("orchestration", "both"):
        parts = jobs.excerpt_parts(work, s["start_q"], s["end_q"])
        # s holds the window rounded to 1e-6: a part can only come back empty at its edge
        used = [parts[i] if len(parts[i]) else work["parts"][i] for i in s["parts_used"]]
        ranges, monophonic = jobs.ensemble_inputs(
            [np.asarray(p, float) for p in used], s["transpose"]
        )
        before = _instruments(s["channels"])
        for _ in range(TRIES):
            ensemble, channels, part_channel = jobs.draw_ensemble(rng, ranges, monophonic, r)
            if _instruments([c.__dict__ for c in channels]) != before:
                break
        s.update(
            ensemble=ensemble,
            channels=[c.__dict__ for c in channels],
            part_channel=part_channel,
        )
    production = redraw in ("production", "both")
    if production or len(s["channels"]) != n_before:
        s["velocity"] = [round(float(v), 3) for v in rng.uniform(0.5, 0.9, size=len(s["channels"]))]
    if production:
        s["humanize_ms"] = round(float(rng.uniform(*r["humanize_ms"])), 3)
        s.update(jobs._plan_effects(rng, fx))
        s["noise_seed"] = int(rng.integers(0, 2**31 - 1))
    s["notes_id"] = twin if production else original
    return s


def _instruments(channels: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(sorted(c["instrument"] for c in channels))


def run_twin(
    root: Path,
    twin: str,
    original: str,
    work: dict[str, Any],
    split: str,
    seed: int,
    cfg: dict[str, Any],
    soundfont: str,
    audio_ext: str = "flac",
) -> dict[str, Any]:
    """Plan, render and label twin ``twin`` of ``original``; writes its files and record
    (kind ``twin``, with ``twin_of`` and ``redraw``) and returns the record."""
    name = twin.split("/")[1]
    redraw = redraw_of(name)
    s = plan_twin(work, original, twin, redraw, seed, cfg, cfg["pretrain"]["clip_s"])
    rec = jobs.run_music(
        root,
        twin,
        work,
        split,
        seed,
        cfg,
        cfg["pretrain"]["clip_s"],
        soundfont,
        audio_ext,
        settings=s,
        extra={"twin_of": original, "twin": name, "redraw": redraw},
    )
    return rec
