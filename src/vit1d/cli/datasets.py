"""``vit1d data``: turn a local copy of a real dataset into a corpus root for the probes.

Registered by :mod:`vit1d.cli` through :func:`register`.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from vit1d.datasets import ADAPTERS, adapter

DESCRIPTION = """\
Write <out>/<task>/manifest.csv (and annotations in mir_eval formats under
<out>/annotations/<dataset>/) from your local copy of a dataset of the paper, for
`vit1d probe --data <out>` or, for fma, `vit1d train --data <out>/pretrain`. Nothing is
downloaded or copied: <out>/source/<dataset> links to --source and the manifests point through
it. Splits are deterministic (the dataset's own split where it has one, else seeded by
artist/album/work with --seed). Files that cannot be matched are skipped and counted in the
summary and in <out>/datasets.json. Datasets filling different tasks may share one --out.
Some adapters parse with mirdata: pip install 'vit1d[datasets]'.
"""


def _epilog() -> str:
    lines = ["datasets (where to get them; what --source points at):"]
    for name in ADAPTERS:
        mod = adapter(name)
        lines.append(f"  {name}: {mod.TITLE} -> {', '.join(mod.TASKS)}")
        for label, text in (("from", mod.ORIGIN), ("--source", mod.LAYOUT)):
            # never break inside a URL or a file name
            lines += textwrap.wrap(
                text,
                width=96,
                initial_indent=f"      {label}: ",
                subsequent_indent=" " * 8,
                break_long_words=False,
                break_on_hyphens=False,
            )
    lines += [
        "examples:",
        "  vit1d data mtat --source ~/datasets/magnatagatune --out data/real",
        "  vit1d data tinysol --source ~/datasets/TinySOL --out data/real",
        "  vit1d probe --data data/real --checkpoint runs/default/pretrain --tasks tagging,pitch",
    ]
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data",
        help="make a corpus root from a local copy of a real dataset (MTAT, GiantSteps, ...)",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="dataset", metavar="DATASET")
    sub.required = True
    for name in ADAPTERS:
        mod = adapter(name)
        d = sub.add_parser(
            name,
            help=f"{mod.TITLE} -> {', '.join(mod.TASKS)}",
            description=(mod.__doc__ or mod.TITLE).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        d.add_argument("--source", required=True, metavar="DIR", help=f"your copy: {mod.LAYOUT}")
        d.add_argument("--out", required=True, metavar="ROOT", help="corpus root to write")
        d.add_argument("--seed", type=int, default=0, help="seed of the seeded splits (default 0)")
        d.add_argument("--quiet", action="store_true", help="print nothing on success")
        d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    mod = adapter(args.dataset)
    mod.build(Path(args.source), Path(args.out), args.seed, quiet=args.quiet)
    return 0
