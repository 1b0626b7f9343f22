"""The ``vit1d`` command line (also ``python -m vit1d``).

Each subcommand is one module of this package, listed in :data:`COMMANDS`; it
exposes ``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments. User errors (:class:`vit1d.core.errors.UserError`) print one line
and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vit1d.core.errors import UserError

#: Modules that contribute subcommands, in the order ``--help`` lists them.
COMMANDS = [
    "vit1d.cli.corpus",
    "vit1d.cli.datasets",
    "vit1d.cli.pretrain",
    "vit1d.cli.recipe_study",
    "vit1d.cli.reference",
    "vit1d.cli.embed",
    "vit1d.cli.probe",
    "vit1d.cli.analyses",
    "vit1d.cli.bench",
    "vit1d.cli.book",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vit1d",
        description="ViT-1D contrastive companion: build the corpus, pretrain, embed, probe.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an optional part of the package not present
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except UserError as exc:
        print(f"vit1d {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vit1d {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
