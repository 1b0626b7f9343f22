"""``vit1d book`` and ``python -m vit1d.cli.book``: build the book (``make book``), say which
steps would run and why (``status``), or publish the site (``site``). The work is
:class:`vit1d.book.pipeline.Pipeline`'s."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vit1d.book.execute import StepFailed
from vit1d.book.layout import Layout, find_root
from vit1d.book.pipeline import Pipeline
from vit1d.book.site import publish_site
from vit1d.core.errors import UserError
from vit1d.core.presets import pipeline_names


def _add_build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default", choices=pipeline_names())
    p.add_argument("--data", help="corpus root (default: data/<corpus preset>)")
    p.add_argument("--runs", help="runs folder of this preset (default: runs/<preset>)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override passed to every notebook (repeatable), e.g. train.steps=20",
    )
    p.add_argument("--seed", type=int, default=None, help="seed (default: the preset's)")
    p.add_argument(
        "--checkpoint",
        default="",
        help="checkpoint folder the analyses read (default: the model trained in this build)",
    )
    p.add_argument("--root", help="repository root (default: found from the working directory)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vit1d.cli.book",
        description="Build the book: corpus -> notebooks (papermill) -> jupyter-book build.",
        epilog="Without an action, the arguments go to build: "
        "python -m vit1d.cli.book --preset smoke. See build --help.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    b = sub.add_parser("build", help="run the pipeline (the default action)")
    _add_build_args(b)
    b.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STEP",
        help="redo STEP even if up to date (repeatable; 'all' for every step)",
    )
    b.add_argument("--no-corpus", action="store_true", help="use --data as it is")
    b.add_argument("--no-book", action="store_true", help="stop before jupyter-book build")
    s = sub.add_parser("status", help="show which notebook steps would run, and why")
    _add_build_args(s)
    site = sub.add_parser("site", help="copy the built book into a self-contained folder")
    site.add_argument("--out", default="public", help="output folder (default: public/)")
    site.add_argument(
        "--preset",
        choices=pipeline_names(),
        help="check that the built book is of this preset (the last pipeline run's)",
    )
    site.add_argument("--root", help="repository root")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("build", "status", "site", "-h", "--help"):
        argv = ["build", *argv]
    args = build_parser().parse_args(argv)
    try:
        root = Path(args.root).resolve() if args.root else find_root()
        if args.action == "site":
            out = publish_site(root, Path(args.out), preset=args.preset)
            print(f"static site in {out} (open {out / 'index.html'} or serve the folder)")
            return 0
        layout = Layout.make(root, args.preset, args.data, args.runs)
        pipe = Pipeline(
            layout,
            overrides=args.overrides,
            seed=args.seed,
            checkpoint=args.checkpoint,
            force=getattr(args, "force", ()),
        )
        if args.action == "status":
            for step, _key, why in pipe.plan():
                print(f"{step.name:28s} {'up to date' if why is None else 'would run: ' + why}")
            return 0
        pipe.run(corpus=not args.no_corpus, book=not args.no_book)
    except StepFailed as exc:
        print(f"\nBUILD FAILED: {exc}", file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"vit1d pipeline: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vit1d pipeline: interrupted", file=sys.stderr)
        return 130
    return 0


def register(subparsers: Any) -> None:
    """``vit1d book ...``: the same as ``python -m vit1d.cli.book ...``."""
    p = subparsers.add_parser(
        "book",
        help="build the book (corpus -> notebooks -> jupyter-book); see python -m vit1d.cli.book",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: main(args.rest))


if __name__ == "__main__":
    sys.exit(main())
