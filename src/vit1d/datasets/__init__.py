"""Adapters from real datasets to the corpus format of the probing suite.

Each adapter reads a user's local copy of one dataset of the paper (nothing is downloaded) and
writes ``<out>/<task>/manifest.csv`` (plus annotations in ``mir_eval`` formats under
``<out>/annotations/<dataset>/``) with deterministic splits, skipping and counting the files it
cannot match; see :mod:`vit1d.datasets._common` for the shared conventions. Several datasets
may share one corpus root as long as they fill different tasks, so one root can hold the whole
probing suite::

    vit1d data mtat --source ~/data/magnatagatune --out data/real
    vit1d data giantsteps_key --source ~/data/giantsteps --out data/real

=================  ====================  ======================================  ===========
dataset            tasks                 split                                   parser
=================  ====================  ======================================  ===========
mtat               tagging               clip folders 0-b / c / d-f              direct
giantsteps_key     key                   MTG train, GiantSteps test (or seeded)  mirdata+direct
giantsteps_tempo   tempo                 repository folds 1-8 / 9 / 10           mirdata
tinysol            pitch, instrument     official folds 0-2 / 3 / 4              direct
rwc_pop            chords                seeded by artist                        mirdata
winterreise        chords                song split 1-13 / 14-16 / 17-24         direct
ballroom           beats                 seeded by album                         mirdata
gtzan_rhythm       beats                 fault-filtered, else seeded per genre   mirdata
fma                pretrain              FMA's tracks.csv split (or seeded)      direct
=================  ====================  ======================================  ===========
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from vit1d.core.errors import UserError

#: Adapter name -> module, in the order ``vit1d data --help`` lists them.
ADAPTERS = {
    "mtat": "vit1d.datasets.mtat",
    "giantsteps_key": "vit1d.datasets.giantsteps_key",
    "giantsteps_tempo": "vit1d.datasets.giantsteps_tempo",
    "tinysol": "vit1d.datasets.tinysol",
    "rwc_pop": "vit1d.datasets.rwc_pop",
    "winterreise": "vit1d.datasets.winterreise",
    "ballroom": "vit1d.datasets.ballroom",
    "gtzan_rhythm": "vit1d.datasets.gtzan_rhythm",
    "fma": "vit1d.datasets.fma",
}


def adapter(name: str) -> ModuleType:
    """The adapter module of a dataset (``NAME``, ``TITLE``, ``TASKS``, ``ORIGIN``,
    ``LAYOUT``, ``build``)."""
    if name not in ADAPTERS:
        raise UserError(f"unknown dataset {name!r}; datasets: {', '.join(ADAPTERS)}")
    return importlib.import_module(ADAPTERS[name])


def build(name: str, source: str | Path, out_root: str | Path, seed: int = 0) -> Path:
    """Run the adapter ``name`` on ``source``, writing into ``out_root``; returns the root."""
    return adapter(name).build(Path(source), Path(out_root), seed)
