"""The solver comparison record (:mod:`vit1d.probing.solvers`): the view chosen on valid, the seed
noise, the verdict and the per-view mean difference, computed by hand here from the same
summary rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from vit1d.probing import solvers


def _summary(scores: dict[tuple[int, str, str], tuple[float, float]]) -> pd.DataFrame:
    """Summary rows of the key task: ``(layer, pooling, split) -> (mean, std_seeds)``."""
    return pd.DataFrame(
        [
            {
                "task": "key",
                "metric": "weighted",
                "layer": layer,
                "pooling": pooling,
                "split": split,
                "mean": mean,
                "ci_low": mean - 0.02,
                "ci_high": mean + 0.02,
                "std_seeds": std,
                "n_seeds": 3 if std else 1,
            }
            for (layer, pooling, split), (mean, std) in scores.items()
        ]
    )


ADAM = {
    (0, "cls", "valid"): (0.60, 0.01),
    (0, "cls", "test"): (0.58, 0.01),
    (1, "avg", "valid"): (0.70, 0.02),
    (1, "avg", "test"): (0.66, 0.02),
}


@pytest.mark.parametrize(
    ("exact_test", "holds"),
    [(0.62, True), (0.61, True), (0.59, False)],  # Adam 0.66, noise 3 x 0.02 = 0.06
)
def test_task_record_judges_the_view_chosen_on_valid_against_adams_seed_noise(
    exact_test: float, holds: bool
) -> None:
    exact = {
        (0, "cls", "valid"): (0.61, 0.0),
        (0, "cls", "test"): (0.60, 0.0),
        (1, "avg", "valid"): (0.72, 0.0),
        (1, "avg", "test"): (exact_test, 0.0),
    }
    summaries = {"adam": _summary(ADAM), "lbfgs": _summary(exact)}
    seconds = {"adam": {"key": 30.0}, "lbfgs": {"key": 10.0}}
    rec = solvers._task_record(summaries, seconds, "key")
    assert (rec["adam"]["layer"], rec["adam"]["pooling"]) == (1, "avg")  # best on valid
    assert rec["adam"]["test"] == pytest.approx(0.66)
    assert rec["lbfgs"]["test"] == pytest.approx(exact_test)
    assert rec["noise_test"] == pytest.approx(0.06)
    assert rec["diff_valid"] == pytest.approx(0.02)
    assert rec["mean_view_diff_test"] == pytest.approx(((0.60 - 0.58) + (exact_test - 0.66)) / 2)
    assert rec["holds"] is holds
    assert (rec["adam"]["seconds"], rec["lbfgs"]["seconds"]) == (30.0, 10.0)
    table = solvers.table({"tasks": {"key": rec}})
    assert table.loc[0, "within noise or better"] == ("yes" if holds else "no")


def test_the_noise_floor_applies_when_adams_seeds_agree() -> None:
    flat = {k: (v[0], 0.0) for k, v in ADAM.items()}
    worse = {k: (v[0] - solvers.NOISE_FLOOR / 2, 0.0) for k, v in ADAM.items()}
    rec = solvers._task_record({"adam": _summary(flat), "lbfgs": _summary(worse)}, {}, "key")
    assert rec["noise_valid"] == solvers.NOISE_FLOOR and rec["holds"]


def test_newest_record_and_its_name(tmp_path: Path) -> None:
    cpu = {"model": "AMD EPYC 9B14", "amx": False, "avx512_bf16": True}
    for day in ("2026-12-01", "2026-12-03", "2026-12-02"):
        rec = {"cpu": cpu, "finished": f"{day}T10:00:00+00:00", "day": day}
        (tmp_path / solvers.record_name(rec)).write_text(json.dumps(rec))
    assert solvers.newest_record(tmp_path)["day"] == "2026-12-03"
    assert solvers.record_name(rec) == "probe_solvers-amd-epyc-9b14-avx512bf16-2026-12-02.json"
    assert solvers.newest_record(tmp_path / "none") is None
