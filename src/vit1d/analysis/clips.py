"""The clips the analyses read: a corpus task's manifest, the clips of a split, each clip's
audio and log-mel, the random-init twin of a model, and the chance-draw count both analyses
share.

Used by: :mod:`vit1d.analysis.onsets`, :mod:`vit1d.analysis.ssm_scores`,
:mod:`vit1d.analysis.analyses`, :mod:`vit1d.book.examples`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from vit1d.audio.frontend import SAMPLE_RATE, load_audio
from vit1d.core.errors import UserError
from vit1d.models.model import ViT1D

#: Random draws per clip for the chance levels (onsets and chord-change boundaries).
CHANCE_DRAWS = 10


def read_manifest(root: str | Path, task: str) -> Any:
    """``<root>/<task>/manifest.csv`` as a DataFrame with ``audio`` and ``annotation`` (and
    ``instruments`` where present) made absolute. Raises :class:`UserError` naming the file
    when it or a required column is missing."""
    path = Path(root) / task / "manifest.csv"
    if not path.is_file():
        raise UserError(
            f"no manifest {path}: point --corpus at a corpus root holding <task>/manifest.csv "
            "(build one with `vit1d corpus --preset smoke --out DIR`)"
        )
    df = pd.read_csv(path)
    for col in ("audio", "split", "annotation"):
        if col not in df.columns:
            raise UserError(f"{path} has no column {col!r}; it is not a {task} manifest")
    for col in ("audio", "annotation", "instruments"):
        if col in df.columns:
            df[col] = [
                str((path.parent / p).resolve()) if isinstance(p, str) else p for p in df[col]
            ]
    return df


def select_clips(df: Any, split: str, max_clips: int, seed: int) -> Any:
    """The rows of ``split``; at most ``max_clips`` of them (0: all), drawn with ``seed`` and
    kept in manifest order."""
    rows = df[df["split"] == split]
    if max_clips and len(rows) > max_clips:
        rows = rows.sample(n=max_clips, random_state=seed).sort_index()
    return rows


def random_twin(model: Any, seed: int) -> Any:
    """The same architecture at random initialisation: ``torch.manual_seed(seed)`` then
    ``ViT1D(**model.config)``, in eval mode on the model's device."""
    torch.manual_seed(seed)
    twin = ViT1D(**model.config)
    return twin.to(next(model.parameters()).device).eval()


@dataclass
class Clip:
    """One clip: id, split, audio at 16 kHz, its log-mel ``(T, 128)`` and duration."""

    clip: str
    split: str
    y: np.ndarray
    mel: np.ndarray
    duration: float
    row: dict = field(default_factory=dict)


def load_clip(row: dict, logmel: Any) -> Clip:
    """Read a manifest row's audio (``vit1d.audio.frontend.load_audio``) and compute its log-mel."""
    y = load_audio(row["audio"])
    with torch.no_grad():
        mel = logmel(torch.from_numpy(y).unsqueeze(0))[0].numpy()
    clip = str(row.get("render_id", Path(row["audio"]).stem))
    return Clip(clip, str(row["split"]), y, mel, len(y) / SAMPLE_RATE, dict(row))


def standardised_input(mel: np.ndarray, model: Any) -> np.ndarray:
    """The log-mel as the model sees it, ``(mel - input_mean) / input_std``."""
    return (mel - float(model.input_mean)) / float(model.input_std)


def progress_bar(items: Sequence, desc: str, enabled: bool) -> Any:
    """``items`` with a tqdm bar over clips when ``enabled``, else ``items`` as they are."""
    if not enabled:
        return items

    return tqdm(items, desc=desc, unit="clip", leave=False)
