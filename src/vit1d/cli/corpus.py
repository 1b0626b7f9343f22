"""``vit1d corpus``: build the embedded corpus (and optionally check its baseline).

Registered by :mod:`vit1d.cli` through :func:`register`.
"""

from __future__ import annotations

import argparse
import sys

from vit1d.corpus.baseline import run_baseline
from vit1d.corpus.build import build_corpus
from vit1d.corpus.config import load_preset

DESCRIPTION = """\
Build the embedded corpus: real scores from the corpus bundled with music21 (Bach chorales,
Palestrina, Monteverdi, quartets, Essen and O'Neill folk tunes, ...) rendered in-process with
a General-MIDI SoundFont into exactly labelled 16 kHz audio, with one manifest per task
(<out>/<task>/manifest.csv: pretrain, tagging, key, tempo, chords, beats, onsets, pitch,
instrument) and provenance in <out>/corpus.json. Same preset and seed give the same corpus,
file for file; an interrupted build resumes where it stopped when run again.
"""

EPILOG = """\
presets: smoke (CI, about a minute), default (the book's main corpus: under 10 minutes on
2 cores). Copy src/vit1d/presets/corpus_default.yaml to make your own and pass its path.
Needs: pip install "vit1d[corpus]"; renders with TinySoundFont when installed (the faster
renderer: pip install --no-deps tinysoundfont), else with the built-in NumPy renderer;
VIT1D_RENDERER=numpy or tinysoundfont picks one.
examples:
  vit1d corpus --preset smoke --out data/corpus-smoke
  vit1d corpus --preset default --out data/corpus --workers 2
  vit1d corpus --preset my_corpus.yaml --out data/mine --soundfont ~/sf2/FluidR3_GM.sf2
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "corpus",
        help="build the embedded corpus of rendered scores with exact labels",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset",
        default="smoke",
        metavar="{smoke,default} or FILE.yaml",
        help="built-in preset name or path to a preset YAML file (default: smoke)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder of the corpus")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's)")
    p.add_argument(
        "--workers", type=int, default=None, help="processes to use (default: the preset's)"
    )
    p.add_argument(
        "--soundfont",
        default=None,
        metavar="PATH",
        help="General-MIDI .sf2 to render with (default: TimGM6mb.sf2 from pretty_midi)",
    )
    p.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="parsed-score cache folder (default: $VIT1D_CACHE or ~/.cache/vit1d)",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="after building, fit the log-mel mean/std baseline on every task and save "
        "<out>/stats/baseline.md (no task may be near-solved by it)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_preset(
        args.preset,
        {"seed": args.seed, "workers": args.workers, "soundfont": args.soundfont},
    )

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, flush=True)

    prov = build_corpus(cfg, args.out, cache_dir=args.cache, log=log)
    if args.quiet:
        print(
            f"corpus: {prov['hours']['total']:.2f} h in {args.out}, "
            f"{prov['this_run']['build_s']} s",
            file=sys.stdout,
        )
    if args.baseline:
        table = run_baseline(args.out, log=log)
        print(table)
    return 0
