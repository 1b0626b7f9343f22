"""``vit1d analyses``: attention onsets (C3) and layer-wise self-similarity (C4, C4b) of a
checkpoint, with PNG figures on request. The work is :mod:`vit1d.analysis.analyses`'s."""

from __future__ import annotations

import argparse
from typing import Any

from vit1d.analysis import ssm as sm
from vit1d.analysis.analyses import run_analyses
from vit1d.core.errors import UserError


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``analyses`` subcommand to the ``vit1d`` command line."""
    p = subparsers.add_parser(
        "analyses",
        help="attention onsets (C3) and layer-wise self-similarity (C4) for a checkpoint",
        description=(
            "Score onset curves read from attention maps (per layer and head) against the "
            "corpus's onset labels, and each layer's self-similarity against harmony, timbre, "
            "loudness and rhythm references and chord changes; for the checkpoint and its "
            "random-init twin. Writes tidy CSVs and provenance.json into --out."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (model.safetensors)")
    p.add_argument("--corpus", required=True, help="corpus root holding <task>/manifest.csv")
    p.add_argument("--out", required=True, help="output folder for the CSVs")
    p.add_argument("--seed", type=int, default=0, help="random-init twin and sampling seed")
    p.add_argument(
        "--max-clips", type=int, default=0, help="at most this many clips per split (0: all)"
    )
    p.add_argument("--tune-split", default="valid", help="split that chooses peak thresholds")
    p.add_argument("--eval-split", default="test", help="split the results are reported on")
    p.add_argument("--shuffles", type=int, default=20, help="time shifts for SSM chance levels")
    p.add_argument(
        "--only", choices=("onsets", "ssm"), help="run one analysis only (default: both)"
    )
    p.add_argument(
        "--boundary-window",
        type=float,
        default=sm.BOUNDARY_WINDOW,
        help="chord-change hit window in seconds (default 0.5)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    p.add_argument("--figures", action="store_true", help="also write PNG figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Entry point of ``vit1d analyses``."""
    parts = (args.only,) if args.only else ("onsets", "ssm")
    figures = None
    if args.figures:
        # lazy: vit1d.viz.figure_files needs the optional viz extra (matplotlib), and the
        # command line must import without it
        try:  # the viz extra is optional: without it, say so in one line
            from vit1d.viz.figure_files import write_figures
        except ImportError as exc:
            raise UserError(f"figures: {exc}") from None
        figures = write_figures
    written = run_analyses(
        args.checkpoint,
        args.corpus,
        args.out,
        seed=args.seed,
        max_clips=args.max_clips,
        tune_split=args.tune_split,
        eval_split=args.eval_split,
        n_shuffles=args.shuffles,
        parts=parts,
        device=args.device,
        figures=figures,
        progress=not args.no_progress,
        boundary_window=args.boundary_window,
    )
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
