"""The embedded corpus: real scores rendered to exactly labelled audio, for every task.

The paper's datasets cannot be downloaded here, so the default data of this project are
built from the scores that ship with ``music21`` (Bach chorales, Palestrina, Monteverdi,
string quartets, Essen and O'Neill folk tunes, ...), rendered in-process with a
General-MIDI SoundFont. Labels come from the scores, so they are exact.

Modules, one concept each:

* :mod:`~vit1d.corpus.scores`: music21 parsing, reduced to cached note events;
* :mod:`~vit1d.corpus.repeats`: bars, repeat signs and endings, events in playing order;
* :mod:`~vit1d.corpus.palette`: instruments, ranges, GM programs, ensembles, drum patterns;
* :mod:`~vit1d.corpus.labels`: beats, chords, keys, onsets, tags, annotation files;
* :mod:`~vit1d.corpus.render`: synthesis (TinySoundFont, or :mod:`~vit1d.corpus.sf2` in
  NumPy) and audio files;
* :mod:`~vit1d.corpus.effects`: room, EQ, noise, loudness;
* :mod:`~vit1d.corpus.jobs`: one seeded render job (settings, audio, labels, record);
* :mod:`~vit1d.corpus.records`: job records; a music render's labels and annotation files;
* :mod:`~vit1d.corpus.tasks`: splits and the task manifests;
* :mod:`~vit1d.corpus.stats`: counts, label distributions and their figure;
* :mod:`~vit1d.corpus.baseline`: the log-mel baseline check;
* :mod:`~vit1d.corpus.build`: the whole build; :mod:`vit1d.cli.corpus`: ``vit1d corpus``.

Quick use::

    from vit1d.corpus import build_corpus, load_preset
    build_corpus(load_preset("smoke"), "data/corpus-smoke")
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_corpus", "load_preset", "run_baseline", "TASKS"]

from vit1d.corpus.config import load_preset
from vit1d.corpus.tasks import TASKS


def __getattr__(name: str) -> Any:  # lazy: importing the package stays cheap
    if name == "build_corpus":
        from vit1d.corpus.build import build_corpus

        return build_corpus
    if name == "load_preset":
        return load_preset
    if name == "run_baseline":
        from vit1d.corpus.baseline import run_baseline

        return run_baseline
    raise AttributeError(f"module 'vit1d.corpus' has no attribute {name!r}")
