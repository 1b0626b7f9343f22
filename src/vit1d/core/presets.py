"""Pipeline presets: the one home of what each ``make book PRESET=<name>`` does besides
pretraining (``src/vit1d/presets/pipeline.yaml``, every key commented there).

Each preset names its corpus preset, whether the recipe chapter runs its study, the
benchmark suite of the reproducibility appendix, where its masked foil comes from, its probing
(read into :class:`vit1d.probing.settings.ProbeSettings`) and its recipe-study size (read into
:class:`vit1d.studies.recipes.StudySettings`). Those owners validate their sections with
:func:`vit1d.core.settings.merge_settings`; this module checks that every preset has every
section and that a preset name is known.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from vit1d.core.errors import UserError
from vit1d.core.paths import PRESET_DIR
from vit1d.core.settings import read_yaml

#: The pipeline presets' file.
PIPELINE_FILE = PRESET_DIR / "pipeline.yaml"
SECTIONS = ("corpus", "study_in_book", "bench", "foil", "probing", "study")
#: The benchmark suites a preset can ask the appendix for.
BENCH_SUITES = ("quick", "full")
#: Where a build's masked foil comes from: trained in the build, or the committed one
#: (``checkpoints/reference/foil``) when it was trained with the build's settings.
FOIL_SOURCES = ("train", "committed")


@dataclass(frozen=True)
class PipelinePreset:
    """One pipeline preset as written in :data:`PIPELINE_FILE` (``probing`` and ``study``
    raw, for their owners to validate)."""

    name: str
    corpus: str
    study_in_book: bool
    bench: str  # one of BENCH_SUITES
    foil: str  # one of FOIL_SOURCES
    probing: dict[str, Any]
    study: dict[str, Any]
    source: str  # the file, for error messages


@lru_cache(maxsize=4)
def _read(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    for name, preset in data.items():
        where = f"pipeline preset '{name}' in {path}"
        if not isinstance(preset, dict):
            raise UserError(f"{where} must be a mapping of {', '.join(SECTIONS)}")
        unknown = sorted(set(preset) - set(SECTIONS))
        missing = [s for s in SECTIONS if s not in preset]
        if unknown or missing:
            raise UserError(
                f"{where}: "
                + (f"unknown section(s) {', '.join(unknown)}; " if unknown else "")
                + (f"missing section(s) {', '.join(missing)}; " if missing else "")
                + f"every preset lists exactly {', '.join(SECTIONS)}"
            )
        if not isinstance(preset["study_in_book"], bool):
            raise UserError(f"{where}: study_in_book must be true or false")
        if preset["bench"] not in BENCH_SUITES:
            raise UserError(f"{where}: bench must be one of {', '.join(BENCH_SUITES)}")
        if preset["foil"] not in FOIL_SOURCES:
            raise UserError(f"{where}: foil must be one of {', '.join(FOIL_SOURCES)}")
        for section in ("probing", "study"):
            if not isinstance(preset[section], dict):
                raise UserError(f"{where}: '{section}' must be a mapping ({{}} for the defaults)")
    return data


def pipeline_names(path: Path = PIPELINE_FILE) -> tuple[str, ...]:
    """The pipeline presets, in the file's order."""
    return tuple(_read(path))


def pipeline_preset(name: str, path: Path = PIPELINE_FILE) -> PipelinePreset:
    """The pipeline preset ``name``; an unknown name raises a UserError listing the known ones."""
    data = _read(path)
    if name not in data:
        raise UserError(
            f"unknown pipeline preset {name!r}: use one of {', '.join(data)} (they are "
            f"defined in {path})"
        )
    preset = copy.deepcopy(data[name])
    return PipelinePreset(name=name, source=str(path), **preset)
