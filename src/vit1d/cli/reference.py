"""``vit1d reference``: train (or resume) the long preset and export the reference checkpoint
(:mod:`vit1d.studies.reference`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vit1d.core.errors import UserError
from vit1d.pretrain.train import pretrain
from vit1d.studies.reference import (
    REFERENCE_DIR,
    export_reference,
    probe_reference,
    verify_reference,
)


def register(subparsers: Any) -> None:
    """Add ``vit1d reference`` to the command line."""
    p = subparsers.add_parser(
        "reference",
        help="train (or resume) the long preset and export the reference checkpoint",
        description="Train the `long` preset on the default corpus's pretraining pool (resumes "
        "the run folder; stop it any time and run again to continue), then export the small "
        "float16 reference folder with its provenance and check.",
    )
    p.add_argument("--data", required=True, help="corpus root (data/default)")
    p.add_argument("--run", default="", help="training run folder (runs/long/pretrain)")
    p.add_argument("--out", default=str(REFERENCE_DIR), help="reference folder to write")
    p.add_argument("--study", default="", help="recipe study folder to copy the summary from")
    p.add_argument("--preset", default="long", help="training preset (default: long)")
    p.add_argument(
        "--export-only", action="store_true", help="export the run's latest checkpoint as it is"
    )
    p.add_argument("--no-probe", action="store_true", help="export without probing")
    p.add_argument(
        "--probe-only",
        action="store_true",
        help="only probe the reference folder at --out as it is (after a change of the probe "
        "settings or code, or of the corpus)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli)


def _cli(args: Any) -> int:
    data = Path(args.data)
    progress = not args.no_progress
    if args.probe_only:
        results = probe_reference(args.out, data, progress=progress)
        print(f"reference probes: {results}")
        return 0
    if not args.run:
        raise UserError("vit1d reference needs --run (the training run folder), or --probe-only")
    if not args.export_only:
        pretrain(
            args.preset,
            data / "pretrain" / "manifest.csv",
            args.run,
            resume="auto",
            progress=False if args.no_progress else None,
        )
    out = export_reference(args.run, data, args.out, args.study or None)
    if not args.no_probe:
        probe_reference(out, data, progress=progress)
    prov = json.loads((out / "provenance.json").read_text())
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(
        f"reference: step {prov['steps']} of {prov['planned_steps']}, {size:.1f} MB in {out} "
        f"(check: max deviation {verify_reference(out):.1e})"
    )
    return 0
