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
for its problem and fix. :func:`unsafe_loads` finds code that could unpickle untrusted data.
Every case runs in well under a second (tiny files, a 2-block model, no kernel).
"""

from __future__ import annotations

import ast
import csv
import errno
import fnmatch
import hashlib
import io
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from vit1d.audio.grid import SAMPLE_RATE
from vit1d.book import layout
from vit1d.book import pipeline as pl
from vit1d.book.execute import StepFailed
from vit1d.core.errors import UserError
from vit1d.probing.tasks import load_task

SR = SAMPLE_RATE
#: A file the pickle case's payload would create if anything ever unpickled it.
PICKLE_MARKER = "UNPICKLED-payload-ran"
#: Columns of the CSV :func:`run_catalogue` writes.
COLUMNS = ("case", "category", "problem", "outcome", "message", "files_intact")

#: What a case's builder returns: the call to try (raises, or returns conversion measurements).
Attempt = Callable[[], dict[str, Any]]


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
# Inputs
# --------------------------------------------------------------------------------------------


def _sine(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    """A float32 sine of ``amp`` peak."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path: Path, data: np.ndarray, sr: int = SR, subtype: str | None = None) -> Path:
    """Write audio with soundfile (format from the suffix), creating the folder."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype)
    return path


def _load(path: Path) -> Attempt:
    """The call an audio case tries: :func:`vit1d.load_audio`."""
    from vit1d.audio.frontend import load_audio

    def attempt() -> dict[str, Any]:
        y = load_audio(path)
        return {"samples": len(y), "dtype": str(y.dtype)}

    return attempt


# -- audio -----------------------------------------------------------------------------------


def _corrupt_audio(folder: Path) -> Attempt:
    path = _write(folder / "corrupt.flac", _sine(440, 2.0))
    data = bytearray(path.read_bytes())
    half = len(data) // 2
    # a disk or transfer error: the second half of the stream is noise
    data[half:] = np.random.default_rng(0).bytes(len(data) - half)
    path.write_bytes(bytes(data))
    return _load(path)


def _empty_audio(folder: Path) -> Attempt:
    path = folder / "empty.wav"
    path.write_bytes(b"")
    return _load(path)


def _silent_audio(folder: Path) -> Attempt:
    import torch

    from vit1d.audio.frontend import AMIN, LogMel, load_audio

    path = _write(folder / "silent.wav", np.zeros(2 * SR, dtype=np.float32))

    def attempt() -> dict[str, Any]:
        # silence is valid audio (a pause, an intro): it must reach the dB floor, not -inf
        mel = LogMel()(torch.from_numpy(load_audio(path))[None]).numpy()
        return {
            "finite": bool(np.isfinite(mel).all()),
            "max_db_above_floor": float(mel.max() - 10 * np.log10(AMIN)),
        }

    return attempt


def _short_audio(folder: Path) -> Attempt:
    return _load(_write(folder / "click.wav", _sine(440, 0.02)))


def _nan_audio(folder: Path) -> Attempt:
    y = _sine(440, 1.0)
    y[1000:1010] = np.nan
    return _load(_write(folder / "nan.wav", y, subtype="FLOAT"))


def _not_audio(folder: Path) -> Attempt:
    path = folder / "track.mp3"
    path.write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>\n")
    return _load(path)


def _stereo_audio(folder: Path) -> Attempt:
    from vit1d.audio.frontend import load_audio

    left, right = _sine(440, 1.0, amp=0.6), _sine(660, 1.0, amp=0.2)
    path = _write(folder / "stereo.wav", np.stack([left, right], axis=1), subtype="FLOAT")

    def attempt() -> dict[str, Any]:
        y = load_audio(path)
        return {
            "ndim": y.ndim,
            "samples": len(y),
            "max_error_vs_channel_mean": float(np.max(np.abs(y - (left + right) / 2))),
        }

    return attempt


def _audio_44k(folder: Path) -> Attempt:
    from vit1d.audio.frontend import load_audio

    x = _sine(1000, 1.0, sr=44_100)
    path = _write(folder / "cd.wav", x, sr=44_100, subtype="FLOAT")

    def attempt() -> dict[str, Any]:
        y = load_audio(path)
        spectrum = np.abs(np.fft.rfft(y))
        rms = float(np.sqrt(np.mean(y[800:-800] ** 2)) / np.sqrt(np.mean(x**2)))
        return {
            "samples": len(y),
            "peak_hz": float(np.argmax(spectrum) * SR / len(y)),
            "rms_ratio": rms,
        }

    return attempt


def _audio_8bit(folder: Path) -> Attempt:
    from vit1d.audio.frontend import load_audio

    x = _sine(440, 1.0, amp=0.5)
    path = _write(folder / "u8.wav", x, subtype="PCM_U8")

    def attempt() -> dict[str, Any]:
        y = load_audio(path)
        return {
            "dtype": str(y.dtype),
            "peak": float(np.max(np.abs(y))),
            "max_error": float(np.max(np.abs(y - x))),
        }

    return attempt


# -- manifests -------------------------------------------------------------------------------


def _key_corpus(folder: Path, header: str, rows: list[str]) -> Attempt:
    """A corpus root with three short clips and a key-task manifest of the given rows."""

    root = folder / "corpus"
    for i in range(3):
        _write(root / "audio" / f"a{i}.wav", _sine(220 * (i + 1), 0.2))
    manifest = root / "key" / "manifest.csv"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(header + "\n" + "\n".join(rows) + "\n")

    def attempt() -> dict[str, Any]:
        task = load_task(manifest)
        return {"examples": len(task.examples)}

    return attempt


GOOD_ROWS = ["../audio/a0.wav,train,C major", "../audio/a1.wav,test,A minor"]


def _manifest_missing_column(folder: Path) -> Attempt:
    return _key_corpus(folder, "audio,split", [r.rsplit(",", 1)[0] for r in GOOD_ROWS])


def _manifest_unknown_label(folder: Path) -> Attempt:
    return _key_corpus(folder, "audio,split,key", [*GOOD_ROWS, "../audio/a2.wav,train,H major"])


def _manifest_duplicate_rows(folder: Path) -> Attempt:
    return _key_corpus(folder, "audio,split,key", [*GOOD_ROWS, GOOD_ROWS[0]])


def _manifest_outside_root(folder: Path) -> Attempt:
    # the file exists, so only the location is wrong (not a "missing file" error)
    _write(folder / "elsewhere" / "a.wav", _sine(330, 0.2))
    rows = [*GOOD_ROWS, "../../elsewhere/a.wav,train,E minor"]
    return _key_corpus(folder, "audio,split,key", rows)


# -- configs ---------------------------------------------------------------------------------


def _config(text: str) -> Callable[[Path], Attempt]:
    """A case builder writing ``text`` as a preset YAML and loading it."""

    def build(folder: Path) -> Attempt:
        from vit1d.pretrain.config import load_config

        path = folder / "my_preset.yaml"
        path.write_text(text)

        def attempt() -> dict[str, Any]:
            cfg = load_config(path)
            return {"model.dim": cfg.model.dim}

        return attempt

    return build


# -- checkpoints -----------------------------------------------------------------------------

TINY = {"dim": 32, "depth": 2, "heads": 2, "head": "none", "max_frames": 16}


def _tiny_checkpoint(folder: Path) -> Path:
    import torch

    from vit1d.models.checkpoint import save_pretrained
    from vit1d.models.model import ViT1D

    torch.manual_seed(0)
    return save_pretrained(ViT1D(**TINY), folder)


def _load_checkpoint(folder: Path) -> Attempt:
    from vit1d.models.checkpoint import load_pretrained

    def attempt() -> dict[str, Any]:
        return {"dim": load_pretrained(folder).dim}

    return attempt


def _checkpoint_no_config(folder: Path) -> Attempt:
    ckpt = _tiny_checkpoint(folder / "ckpt")
    (ckpt / "config.json").unlink()
    return _load_checkpoint(ckpt)


def _checkpoint_config_mismatch(folder: Path) -> Attempt:
    ckpt = _tiny_checkpoint(folder / "ckpt")
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["dim"] = 64  # another run's config.json copied over this one
    (ckpt / "config.json").write_text(json.dumps(config, indent=2))
    return _load_checkpoint(ckpt)


class _Payload:
    """Unpickling this runs code: it creates :data:`PICKLE_MARKER` next to the weights."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _checkpoint_pickle(folder: Path) -> Attempt:
    ckpt = _tiny_checkpoint(folder / "ckpt")
    payload = {"state_dict": {}, "hook": _Payload(ckpt / PICKLE_MARKER)}
    (ckpt / "model.safetensors").write_bytes(pickle.dumps(payload, protocol=4))
    return _load_checkpoint(ckpt)


def _checkpoint_pt_file(folder: Path) -> Attempt:
    import torch

    from vit1d.models.model import ViT1D

    path = folder / "pytorch_model.bin"
    torch.save(ViT1D(**TINY).state_dict(), path)
    return _load_checkpoint(path)


def _checkpoint_disk_full(folder: Path) -> Attempt:
    import torch

    from vit1d.models import checkpoint
    from vit1d.models.model import ViT1D

    ckpt_dir = folder / "run" / "checkpoints"
    torch.manual_seed(0)
    checkpoint.save_checkpoint_folder(ViT1D(**TINY), ckpt_dir / "step-00000100", {"step": 100})
    (ckpt_dir / "latest").write_text("step-00000100\n")

    def full_disk(tensors: dict[str, Any], filename: str, *args: Any, **kw: Any) -> None:
        # what a full disk does: part of the file is written, then the write fails
        with open(filename, "wb") as fh:
            fh.write(b"\0" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    def attempt() -> dict[str, Any]:
        with mock.patch.object(checkpoint, "save_file", full_disk):
            checkpoint.save_checkpoint_folder(
                ViT1D(**TINY), ckpt_dir / "step-00000200", {"step": 200}
            )
        return {"written": "step-00000200"}

    return attempt


# -- the book pipeline -----------------------------------------------------------------------


class _CellError(Exception):
    """What papermill raises for a failing cell: the attributes ``describe_failure`` reads."""

    def __init__(self, source: str, ename: str, evalue: str) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.source, self.ename, self.evalue = source, ename, evalue
        self.traceback: list[str] = []


def _fake_execute(template: Path, output: Path, parameters: dict[str, Any], cwd: Path) -> None:
    """Execute a template without a kernel: copy it, and fail at a cell marked ``# fails``
    with the KeyError its source names, as papermill would."""
    output.write_text(template.read_text())
    for cell in json.loads(template.read_text())["cells"]:
        source = "".join(cell["source"])
        if "# fails" in source:
            raise _CellError(source, "KeyError", "'tempo'")


def _notebook(path: Path, *sources: str) -> None:
    cells: list[dict[str, Any]] = [
        {"cell_type": "markdown", "metadata": {}, "source": [f"# {path.stem}"]},
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": ['preset = "smoke"'],
            "outputs": [],
            "execution_count": None,
        },
    ]
    for src in sources:
        cells.append(
            {
                "cell_type": "code",
                "metadata": {},
                "source": [src],
                "outputs": [],
                "execution_count": None,
            }
        )
    nb = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "vit1d": {"config": False},  # keys independent of the presets
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1))


def _notebook_fails(folder: Path) -> Attempt:

    root = folder / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "book").mkdir()
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (folder / "data").mkdir()
    (folder / "data" / "corpus.json").write_text('{"version": 1}\n')
    for name in ("01_a", "02_b", "03_c"):
        _notebook(root / "notebooks" / f"{name}.ipynb", f"x = '{name}'")
    lay = layout.Layout.make(root, "smoke", folder / "data", folder / "runs")

    def pipe() -> pl.Pipeline:
        return pl.Pipeline(lay, execute=_fake_execute, out=io.StringIO())

    pipe().run_notebooks()  # a complete book first: what must survive the failure below
    _notebook(
        root / "notebooks" / "02_b.ipynb",
        "x = '02_b'",
        "scores = {'key': 0.8}\nscores['tempo']  # fails",
    )

    def attempt() -> dict[str, Any]:
        return {"steps": len(pipe().run_notebooks())}

    return attempt


# --------------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------------

CASES: list[Case] = [
    Case("corrupt_audio", "audio", "FLAC whose second half is garbage", "refused", _corrupt_audio),
    Case("empty_audio", "audio", "a 0-byte .wav file", "refused", _empty_audio),
    Case("silent_audio", "audio", "2 s of digital silence", "converted", _silent_audio),
    Case(
        "too_short_audio", "audio", "a 20 ms clip, shorter than one frame", "refused", _short_audio
    ),
    Case("nan_samples", "audio", "float WAV holding NaN samples", "refused", _nan_audio),
    Case("stereo_audio", "audio", "two channels", "converted", _stereo_audio),
    Case("audio_44k", "audio", "44.1 kHz instead of 16 kHz", "converted", _audio_44k),
    Case("audio_8bit", "audio", "unsigned 8-bit PCM", "converted", _audio_8bit),
    Case("not_audio", "audio", "an HTML page saved as track.mp3", "refused", _not_audio),
    Case(
        "manifest_missing_column",
        "manifest",
        "key manifest without its 'key' column",
        "refused",
        _manifest_missing_column,
    ),
    Case(
        "manifest_unknown_label",
        "manifest",
        "key label 'H major' (no such key)",
        "refused",
        _manifest_unknown_label,
    ),
    Case(
        "manifest_duplicate_rows",
        "manifest",
        "the same row twice",
        "refused",
        _manifest_duplicate_rows,
    ),
    Case(
        "manifest_outside_root",
        "manifest",
        "audio path '../../elsewhere/a.wav' climbing out of the corpus",
        "refused",
        _manifest_outside_root,
    ),
    Case(
        "config_unknown_key",
        "config",
        "misspelt key model.dimm",
        "refused",
        _config("model:\n  dimm: 32\n"),
    ),
    Case(
        "config_wrong_type",
        "config",
        "train.steps: ten (a word, not a number)",
        "refused",
        _config("train:\n  steps: ten\n"),
    ),
    Case(
        "config_heads_not_dividing",
        "config",
        "model.dim 100 with 3 heads",
        "refused",
        _config("model:\n  dim: 100\n  heads: 3\n"),
    ),
    Case(
        "config_batch_zero",
        "config",
        "train.batch_size: 0",
        "refused",
        _config("train:\n  batch_size: 0\n"),
    ),
    Case(
        "config_not_yaml",
        "config",
        "unclosed list in the YAML",
        "refused",
        _config("model:\n  head_dims: [64, 32\n  dim: 32\n"),
    ),
    Case(
        "checkpoint_no_config",
        "checkpoint",
        "checkpoint folder without config.json",
        "refused",
        _checkpoint_no_config,
    ),
    Case(
        "checkpoint_config_mismatch",
        "checkpoint",
        "config.json says dim 64, the weights have dim 32",
        "refused",
        _checkpoint_config_mismatch,
    ),
    Case(
        "checkpoint_pickle",
        "checkpoint",
        "a pickle with a code payload saved as model.safetensors",
        "refused",
        _checkpoint_pickle,
    ),
    Case(
        "checkpoint_pt_file",
        "checkpoint",
        "a torch.save .bin file given instead of a folder",
        "refused",
        _checkpoint_pt_file,
    ),
    Case(
        "checkpoint_disk_full",
        "checkpoint",
        "the disk fills up while a checkpoint is written",
        "refused",
        _checkpoint_disk_full,
    ),
    Case(
        "notebook_fails_mid_book",
        "pipeline",
        "the 2nd of 3 notebooks raises KeyError",
        "refused",
        _notebook_fails,
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


# --------------------------------------------------------------------------------------------
# Code that could unpickle
# --------------------------------------------------------------------------------------------

#: Modules whose load functions unpickle.
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "joblib", "dill", "cloudpickle"}


def _is_true(call: ast.Call, keyword: str) -> bool:
    return any(
        k.arg == keyword and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


def unsafe_loads_in(source: str, filename: str = "<source>") -> list[str]:
    """``"file:line: why"`` for each call in ``source`` that could unpickle: a torch load
    without ``weights_only=True``, a pickle/joblib load, numpy with ``allow_pickle=True``,
    pandas' ``read_pickle``. Parsed, not grepped: comments and docstrings do not count, import
    aliases do. A file that does not parse is a finding too (it could hide anything)."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        return [f"{filename}:{exc.lineno}: cannot parse ({exc.msg})"]
    modules: dict[str, str] = {}  # local name -> module
    functions: dict[str, str] = {}  # local name -> "module.function"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                modules[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                functions[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            name = f"{modules.get(func.value.id, func.value.id)}.{func.attr}"
        elif isinstance(func, ast.Name) and func.id in functions:
            name = functions[func.id]
        else:
            continue
        module, _, attr = name.rpartition(".")
        why = None
        if name == "torch.load" and not _is_true(node, "weights_only"):
            why = "torch load without weights_only=True"
        elif module.split(".")[0] in PICKLE_MODULES and attr in ("load", "loads", "Unpickler"):
            why = f"{name} unpickles"
        elif module in ("numpy", "np") and attr == "load" and _is_true(node, "allow_pickle"):
            why = "numpy load with allow_pickle=True"
        elif attr == "read_pickle":
            why = f"{name} unpickles"
        if why:
            found.append(f"{filename}:{node.lineno}: {why}")
    return found


def unsafe_loads(root: str | Path) -> list[str]:
    """:func:`unsafe_loads_in` over every ``*.py`` file under ``root``."""
    root = Path(root)
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        found += unsafe_loads_in(path.read_text(encoding="utf-8"), str(path))
    return found
