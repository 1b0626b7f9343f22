"""How much probing each pipeline preset affords: probe seeds, :class:`ProbeConfig` overrides,
the tasks probed over training, and the analyses' clip counts. The book's chapters, the solver
comparison and the recipe study read them here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vit1d.probing.linear import ProbeConfig


@dataclass
class ProbeSettings:
    """How much probing a preset affords."""

    seeds: tuple[int, ...] = (0, 1, 2)
    config: dict[str, Any] = field(default_factory=dict)  # ProbeConfig overrides
    emergence_tasks: tuple[str, ...] = ("key", "tempo", "tagging")
    analyses_clips: int = 0  # per split; 0 = all
    masked_analyses_clips: int = 0


#: Probe settings per pipeline preset. ``smoke`` trades statistical power for a fast CI book
#: (two seeds, short probe training, a few files); the others follow the group's protocol.
PROBE_SETTINGS = {
    "smoke": ProbeSettings(
        seeds=(0, 1),
        config={
            "max_epochs": 8,
            "steps_per_epoch": 24,
            "patience": 3,
            "n_boot": 300,
            "max_train_frames": 20_000,
            "max_local_files": (24, 6, 12),
        },
        emergence_tasks=("key",),
        analyses_clips=6,
        masked_analyses_clips=4,
    ),
    # the group's protocol, capped to fit the one-hour book on a 2-core CPU: probes stop at
    # 20 epochs (most stop earlier on validation loss), global tasks train on at most 1000
    # files and stop on 200; every test file is scored (scoring is cheap and the paired
    # intervals of the claims narrow with the test set: "Measuring" in the claims chapter);
    # local tasks use 200/50/300 tracks; the analyses look at 40 clips per split
    "default": ProbeSettings(
        config={
            "max_epochs": 20,
            "max_global_files": (1000, 200, 0),
            "max_local_files": (200, 50, 300),
            "min_delta": 1e-3,
        },
        analyses_clips=40,
        masked_analyses_clips=20,
    ),
}


def probe_settings(preset: str) -> ProbeSettings:
    return PROBE_SETTINGS.get(preset, PROBE_SETTINGS["default"])


def probe_config(preset: str) -> ProbeConfig:
    """The :class:`vit1d.probing.linear.ProbeConfig` of a preset (:data:`PROBE_SETTINGS`)."""
    return ProbeConfig(**probe_settings(preset).config)
