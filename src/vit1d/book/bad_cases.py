"""The bad inputs of the catalogue (:mod:`vit1d.book.badinputs`), one builder per case.

A builder writes one wrong input into a folder of its own (tiny audio files, manifests,
config files, checkpoints of a 2-block model, a three-notebook book) and returns the public
API call a user would make on it, as an :data:`Attempt`: the call raises, or returns
measurements of a conversion.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import soundfile as sf
import torch

from vit1d.audio.frontend import AMIN, LogMel, load_audio
from vit1d.audio.grid import SAMPLE_RATE
from vit1d.book import layout
from vit1d.book import pipeline as pl
from vit1d.models import checkpoint
from vit1d.models.checkpoint import load_pretrained, save_pretrained
from vit1d.models.model import ViT1D
from vit1d.pretrain.config import load_config
from vit1d.probing.tasks import load_task

SR = SAMPLE_RATE
#: A file the pickle case's payload would create if anything ever unpickled it.
PICKLE_MARKER = "UNPICKLED-payload-ran"

#: What a case's builder returns: the call to try (raises, or returns conversion measurements).
Attempt = Callable[[], dict[str, Any]]


def _sine(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    """A float32 sine of ``amp`` peak."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path: Path, data: np.ndarray, sr: int = SR, subtype: str | None = None) -> Path:
    """Write audio with soundfile (format from the suffix), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype)
    return path


def _load(path: Path) -> Attempt:
    """The call an audio case tries: :func:`vit1d.load_audio`."""

    def attempt() -> dict[str, Any]:
        y = load_audio(path)
        return {"samples": len(y), "dtype": str(y.dtype)}

    return attempt


# -- audio -----------------------------------------------------------------------------------


def corrupt_audio(folder: Path) -> Attempt:
    path = _write(folder / "corrupt.flac", _sine(440, 2.0))
    data = bytearray(path.read_bytes())
    half = len(data) // 2
    # a disk or transfer error: the second half of the stream is noise
    data[half:] = np.random.default_rng(0).bytes(len(data) - half)
    path.write_bytes(bytes(data))
    return _load(path)


def empty_audio(folder: Path) -> Attempt:
    path = folder / "empty.wav"
    path.write_bytes(b"")
    return _load(path)


def silent_audio(folder: Path) -> Attempt:
    path = _write(folder / "silent.wav", np.zeros(2 * SR, dtype=np.float32))

    def attempt() -> dict[str, Any]:
        # silence is valid audio (a pause, an intro): it must reach the dB floor, not -inf
        mel = LogMel()(torch.from_numpy(load_audio(path))[None]).numpy()
        return {
            "finite": bool(np.isfinite(mel).all()),
            "max_db_above_floor": float(mel.max() - 10 * np.log10(AMIN)),
        }

    return attempt


def short_audio(folder: Path) -> Attempt:
    return _load(_write(folder / "click.wav", _sine(440, 0.02)))


def nan_audio(folder: Path) -> Attempt:
    y = _sine(440, 1.0)
    y[1000:1010] = np.nan
    return _load(_write(folder / "nan.wav", y, subtype="FLOAT"))


def not_audio(folder: Path) -> Attempt:
    path = folder / "track.mp3"
    path.write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>\n")
    return _load(path)


def stereo_audio(folder: Path) -> Attempt:
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


def audio_44k(folder: Path) -> Attempt:
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


def audio_8bit(folder: Path) -> Attempt:
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


def manifest_missing_column(folder: Path) -> Attempt:
    return _key_corpus(folder, "audio,split", [r.rsplit(",", 1)[0] for r in GOOD_ROWS])


def manifest_unknown_label(folder: Path) -> Attempt:
    return _key_corpus(folder, "audio,split,key", [*GOOD_ROWS, "../audio/a2.wav,train,H major"])


def manifest_duplicate_rows(folder: Path) -> Attempt:
    return _key_corpus(folder, "audio,split,key", [*GOOD_ROWS, GOOD_ROWS[0]])


def manifest_outside_root(folder: Path) -> Attempt:
    # the file exists, so only the location is wrong (not a "missing file" error)
    _write(folder / "elsewhere" / "a.wav", _sine(330, 0.2))
    rows = [*GOOD_ROWS, "../../elsewhere/a.wav,train,E minor"]
    return _key_corpus(folder, "audio,split,key", rows)


# -- configs ---------------------------------------------------------------------------------


def config_file(text: str) -> Callable[[Path], Attempt]:
    """A case builder writing ``text`` as a preset YAML and loading it."""

    def build(folder: Path) -> Attempt:
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
    torch.manual_seed(0)
    return save_pretrained(ViT1D(**TINY), folder)


def _load_checkpoint(folder: Path) -> Attempt:
    def attempt() -> dict[str, Any]:
        return {"dim": load_pretrained(folder).dim}

    return attempt


def checkpoint_no_config(folder: Path) -> Attempt:
    ckpt = _tiny_checkpoint(folder / "ckpt")
    (ckpt / "config.json").unlink()
    return _load_checkpoint(ckpt)


def checkpoint_config_mismatch(folder: Path) -> Attempt:
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


def checkpoint_pickle(folder: Path) -> Attempt:
    ckpt = _tiny_checkpoint(folder / "ckpt")
    payload = {"state_dict": {}, "hook": _Payload(ckpt / PICKLE_MARKER)}
    (ckpt / "model.safetensors").write_bytes(pickle.dumps(payload, protocol=4))
    return _load_checkpoint(ckpt)


def checkpoint_pt_file(folder: Path) -> Attempt:
    path = folder / "pytorch_model.bin"
    torch.save(ViT1D(**TINY).state_dict(), path)
    return _load_checkpoint(path)


def checkpoint_disk_full(folder: Path) -> Attempt:
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


def fake_execute(template: Path, output: Path, parameters: dict[str, Any], cwd: Path) -> None:
    """Execute a template without a kernel: copy it, and fail at a cell marked ``# fails``
    with the KeyError its source names, as papermill would."""
    output.write_text(template.read_text())
    for cell in json.loads(template.read_text())["cells"]:
        source = "".join(cell["source"])
        if "# fails" in source:
            raise _CellError(source, "KeyError", "'tempo'")


def write_notebook(path: Path, *sources: str) -> None:
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


def notebook_fails(folder: Path) -> Attempt:

    root = folder / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "book").mkdir()
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (folder / "data").mkdir()
    (folder / "data" / "corpus.json").write_text('{"version": 1}\n')
    for name in ("01_a", "02_b", "03_c"):
        write_notebook(root / "notebooks" / f"{name}.ipynb", f"x = '{name}'")
    lay = layout.Layout.make(root, "smoke", folder / "data", folder / "runs")

    def pipe() -> pl.Pipeline:
        return pl.Pipeline(lay, execute=fake_execute, out=io.StringIO())

    pipe().run_notebooks()  # a complete book first: what must survive the failure below
    write_notebook(
        root / "notebooks" / "02_b.ipynb",
        "x = '02_b'",
        "scores = {'key': 0.8}\nscores['tempo']  # fails",
    )

    def attempt() -> dict[str, Any]:
        return {"steps": len(pipe().run_notebooks())}

    return attempt
