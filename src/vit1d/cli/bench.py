"""``vit1d bench`` and ``python -m vit1d.cli.bench``: the benchmark suite, or only its training
and inference ratios (``--core``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vit1d import bench
from vit1d.bench.suite import run_suite, table
from vit1d.bench.training import run


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="throughput benchmark (training and inference)",
        description=bench.__doc__.split("\n\n")[0],
    )
    add_args(p)
    p.set_defaults(func=main)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bench", help="folder for bench.json (default: bench/)")
    p.add_argument("--pairs", type=int, default=32, help="positive pairs per training step")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per setting")
    p.add_argument("--compile", action="store_true", help="torch.compile the project path")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--core",
        action="store_true",
        help="only the training and inference ratios (no scaling, profile, probes, corpus)",
    )
    p.add_argument("--quick", action="store_true", help="the whole suite at small sizes")


def main(args: argparse.Namespace) -> int:
    if args.core:
        result = run(
            Path(args.out),
            pairs=args.pairs,
            steps=args.steps,
            compile_model=args.compile,
            device_name=args.device,
        )
    else:
        result = run_suite(
            Path(args.out),
            quick=args.quick,
            compile_model=args.compile,
            device_name=args.device,
            variants=True,
        )
    print(table(result))
    print(f"\nwritten: {Path(args.out) / 'bench.json'}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m vit1d.cli.bench", description=bench.__doc__)
    add_args(parser)
    raise SystemExit(main(parser.parse_args()))
