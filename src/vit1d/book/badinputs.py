"""The bad-input catalogue: what the library does with each kind of wrong input.

Every entry of :data:`CASES` builds one bad input inside a folder of its own and hands it to
the public API a user would call: :func:`vit1d.load_audio`, :func:`vit1d.probing.tasks.load_task`,
:func:`vit1d.pretrain.config.load_config`, :func:`vit1d.load_pretrained`,
:func:`vit1d.models.checkpoint.save_checkpoint_folder` or the book pipeline. A case is either

* ``refused``: the call raises :class:`vit1d.core.errors.UserError` (for a notebook failing
  mid-book, the pipeline's :class:`~vit1d.book.execute.StepFailed`) whose message names the
  problem and the fix; or
* ``converted``: the input is valid but unusual (stereo, 44.1 kHz, 8-bit) and is converted;
  the case returns measurements of the conversion instead of a message.

:meth:`Case.run` also checks that the failure lost nothing: every file that existed before the
call is still there, byte for byte. :func:`run_catalogue` runs them all and writes a CSV; the
reproducibility appendix shows its table, and ``tests/test_bad_inputs.py`` checks each message
for its problem and fix. The inputs themselves are built in :mod:`vit1d.book.bad_cases`.
Every case runs in well under a second (tiny files, a 2-block model, no kernel).
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vit1d.book.bad_cases import (
    Attempt,
    audio_8bit,
    audio_44k,
    checkpoint_config_mismatch,
    checkpoint_disk_full,
    checkpoint_no_config,
    checkpoint_pickle,
    checkpoint_pt_file,
    config_file,
    corrupt_audio,
    empty_audio,
    manifest_duplicate_rows,
    manifest_missing_column,
    manifest_outside_root,
    manifest_unknown_label,
    nan_audio,
    not_audio,
    notebook_fails,
    short_audio,
    silent_audio,
    stereo_audio,
)
from vit1d.book.execute import StepFailed
from vit1d.core.errors import UserError

#: Columns of the CSV :func:`run_catalogue` writes.
COLUMNS = ("case", "category", "problem", "outcome", "message", "files_intact")


@dataclass(frozen=True)
class Case:
    """One bad input: ``build(folder)`` writes it into ``folder`` and returns the API call."""

    name: str
    category: str  # audio | manifest | config | checkpoint | pipeline
    problem: str  # what is wrong with the input, in words
    outcome: str  # expected: "refused" or "converted"
    build: Callable[[Path], Attempt]
    # files (globs relative to the case folder) the failing call may legitimately rewrite,
    # such as a timings log; every other file written before the call must stay identical
    volatile: tuple[str, ...] = ()

    def run(self, folder: str | Path) -> Result:
        """Build the input in ``folder``, call the API, and report what happened."""

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        attempt = self.build(folder)
        before = _snapshot(folder)
        measured: dict[str, Any] = {}
        try:
            measured = attempt()
            # accepting an input the catalogue expects refused is a finding, named as such
            outcome = "converted" if self.outcome == "converted" else "accepted (not refused)"
            message = _describe(measured)
        except (UserError, StepFailed) as exc:
            outcome, message = "refused", str(exc)
        except Exception as exc:  # a crash is a finding, reported rather than raised
            outcome, message = f"crashed ({type(exc).__name__})", str(exc)
        after = _snapshot(folder)
        changed = sorted(
            rel
            for rel, digest in before.items()
            if after.get(rel) != digest and not any(fnmatch.fnmatch(rel, g) for g in self.volatile)
        )
        return Result(self, outcome, message, changed, measured)


@dataclass
class Result:
    """What a case did: ``outcome`` (refused, converted, accepted (not refused), crashed (...)),
    the message (for a conversion, its measurements, also in ``measured``), and the
    files written before the call that changed or disappeared (``changed``; none is right)."""

    case: Case
    outcome: str
    message: str
    changed: list[str] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)

    @property
    def intact(self) -> bool:
        return not self.changed

    def row(self) -> dict[str, Any]:
        return {
            "case": self.case.name,
            "category": self.case.category,
            "problem": self.case.problem,
            "outcome": self.outcome,
            "message": self.message,
            "files_intact": self.intact,
        }


def _snapshot(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _describe(measured: dict[str, Any]) -> str:
    """One line for a conversion's measurements."""

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return "accepted: " + ", ".join(f"{k} {fmt(v)}" for k, v in measured.items())


# --------------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------------

CASES: list[Case] = [
    Case("corrupt_audio", "audio", "FLAC whose second half is garbage", "refused", corrupt_audio),
    Case("empty_audio", "audio", "a 0-byte .wav file", "refused", empty_audio),
    Case("silent_audio", "audio", "2 s of digital silence", "converted", silent_audio),
    Case(
        "too_short_audio", "audio", "a 20 ms clip, shorter than one frame", "refused", short_audio
    ),
    Case("nan_samples", "audio", "float WAV holding NaN samples", "refused", nan_audio),
    Case("stereo_audio", "audio", "two channels", "converted", stereo_audio),
    Case("audio_44k", "audio", "44.1 kHz instead of 16 kHz", "converted", audio_44k),
    Case("audio_8bit", "audio", "unsigned 8-bit PCM", "converted", audio_8bit),
    Case("not_audio", "audio", "an HTML page saved as track.mp3", "refused", not_audio),
    Case(
        "manifest_missing_column",
        "manifest",
        "key manifest without its 'key' column",
        "refused",
        manifest_missing_column,
    ),
    Case(
        "manifest_unknown_label",
        "manifest",
        "key label 'H major' (no such key)",
        "refused",
        manifest_unknown_label,
    ),
    Case(
        "manifest_duplicate_rows",
        "manifest",
        "the same row twice",
        "refused",
        manifest_duplicate_rows,
    ),
    Case(
        "manifest_outside_root",
        "manifest",
        "audio path '../../elsewhere/a.wav' climbing out of the corpus",
        "refused",
        manifest_outside_root,
    ),
    Case(
        "config_unknown_key",
        "config",
        "misspelt key model.dimm",
        "refused",
        config_file("model:\n  dimm: 32\n"),
    ),
    Case(
        "config_wrong_type",
        "config",
        "train.steps: ten (a word, not a number)",
        "refused",
        config_file("train:\n  steps: ten\n"),
    ),
    Case(
        "config_heads_not_dividing",
        "config",
        "model.dim 100 with 3 heads",
        "refused",
        config_file("model:\n  dim: 100\n  heads: 3\n"),
    ),
    Case(
        "config_batch_zero",
        "config",
        "train.batch_size: 0",
        "refused",
        config_file("train:\n  batch_size: 0\n"),
    ),
    Case(
        "config_not_yaml",
        "config",
        "unclosed list in the YAML",
        "refused",
        config_file("model:\n  head_dims: [64, 32\n  dim: 32\n"),
    ),
    Case(
        "checkpoint_no_config",
        "checkpoint",
        "checkpoint folder without config.json",
        "refused",
        checkpoint_no_config,
    ),
    Case(
        "checkpoint_config_mismatch",
        "checkpoint",
        "config.json says dim 64, the weights have dim 32",
        "refused",
        checkpoint_config_mismatch,
    ),
    Case(
        "checkpoint_pickle",
        "checkpoint",
        "a pickle with a code payload saved as model.safetensors",
        "refused",
        checkpoint_pickle,
    ),
    Case(
        "checkpoint_pt_file",
        "checkpoint",
        "a torch.save .bin file given instead of a folder",
        "refused",
        checkpoint_pt_file,
    ),
    Case(
        "checkpoint_disk_full",
        "checkpoint",
        "the disk fills up while a checkpoint is written",
        "refused",
        checkpoint_disk_full,
    ),
    Case(
        "notebook_fails_mid_book",
        "pipeline",
        "the 2nd of 3 notebooks raises KeyError",
        "refused",
        notebook_fails,
        # the pipeline's timings log is rewritten after every step, a failed one included
        volatile=("runs/results/*",),
    ),
]


def run_catalogue(folder: str | Path) -> list[dict[str, Any]]:
    """Run every case in ``folder/<case>/`` and write ``folder/bad_inputs.csv``; returns the
    rows (``case, category, problem, outcome, message, files_intact``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [case.run(folder / case.name).row() for case in CASES]
    with open(folder / "bad_inputs.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows
