"""A training run's folder: the checkpoints that make it resumable, its log and its snapshots.

Every ``checkpoint_every`` steps a folder ``checkpoints/step-NNNNNNNN`` appears atomically with
the weights, the optimiser and gradient-scaler state and the RNG state, and the ``latest``
pointer is replaced after it (the last :data:`KEEP_CHECKPOINTS` are kept). ``log.csv`` is cut
back to the resumed step; a resumed run must have the same configuration but for the settings
of :data:`RESUMABLE_CHANGES`. Model-only ``snapshots/step-NNNNNNNN`` are kept for good.
"""

from __future__ import annotations

import csv
import io
import shutil
import sys
from pathlib import Path
from typing import Any

from vit1d.core import faults
from vit1d.core.errors import UserError
from vit1d.models.checkpoint import atomic_write_text, save_checkpoint_folder
from vit1d.models.model import ViT1D
from vit1d.pretrain.config import Config

LOG_COLUMNS = ["step", "loss", "lr", "weight_decay", "grad_norm", "views_per_s", "elapsed_s"]


#: Settings that may differ between a run and its resumption (they do not change the maths).
RESUMABLE_CHANGES = {
    "train.checkpoint_every",
    "train.progress",
    "train.device",
    "train.num_threads",
    "train.compile",
    "train.prefetch",
    "data.cache_dir",
    "data.decode_workers",
}


KEEP_CHECKPOINTS = 2


def report_skipped(skipped: list[dict[str, str]], total: int, out_dir: Path) -> None:
    """List the files left out of the pool in ``skipped_files.csv`` and say so on stderr."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["file", "reason"])
    writer.writeheader()
    writer.writerows(skipped)
    atomic_write_text(out_dir / "skipped_files.csv", buffer.getvalue())
    print(
        f"vit1d pretrain: {len(skipped)} of {total} audio files could not be decoded and were "
        f"left out (listed in {out_dir / 'skipped_files.csv'}), e.g. {skipped[0]['file']}",
        file=sys.stderr,
    )


def latest_checkpoint(out_dir: Path) -> Path | None:
    pointer = out_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    folder = out_dir / "checkpoints" / pointer.read_text().strip()
    return folder if (folder / "state.pt").is_file() else None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_same_config(saved: dict[str, Any], cfg: Config, folder: Path) -> None:
    old, new = _flatten(saved), _flatten(cfg.to_dict())
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    changed = [k for k in changed if k not in RESUMABLE_CHANGES]
    if changed:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:5])
        raise UserError(
            f"cannot resume {folder}: the configuration changed ({details}); resume with the "
            "same preset and overrides, or start a new run in another --out folder"
        )


def read_log(path: Path, upto_step: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if int(r["step"]) <= upto_step]


def existing_run(out_dir: Path, resume: bool | str) -> Path | None:
    """The checkpoint to resume from (``None``: start afresh), checked against ``resume``."""
    checkpoint = latest_checkpoint(out_dir)
    if resume is True and checkpoint is None:
        raise UserError(
            f"--resume given but {out_dir} holds no checkpoint (no checkpoints/latest); "
            "drop --resume to start a new run there"
        )
    if resume is False and (checkpoint is not None or (out_dir / "model.safetensors").exists()):
        raise UserError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    return None if resume is False else checkpoint


def open_log(log_path: Path, start_step: int) -> Any:
    """The training log, cut back to the resumed step and opened for appending (rank 0)."""
    rows = read_log(log_path, start_step)
    with open(log_path, "w", newline="") as fh:  # drop rows past the checkpoint
        writer = csv.DictWriter(fh, LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return open(log_path, "a", newline="")


def snapshot_folders(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every model snapshot a run kept, in training order."""
    folders = sorted(Path(run_dir).glob("snapshots/step-*"))
    return [(int(f.name.split("-")[1]), f) for f in folders if (f / "config.json").is_file()]


def write_checkpoint(
    model: ViT1D, out_dir: Path, step: int, extra: dict[str, Any], state: dict[str, Any]
) -> None:
    ckpt_dir = out_dir / "checkpoints"
    name = f"step-{step:08d}"
    save_checkpoint_folder(model, ckpt_dir / name, extra, state)
    atomic_write_text(ckpt_dir / "latest", name + "\n")
    old = sorted(p for p in ckpt_dir.glob("step-*") if p.name != name)
    for p in old[: max(0, len(old) - (KEEP_CHECKPOINTS - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    faults.reached("checkpoint")
