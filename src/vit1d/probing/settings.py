"""How much probing each pipeline preset affords: probe seeds, :class:`ProbeConfig` overrides,
the tasks probed over training, and the analyses' clip counts. The book's chapters, the solver
comparison and the recipe study read them here; each pipeline preset's values live in
``src/vit1d/presets/pipeline.yaml`` (:mod:`vit1d.core.presets`), the defaults below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vit1d.core.errors import UserError
from vit1d.core.presets import pipeline_preset
from vit1d.core.settings import merge_settings
from vit1d.probing.linear import ProbeConfig


@dataclass
class ProbeSettings:
    """How much probing a preset affords."""

    seeds: tuple[int, ...] = (0, 1, 2)
    # init seeds of the random-init baseline: one per probe seed (init seed k probed with probe
    # seed k), or 1: one random network, fitted like a trained checkpoint (every probe seed on
    # it; one exact fit per view). Each init seed is a full extraction and fit.
    random_init_seeds: int = 3
    config: dict[str, Any] = field(default_factory=dict)  # ProbeConfig overrides
    emergence_tasks: tuple[str, ...] = ("key", "tempo", "tagging")
    analyses_clips: int = 0  # per split; 0 = all
    masked_analyses_clips: int = 0


def probe_settings(preset: str) -> ProbeSettings:
    """The ``probing`` section of pipeline preset ``preset`` (``presets/pipeline.yaml``),
    validated: unknown keys, wrong types and ``config`` keys that :class:`ProbeConfig` lacks
    raise a UserError naming the key and the file."""
    spec = pipeline_preset(preset)
    settings = ProbeSettings()
    source = f"{spec.source} (preset {preset})"
    merge_settings(settings, spec.probing, "probing.", source)
    check_probe_overrides(settings.config, "probing.config.", source)
    if settings.random_init_seeds not in (1, len(settings.seeds)):
        raise UserError(
            f"probing.random_init_seeds is {settings.random_init_seeds} in {source}: write 1 "
            f"(one random network) or {len(settings.seeds)} (one per probe seed of "
            f"probing.seeds)"
        )
    return settings


def check_probe_overrides(config: dict[str, Any], prefix: str, source: str) -> dict[str, Any]:
    """``config`` (overrides of :class:`ProbeConfig`) with each value converted to its field's
    type (lists to tuples); an unknown key or a wrong type raises a UserError."""
    probe = ProbeConfig()
    merge_settings(probe, config, prefix, source)
    config.update({key: getattr(probe, key) for key in config})
    return config


def probe_config(preset: str) -> ProbeConfig:
    """The :class:`vit1d.probing.linear.ProbeConfig` of a preset (its ``probing.config``)."""
    return ProbeConfig(**probe_settings(preset).config)
