"""The bad-input catalogue: every case refused with a message naming the problem and
the fix, or converted correctly, and nothing written before the failure lost; no code path that
could unpickle untrusted data."""

from __future__ import annotations

import csv
import io
import pickle
from pathlib import Path
from typing import Any

import pytest

from vit1d.book import badinputs
from vit1d.book.bad_cases import PICKLE_MARKER, fake_execute, write_notebook
from vit1d.book.badinputs import CASES, run_catalogue
from vit1d.book.unsafe_loads import unsafe_loads, unsafe_loads_in
from vit1d.pretrain.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

#: For each refused case: substrings naming the problem, then substrings naming the fix.
EXPECT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "corrupt_audio": (("corrupt.flac", "damaged"), ("re-export it", "convert it to WAV")),
    "empty_audio": (("empty.wav", "is empty (0 bytes)"), ("export it again",)),
    "too_short_audio": (("click.wav", "too short", "20.0 ms"), ("longer recording",)),
    "nan_samples": (("nan.wav", "NaN"), ("re-export it",)),
    "not_audio": (("track.mp3", "is not audio", "<!DOCTYP"), ("replace it with the real audio",)),
    "manifest_missing_column": (("no 'key' column", "audio, split"), ("add it to the header",)),
    "manifest_unknown_label": (("row 4", "'H major'", "not a key label"), ("like 'C major'",)),
    "manifest_duplicate_rows": (("row 4 repeats row 2",), ("delete the repeated row",)),
    "manifest_outside_root": (
        ("../../elsewhere/a.wav", "outside the corpus root"),
        ("keep the files under the root",),
    ),
    "config_unknown_key": (
        ("unknown config key 'model.dimm'", "my_preset.yaml"),
        ("did you mean 'model.dim'",),
    ),
    "config_wrong_type": (
        ("'train.steps'", "expects an int", "'ten'"),
        ("fix the value", f"'steps: {TrainConfig().steps}' under 'train:'"),
    ),
    "config_heads_not_dividing": (
        ("model.dim (100)", "divisible by model.heads (3)"),
        ("divisor of 100", "multiple of 3 (e.g. 99, 102)"),
    ),
    "config_batch_zero": (("train.batch_size is 0",), ("fix it in the preset",)),
    "config_not_yaml": (("cannot parse", "line 2"), ("fix the syntax",)),
    "checkpoint_no_config": (("no config.json",), ("point at a folder written by",)),
    "checkpoint_config_mismatch": (
        ("do not match its config.json", "(1, 1, 32) in the weights, (1, 1, 64) in the config"),
        ("put back the config.json",),
    ),
    "checkpoint_pickle": (("is a pickle", "not loaded"), ("Convert it",)),
    "checkpoint_pt_file": (
        ("pytorch_model.bin is a file, not a checkpoint folder",),
        ("give the folder that holds model.safetensors",),
    ),
    "checkpoint_disk_full": (
        ("the disk is full", "step-00000200", "previous checkpoint and files are intact"),
        ("Free some space", "--resume"),
    ),
    "notebook_fails_mid_book": (
        ("02_b.ipynb failed at cell 4", "scores['tempo']", "KeyError: 'tempo'"),
        ("run the build again", "kept and skipped"),
    ),
}


def _stereo(m: dict[str, Any]) -> None:
    assert m["ndim"] == 1 and m["samples"] == 16_000
    assert m["max_error_vs_channel_mean"] < 1e-6  # downmixed by averaging the channels


def _44k(m: dict[str, Any]) -> None:
    assert abs(m["samples"] - 16_000) <= 1  # 1 s at 16 kHz
    assert abs(m["peak_hz"] - 1000) < 2 and 0.97 < m["rms_ratio"] < 1.03


def _8bit(m: dict[str, Any]) -> None:
    assert m["dtype"] == "float32" and abs(m["peak"] - 0.5) < 1 / 64
    assert m["max_error"] <= 1 / 128 + 1e-6  # within one 8-bit step of the original


def _silent(m: dict[str, Any]) -> None:
    assert m["finite"] and abs(m["max_db_above_floor"]) < 1e-3  # all frames at the floor


CONVERSIONS = {
    "stereo_audio": _stereo,
    "audio_44k": _44k,
    "audio_8bit": _8bit,
    "silent_audio": _silent,
}

REQUIRED = {
    "corrupt_audio",
    "empty_audio",
    "silent_audio",
    "too_short_audio",
    "nan_samples",
    "stereo_audio",
    "audio_44k",
    "audio_8bit",
    "not_audio",
    "manifest_missing_column",
    "manifest_unknown_label",
    "manifest_duplicate_rows",
    "manifest_outside_root",
    "config_unknown_key",
    "config_wrong_type",
    "config_heads_not_dividing",
    "config_batch_zero",
    "checkpoint_no_config",
    "checkpoint_config_mismatch",
    "checkpoint_pickle",
    "checkpoint_disk_full",
    "notebook_fails_mid_book",
}


def test_the_catalogue_covers_the_required_cases() -> None:
    names = [c.name for c in CASES]
    assert len(names) >= 20 and len(set(names)) == len(names)
    assert REQUIRED <= set(names), REQUIRED - set(names)
    assert {c.outcome for c in CASES} <= {"refused", "converted"}
    # every case has its expectations here, so none is checked by the catalogue alone
    assert set(names) == set(EXPECT) | set(CONVERSIONS)
    assert {c.name for c in CASES if c.outcome == "converted"} == set(CONVERSIONS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case(case: badinputs.Case, tmp_path: Path) -> None:
    result = case.run(tmp_path)
    assert result.outcome == case.outcome, result.message
    assert result.intact, f"files written before the call changed or vanished: {result.changed}"
    if case.outcome == "converted":
        CONVERSIONS[case.name](result.measured)
        return
    problem, fix = EXPECT[case.name]
    for needle in problem:
        assert needle in result.message, f"the problem is not named ({needle!r})"
    for needle in fix:
        assert needle in result.message, f"the fix is not named ({needle!r})"


def _case(name: str) -> badinputs.Case:
    return next(c for c in CASES if c.name == name)


def test_the_pickle_is_never_unpickled(tmp_path: Path) -> None:
    result = _case("checkpoint_pickle").run(tmp_path)
    assert result.outcome == "refused"
    assert not list(tmp_path.rglob(PICKLE_MARKER))
    # the control: the planted payload is live, so the assertion above can fail
    payload = (tmp_path / "ckpt" / "model.safetensors").read_bytes()
    pickle.loads(payload)
    assert (tmp_path / "ckpt" / PICKLE_MARKER).is_file()


def test_a_full_disk_leaves_the_previous_checkpoint_usable(tmp_path: Path) -> None:
    from vit1d.models.checkpoint import load_pretrained

    result = _case("checkpoint_disk_full").run(tmp_path)
    assert result.outcome == "refused" and result.intact
    ckpts = tmp_path / "run" / "checkpoints"
    # no half-written checkpoint or temporary file is left to fill the disk further
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step-00000100"]
    assert (ckpts / "latest").read_text().strip() == "step-00000100"
    assert load_pretrained(ckpts / "step-00000100").dim == 32


def test_after_a_failing_notebook_the_fixed_build_reruns_only_from_it(tmp_path: Path) -> None:
    from vit1d.book import layout
    from vit1d.book import pipeline as pl

    result = _case("notebook_fails_mid_book").run(tmp_path)
    assert result.outcome == "refused" and result.intact
    root = tmp_path / "repo"
    write_notebook(root / "notebooks" / "02_b.ipynb", "x = '02_b'", "scores = {}")
    layout = layout.Layout.make(root, "smoke", tmp_path / "data", tmp_path / "runs")
    pipe = pl.Pipeline(layout, execute=fake_execute, out=io.StringIO())
    done = {r.name: r.status for r in pipe.run_notebooks()}
    assert done == {"01_a": "skipped", "02_b": "ran", "03_c": "ran"}


def test_run_catalogue_writes_the_table(tmp_path: Path) -> None:
    rows = run_catalogue(tmp_path)
    assert [r["case"] for r in rows] == [c.name for c in CASES]
    with open(tmp_path / "bad_inputs.csv", newline="") as fh:
        saved = list(csv.DictReader(fh))
    assert [r["case"] for r in saved] == [r["case"] for r in rows]
    assert list(saved[0]) == list(badinputs.COLUMNS)
    by_name = {c.name: c for c in CASES}
    for r in rows:
        assert r["outcome"] == by_name[r["case"]].outcome and r["files_intact"], r
        assert r["message"]


# -- code that could unpickle ----------------------------------------------------------------


def test_no_code_in_src_can_unpickle() -> None:
    assert unsafe_loads(ROOT / "src") == []


def test_the_scanner_finds_planted_unsafe_loads(tmp_path: Path) -> None:
    # built by concatenation so that this file itself holds no such call
    torch_load, pickle_load = "torch." + "load", "pickle." + "load"
    planted = tmp_path / "planted.py"
    planted.write_text(
        "import torch\nimport pickle\nimport joblib as jl\nimport numpy as np\n"
        "from pickle import loads\n"
        f"a = {torch_load}('x.pt')\n"
        f"b = {torch_load}('x.pt', map_location='cpu',\n    weights_only=False)\n"
        f"c = {pickle_load}(open('x', 'rb'))\n"
        "d = jl.load('m.joblib')\n"
        "e = loads(b'')\n"
        "f = np.load('x.npy', allow_pickle=True)\n"
    )
    found = unsafe_loads(tmp_path)
    lines = sorted(int(f.split(":")[1]) for f in found)
    assert lines == [6, 7, 9, 10, 11, 12], found
    assert all(f.startswith(str(planted)) for f in found)
    # safe calls, comments and docstrings are not findings
    safe = (
        '"""Never call ' + torch_load + '(f) without weights_only."""\n'
        "import torch\nimport numpy as np\n"
        f"# {pickle_load}(fh) is what we avoid\n"
        f"s = {torch_load}('x.pt', weights_only=True)\n"
        "n = np.load('x.npy')\n"
    )
    assert unsafe_loads_in(safe) == []
    # a file that does not parse could hide anything: it is a finding
    assert unsafe_loads_in("def (:\n", "broken.py")[0].startswith("broken.py:1: cannot parse")
