"""What features are extracted from: a checkpoint (optionally one of its snapshots), a random
initialisation of an architecture, or the log-mel input itself (:class:`ModelSpec`), and how
each is loaded."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from vit1d.core.errors import UserError
from vit1d.models.checkpoint import load_pretrained, read_config
from vit1d.models.model import ViT1D
from vit1d.pretrain.config import load_config

FP16_MAX = 65504.0


@dataclass(frozen=True)
class ModelSpec:
    """A feature source: ``checkpoint`` (a folder with model.safetensors + config.json),
    ``random`` (a ViT-1D of ``config`` initialised with ``seed``) or ``logmel``.

    ``label`` names it in results (default: ``contrastive``, ``random-init``, ``logmel``) and
    ``step`` is the training step of a checkpoint (0 for random init), when known.
    """

    kind: str
    path: str = ""
    seed: int = 0
    config: dict[str, Any] | None = None
    label: str = ""
    step: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("checkpoint", "random", "logmel"):
            raise UserError(f"unknown model kind {self.kind!r}: use checkpoint, random or logmel")
        if self.kind == "checkpoint" and not self.path:
            raise UserError("a checkpoint model needs a path (a folder with model.safetensors)")

    @property
    def name(self) -> str:
        """The ``model`` column of the results."""
        default = {"checkpoint": "contrastive", "random": "random-init", "logmel": "logmel"}
        return self.label or default[self.kind]

    @property
    def checkpoint_name(self) -> str:
        """The ``checkpoint`` column: the folder (relative to the working directory when
        below it), ``init-seed-N`` or ``-``."""
        if self.kind == "random":
            return f"init-seed-{self.seed}"
        if self.kind == "logmel":
            return "-"
        path = Path(self.path).resolve()
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)


def checkpoint_step(folder: str | Path) -> int | None:
    """Training step of a checkpoint folder: ``step`` in its config.json (snapshots), else
    ``steps`` in a ``run.json`` beside it (a finished run's final model)."""
    folder = Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if isinstance(cfg.get("step"), int):
        return cfg["step"]
    try:
        return int(json.loads((folder / "run.json").read_text())["steps"])
    except (OSError, KeyError, ValueError, json.JSONDecodeError):
        return None


def random_model(config: dict[str, Any], seed: int) -> Any:
    """A :class:`vit1d.ViT1D` of ``config`` (projection head dropped) initialised from
    ``seed``, without touching the global random state."""
    cfg = {**config, "head": "none"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViT1D(**cfg)
    return model.eval()


def load_model(spec: ModelSpec) -> Any:
    """The ViT1D a spec describes (in eval mode, on the CPU), or None for ``logmel``."""

    if spec.kind == "checkpoint":
        return load_pretrained(spec.path, head=False)
    if spec.kind == "random":
        config = spec.config
        if config is None and spec.path:
            config = read_config(spec.path)["model"]
        if config is None:
            raise UserError("a random-init model needs a config (or a checkpoint to copy it from)")
        return random_model(config, spec.seed)
    return None


def architecture_config(value: str) -> dict[str, Any]:
    """The ViT1D arguments of a checkpoint folder or a training preset name/path."""
    path = Path(value)
    if (path / "config.json").is_file():
        return dict(read_config(path)["model"])

    return asdict(load_config(value).model)
