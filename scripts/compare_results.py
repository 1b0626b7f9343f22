"""Compare two book builds' results folders, leaving out what differs between any two runs.

A refactor must not change a number: build the smoke book on the old and the new tree (same
seeds, same machine), then

    python scripts/compare_results.py OLD/runs/smoke/results NEW/runs/smoke/results

Tables (CSV, parquet) are compared cell by cell after dropping run ids, timings and
machine facts; JSON files recursively, with the same keys left out; absolute paths are
compared relative to each build's checkout. Exit status 1 when anything else differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

#: Key or column names whose values differ between any two runs of the same inputs.
VOLATILE = {
    "run_id",
    "finished",
    "started",
    "created",
    "hardware",
    "versions",
    "seconds",
    "train_seconds",
    "views_per_s_median",
    "num_threads",
}
#: Files that hold only provenance and timings.
SKIPPED = {"pipeline.json", "probes_runs.json", "pretrain_runs.json", "bench.json", ".lock"}


def volatile(name: str) -> bool:
    return str(name) in VOLATILE


def checkout_of(results: Path) -> Path:
    """The checkout a results folder belongs to (``<checkout>/runs/<preset>/results``)."""
    return results.resolve().parents[2]


def normalise(value: Any, root: Path) -> Any:
    if isinstance(value, str):
        return value.replace(str(root), "<checkout>")
    if isinstance(value, dict):
        return {k: normalise(v, root) for k, v in value.items() if not volatile(k)}
    if isinstance(value, list):
        return [normalise(v, root) for v in value]
    return value


def table(path: Path, root: Path) -> pd.DataFrame:
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    df = df[[c for c in df.columns if not volatile(c)]]
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]):
            df[col] = df[col].map(lambda v: normalise(v, root))
    return df.reset_index(drop=True)


def compare(old: Path, new: Path) -> list[str]:
    """One line per file: ``same``, or what differs."""
    old_root, new_root = checkout_of(old), checkout_of(new)
    names = sorted(
        {p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file()}
        | {p.relative_to(new).as_posix() for p in new.rglob("*") if p.is_file()}
    )
    lines = []
    for name in names:
        a, b = old / name, new / name
        if Path(name).name in SKIPPED or Path(name).suffix == ".lock":
            continue
        if not (a.is_file() and b.is_file()):
            lines.append(f"DIFFER  {name}: only in {'old' if a.is_file() else 'new'}")
            continue
        if a.suffix in (".csv", ".parquet"):
            ta, tb = table(a, old_root), table(b, new_root)
            if ta.shape != tb.shape or list(ta.columns) != list(tb.columns):
                lines.append(f"DIFFER  {name}: shape {ta.shape} vs {tb.shape}")
            elif not ta.equals(tb):
                bad = [c for c in ta.columns if not ta[c].equals(tb[c])]
                lines.append(f"DIFFER  {name}: columns {', '.join(bad)}")
            else:
                lines.append(f"same    {name}")
        elif a.suffix == ".json":
            ja = normalise(json.loads(a.read_text()), old_root)
            jb = normalise(json.loads(b.read_text()), new_root)
            lines.append(f"{'same   ' if ja == jb else 'DIFFER '} {name}")
        else:
            same = a.read_bytes() == b.read_bytes()
            lines.append(f"{'same   ' if same else 'DIFFER '} {name}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path, help="the old build's results folder")
    p.add_argument("new", type=Path, help="the new build's results folder")
    args = p.parse_args(argv)
    lines = compare(args.old, args.new)
    print("\n".join(lines))
    differ = sum(line.startswith("DIFFER") for line in lines)
    print(f"{len(lines) - differ} files the same, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
