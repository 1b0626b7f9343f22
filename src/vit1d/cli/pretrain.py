"""``vit1d pretrain``: contrastive pretraining (or the masked foil) on a manifest or a folder of
audio. The work is :func:`vit1d.pretrain.train.pretrain`'s."""

from __future__ import annotations

import json
from typing import Any

from vit1d.pretrain.config import load_config
from vit1d.pretrain.train import dist_info, pretrain


def register(subparsers: Any) -> None:
    """Add ``vit1d pretrain`` to the command line."""
    p = subparsers.add_parser(
        "pretrain",
        help="contrastive pretraining (NT-Xent on the class token)",
        description="Train ViT-1D with NT-Xent on pairs of 4 s crops of the same track. "
        "Writes a checkpoint folder (model.safetensors, config.json), log.csv and run.json.",
    )
    p.add_argument(
        "--preset",
        default="default",
        help="smoke | default | long | paper, or a path to a YAML config",
    )
    p.add_argument(
        "--data",
        required=True,
        help="pretraining manifest.csv (an 'audio' column of paths relative to it) or a folder "
        "of audio files",
    )
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, final model)")
    p.add_argument(
        "--objective",
        choices=["contrastive", "masked"],
        help="contrastive (the paper, default) or masked (the BEST-RQ foil); "
        "same as --set loss.objective=...",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli)


def _cli(args: Any) -> int:
    overrides = list(args.overrides)
    if args.objective:
        overrides.append(f"loss.objective={args.objective}")
    cfg = load_config(args.preset, overrides)
    out = pretrain(
        cfg,
        args.data,
        args.out,
        resume=True if args.resume else False,
        progress=False if args.no_progress else None,
    )
    rank, _ = dist_info()
    if rank != 0:
        return 0
    run = json.loads((out / "run.json").read_text())
    print(
        f"done: {run['steps']} steps, loss {run['first_loss']:.3f} -> {run['final_loss']:.3f}, "
        f"{run['views_per_s_median']:.1f} views/s ({run['precision']}); model in {out}"
    )
    return 0
