"""Fault points: a process stops at the n-th time it reaches the named point, and only then."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from vit1d.core import faults


@pytest.fixture
def armed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(faults, "_seen", Counter())
    monkeypatch.setattr(faults, "WAIT_S", 0.0)  # give up at once instead of waiting the kill

    def arm(spec: str) -> Path:
        marker = tmp_path / "marker"
        monkeypatch.setenv(faults.ENV, f"{spec}={marker}")
        return marker

    return arm


def test_unset_points_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.ENV, raising=False)
    for _ in range(3):
        faults.reached("checkpoint")


def test_the_nth_time_writes_the_marker_and_stops(armed) -> None:
    marker = armed("checkpoint@3")
    faults.reached("checkpoint")
    faults.reached("shard")  # another point does not count
    faults.reached("checkpoint")
    assert not marker.exists()
    with pytest.raises(RuntimeError, match="checkpoint@3: not killed"):
        faults.reached("checkpoint")
    assert marker.read_text().startswith("checkpoint@3 pid ")
    assert not list(marker.parent.glob(".marker.tmp*"))
    faults.reached("checkpoint")  # past the point: runs on


def test_without_a_count_the_first_time_stops(armed) -> None:
    marker = armed("shard")
    with pytest.raises(RuntimeError):
        faults.reached("shard")
    assert marker.is_file()


@pytest.mark.parametrize("spec", ["checkpoint", "checkpoint@two=/tmp/m", "=/tmp/m", "x@1="])
def test_a_malformed_setting_is_refused(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.ENV, spec)
    with pytest.raises(ValueError, match=faults.ENV):
        faults.reached("checkpoint")
