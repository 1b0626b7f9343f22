"""Two processes writing one results folder at once keep every row of both (the folder lock).

No model is trained: each process calls the writers ``vit1d probe`` uses, with made-up rows,
many times over, so that without the lock their read-merge-writes would overlap and drop rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd

from vit1d.probing.items import read_items
from vit1d.probing.results import (
    COLUMNS,
    LOCK_FILE,
    RUNS_JSON,
    read_results,
    results_lock,
    upsert_csv,
)

ROUNDS = 15

# One writer: say "ready" once imported, wait for "go", then write ROUNDS runs of one row each
# (probes, summary, provenance and items), every run of its own layer.
WRITER = """
import sys
import pyarrow  # imported before "ready", like the writers' own imports, so that the rounds
import vit1d.models.checkpoint  # of the two processes overlap from the start
from vit1d.probing.items import scalar_items, write_items
from vit1d.probing.results import write_results

folder, who, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
for k in range(rounds):
    layer = 2 * k + who
    key = {"model": "m", "checkpoint": "c", "corpus": "x", "task": "key", "layer": layer,
           "pooling": "cls", "split": "test", "metric": "accuracy"}
    row = {**key, "step": 1, "seed": 0, "value": 0.5, "n": 3, "precision": "fp32",
           "run_id": f"w{who}-{k}"}
    summary = {**key, "step": 1, "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "std_seeds": 0.0,
               "n_seeds": 1, "n": 3, "unit": "clip", "run_id": f"w{who}-{k}"}
    write_results(folder, [row], [summary], f"w{who}-{k}", {"writer": who, "round": k})
    probe = {**key, "seed": 0}
    write_items(folder, [scalar_items(probe, ["a.wav", "b.wav", "c.wav"], [1.0, 0.0, 1.0], None)])
"""


def test_two_concurrent_writers_keep_all_their_rows(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(folder), str(who), str(ROUNDS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in (0, 1)
    ]
    try:
        for p in procs:  # both imported before either starts, so that their writes overlap
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            _, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            p.kill()

    layers = list(range(2 * ROUNDS))
    probes, summary = read_results(folder)
    assert sorted(probes["layer"]) == layers
    assert sorted(summary["layer"]) == layers
    runs = json.loads((folder / RUNS_JSON).read_text())
    assert sorted(runs) == sorted(f"w{w}-{k}" for w in (0, 1) for k in range(ROUNDS))
    items = read_items(folder)
    assert sorted(set(items["layer"])) == layers and len(items) == 3 * len(layers)
    assert (folder / LOCK_FILE).is_file()


def test_the_lock_is_reentrant_and_shuts_out_other_threads(tmp_path: Path) -> None:
    entered = threading.Event()

    def other() -> None:
        with results_lock(tmp_path):
            entered.set()

    with results_lock(tmp_path):
        with results_lock(tmp_path):  # a writer inside another (write_results -> upsert_csv)
            thread = threading.Thread(target=other)
            thread.start()
            assert not entered.wait(0.2)
        assert not entered.is_set()
    thread.join(timeout=30)
    assert entered.is_set()


def test_upsert_takes_the_lock_of_its_folder(tmp_path: Path) -> None:
    row = dict.fromkeys(COLUMNS, "x") | {"layer": 1, "seed": 0, "value": 0.5}
    upsert_csv(tmp_path / "probes.csv", [row], COLUMNS)
    assert (tmp_path / LOCK_FILE).is_file()
    assert len(pd.read_csv(tmp_path / "probes.csv")) == 1
