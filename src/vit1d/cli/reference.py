"""``vit1d reference``: train (or resume) the long preset and export the reference checkpoint,
or the default preset's masked foil (``--foil``), and probe what is committed
(:mod:`vit1d.studies.reference`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vit1d.core.errors import UserError
from vit1d.pretrain.config import load_config
from vit1d.pretrain.train import pretrain
from vit1d.studies.reference import (
    REFERENCE_DIR,
    committed_sources,
    export_reference,
    own_bytes,
    probe_committed,
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
    p.add_argument(
        "--preset", default="", help="training preset (default: long; with --foil: default)"
    )
    p.add_argument(
        "--foil",
        action="store_true",
        help="train (or resume) the preset's masked foil instead (loss.objective=masked) and "
        "export it to <out>/foil",
    )
    p.add_argument(
        "--export-only", action="store_true", help="export the run's latest checkpoint as it is"
    )
    p.add_argument("--no-probe", action="store_true", help="export without probing")
    p.add_argument(
        "--probe-only",
        action="store_true",
        help="only probe the committed models as they are: the reference at --out, the foil "
        "and the random-init baseline (after a change of the probe settings or code, or of the "
        "corpus)",
    )
    p.add_argument(
        "--only",
        default="",
        help="with --probe-only: probe only this model (reference, masked or random-init)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli)


def _cli(args: Any) -> int:
    data = Path(args.data)
    progress = not args.no_progress
    out = Path(args.out)
    if args.probe_only:
        sources = committed_sources(out)
        if args.only and args.only not in sources:
            have = ", ".join(sources)
            raise UserError(f"--only {args.only}: nothing of that name in {out} (have: {have})")
        for name, (group, folder) in sources.items():
            if not args.only or name == args.only:
                results = probe_committed(group, folder, data, progress=progress)
                print(f"{name} probes: {results}")
        return 0
    if not args.run:
        raise UserError("vit1d reference needs --run (the training run folder), or --probe-only")
    preset = args.preset or ("default" if args.foil else "long")
    config = load_config(preset, ["loss.objective=masked"] if args.foil else [])
    if args.foil:
        out = out / "foil"
    if not args.export_only:
        pretrain(
            config,
            data / "pretrain" / "manifest.csv",
            args.run,
            resume="auto",
            progress=False if args.no_progress else None,
        )
    out = export_reference(args.run, data, out, None if args.foil else args.study or None)
    if not args.no_probe:
        name = "masked" if args.foil else "reference"
        group, _ = committed_sources(Path(args.out))[name]
        probe_committed(group, out, data, progress=progress)
    prov = json.loads((out / "provenance.json").read_text())
    print(
        f"{'foil' if args.foil else 'reference'}: step {prov['steps']} of "
        f"{prov['planned_steps']}, {own_bytes(out) / 2**20:.1f} MB in {out} "
        f"(check: max deviation {verify_reference(out):.1e})"
    )
    return 0
