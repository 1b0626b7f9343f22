"""Checkpoint folders: ``model.safetensors`` + ``config.json``, written atomically.

A checkpoint folder is self-describing: ``config.json`` holds the model's constructor
arguments (``"model"``), and optionally the full training configuration (``"training"``)
and provenance. Weights are stored with safetensors, which cannot execute code when
loaded; training state (optimiser) is a separate ``state.pt`` read with
``torch.load(weights_only=True)``. A pickle offered as ``model.safetensors`` is recognised
by its first bytes and refused before any parser reads it. A full disk while writing raises
a :class:`UserError` that says so; the half-written temporary is removed and nothing that was
there before is replaced.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vit1d.core import atomic
from vit1d.core.errors import UserError
from vit1d.core.provenance import is_head_parameter
from vit1d.models.model import ViT1D

#: Errors that mean "no room left": a full disk or an exhausted quota.
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` reports a full disk; writers that are not Python's own (safetensors'
    Rust code, torch's zip writer) report it in their message, not as an errno."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True
    text = str(exc)
    return any(
        s in text for s in ("No space left", "os error 28", "StorageFull", "Disk quota exceeded")
    )


class _DiskFull(UserError):
    """The disk filled up while writing; an outer writer re-raises it naming its own target."""


@contextlib.contextmanager
def _disk_full_is_a_user_error(target: Path, cleanup: Path | None) -> Iterator[None]:
    """Remove the half-written ``cleanup`` (a file or folder; None: the writer inside removes
    its own) on any failure, and turn a full disk into a :class:`UserError` that says so:
    nothing was replaced, the earlier files stand."""
    try:
        yield
    except BaseException as exc:
        if cleanup is not None and cleanup.is_dir():
            shutil.rmtree(cleanup, ignore_errors=True)
        elif cleanup is not None:
            cleanup.unlink(missing_ok=True)
        if isinstance(exc, _DiskFull) or (isinstance(exc, Exception) and _is_disk_full(exc)):
            raise _DiskFull(
                f"the disk is full (no space left on the disk of {target.parent}): cannot "
                f"write {target.name}. Nothing was replaced: the "
                "previous checkpoint and files are intact. Free some space (or write to another "
                "disk with --out) and run again; `vit1d pretrain --resume` continues from the "
                "last complete checkpoint"
            ) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that readers see the old or the new content, never a part
    (:func:`vit1d.core.atomic.write_text`); a full disk is a clear error."""
    with _disk_full_is_a_user_error(path, None):
        atomic.write_text(path, text)


def _atomic_save(write, path: Path) -> None:
    """Run ``write(tmp_path)`` then rename onto ``path`` (fsynced first)."""
    with _disk_full_is_a_user_error(path, None), atomic.replacing(path) as tmp:
        write(tmp)


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
    # a failure (a full disk) removes the partial folder and leaves ``folder`` as it was
    with _disk_full_is_a_user_error(folder, tmp):
        save_pretrained(model, tmp, extra, state)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder, with a clear error when absent."""
    if Path(folder).is_file():
        raise UserError(
            f"{folder} is a file, not a checkpoint folder; give the folder that holds "
            "model.safetensors and config.json (pickled .pt/.bin weights are not accepted: "
            "loading a pickle can run arbitrary code)"
        )
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


def _check_safetensors(path: Path) -> None:
    """Refuse a weights file that is not safetensors before any parser sees it. A safetensors
    file starts with an 8-byte little-endian header length, then the JSON header ``{``."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    size = path.stat().st_size
    n = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    if len(head) == 9 and head[8:9] == b"{" and 0 < n <= size - 8:
        return
    if head[:1] == b"\x80" or head[:4] == b"PK\x03\x04":  # pickle protocol 2+, torch.save zip
        raise UserError(
            f"{path} is a pickle (torch.save) file, not safetensors; it was not loaded, because "
            "unpickling can run arbitrary code. Convert it where you trust it: "
            "safetensors.torch.save_file(torch.load(f, weights_only=True), 'model.safetensors')"
        )
    raise UserError(
        f"{path} is not a safetensors file (damaged or truncated, {size} bytes); "
        "copy the checkpoint again or re-export it with vit1d.save_pretrained"
    )


def load_pretrained(
    path: str | Path, device: str | torch.device = "cpu", head: bool = True
) -> ViT1D:
    """A :class:`ViT1D` from a checkpoint folder (``model.safetensors`` + ``config.json``),
    in eval mode. ``head=False`` drops the projection heads (the analyses never use them)."""
    folder = Path(path)
    config = read_config(folder)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise UserError(
            f"{folder} has config.json but no model.safetensors; copy the whole checkpoint "
            "folder again, or re-export it"
        )
    _check_safetensors(weights)
    if not isinstance(config.get("model"), dict):
        raise UserError(
            f"{folder / 'config.json'} has no 'model' section; the checkpoint is damaged: "
            "copy it again or re-export it with vit1d.save_pretrained"
        )
    model_cfg = dict(config["model"])
    state = load_file(str(weights))
    if not head:
        model_cfg["head"] = "none"  # no head kind: neither head is built
        state = {k: v for k, v in state.items() if not is_head_parameter(k)}
    fix = "put back the config.json written with these weights, or re-export the checkpoint"
    try:
        model = ViT1D(**model_cfg)
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"{folder / 'config.json'}: invalid model settings ({exc}); {fix}"
        ) from None
    expected = model.state_dict()
    # compare shapes first: load_state_dict would raise a long RuntimeError for them
    wrong = [
        f"{k} {tuple(state[k].shape)} in the weights, {tuple(v.shape)} in the config"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if wrong or missing or unexpected:
        details = "; ".join(
            part
            for part in (
                f"shapes differ: {', '.join(wrong[:2])}" if wrong else "",
                f"missing: {missing[:3]}" if missing else "",
                f"unexpected: {unexpected[:3]}" if unexpected else "",
            )
            if part
        )
        raise UserError(
            f"weights in {weights} do not match its config.json ({details}): the config.json "
            f"belongs to other weights; {fix}"
        )
    model.load_state_dict(state)
    return model.to(device).eval()
