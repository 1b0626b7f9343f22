"""Checkpoint folders: ``model.safetensors`` + ``config.json``, written atomically.

A checkpoint folder is self-describing: ``config.json`` holds the model's constructor
arguments (``"model"``), and optionally the full training configuration (``"training"``)
and provenance. Weights are stored with safetensors, which cannot execute code when
loaded; training state (optimiser) is a separate ``state.pt`` read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vit1d.errors import UserError
from vit1d.model import ViT1D


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that readers see the old or the new content, never a part."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_save(write, path: Path) -> None:
    """Run ``write(tmp_path)`` then rename onto ``path`` (fsynced first)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_pretrained(
    model: ViT1D,
    folder: str | Path,
    extra: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (and ``state.pt`` if given) into
    ``folder``, each file atomically (temporary name, then rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic_save(lambda p: save_file(tensors, str(p)), folder / "model.safetensors")
    if state is not None:
        _atomic_save(lambda p: torch.save(state, p), folder / "state.pt")
    config = {"model": model.config, **(extra or {})}
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2, sort_keys=True))
    return folder


def save_checkpoint_folder(
    model: ViT1D,
    folder: str | Path,
    extra: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
) -> Path:
    """Like :func:`save_pretrained`, but the whole folder appears at once: it is written
    under a temporary name and renamed, so a kill never leaves a partial checkpoint."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_pretrained(model, tmp, extra, state)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder, with a clear error when absent."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise UserError(
            f"{folder} is not a checkpoint folder (no config.json); point at a folder written "
            "by `vit1d pretrain` (it holds model.safetensors and config.json)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); the checkpoint is damaged") from None


def load_pretrained(
    path: str | Path, device: str | torch.device = "cpu", head: bool = True
) -> ViT1D:
    """A :class:`ViT1D` from a checkpoint folder (``model.safetensors`` + ``config.json``),
    in eval mode. ``head=False`` drops the projection head (the analyses never use it)."""
    folder = Path(path)
    config = read_config(folder)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"{folder} has config.json but no model.safetensors")
    model_cfg = dict(config["model"])
    state = load_file(str(weights))
    if not head:
        model_cfg["head"] = "none"
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    model = ViT1D(**model_cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(
            f"weights in {weights} do not match its config.json (missing: {missing[:3]}, "
            f"unexpected: {unexpected[:3]}); the checkpoint is damaged or mixed up"
        )
    return model.to(device).eval()
