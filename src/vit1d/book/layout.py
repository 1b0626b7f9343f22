"""Where a book build's files go and what the notebooks are given: the repository root, each
preset's runs folder (kept only for the same inputs), the standard parameters and
:func:`notebook_paths` that resolves them inside a template, and the clips the chapters show."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vit1d.audio.frontend import SAMPLE_RATE, load_audio
from vit1d.book.stamps import NotebookStep, code_digest
from vit1d.core import atomic
from vit1d.core.errors import UserError
from vit1d.core.paths import source_checkout
from vit1d.core.presets import pipeline_preset
from vit1d.core.provenance import file_sha256
from vit1d.pretrain.run_files import RESUMABLE_CHANGES

#: Names of the standard notebook parameters (a template declares the ones it uses).
PARAMETERS = (
    "preset",
    "data_dir",
    "runs_dir",
    "results_dir",
    "seed",
    "checkpoint",
    "overrides",
)


def find_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder above ``start`` (default: the working
    directory) holding ``_toc.yml`` and ``notebooks/``; else the checkout this module is in."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "notebooks").is_dir():
            return folder
    fallback = source_checkout()
    if fallback is not None and (fallback / "_toc.yml").is_file():
        return fallback
    raise UserError(
        f"cannot find the book's repository root from {here}: run from the checkout "
        "(the folder with _toc.yml and notebooks/) or pass --root"
    )


@dataclass
class Layout:
    """Where everything of one preset lives."""

    root: Path
    preset: str
    data: Path
    runs: Path

    @classmethod
    def make(
        cls,
        root: Path,
        preset: str,
        data: str | Path | None = None,
        runs: str | Path | None = None,
    ) -> Layout:
        corpus = pipeline_preset(preset).corpus  # an unknown preset: a UserError naming them
        root = Path(root).resolve()
        data_dir = Path(data) if data else root / "data" / corpus
        runs_dir = Path(runs) if runs else root / "runs" / preset
        return cls(root, preset, data_dir.resolve(), runs_dir.resolve())

    @property
    def book(self) -> Path:
        return self.root / "book"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def results(self) -> Path:
        return self.runs / "results"

    @property
    def stamps(self) -> Path:
        return self.runs / ".stamps"

    @property
    def executed(self) -> Path:
        return self.runs / "notebooks"

    @property
    def failed(self) -> Path:
        return self.runs / "failed"

    @property
    def timings(self) -> Path:
        return self.results / "pipeline.json"


@dataclass
class NotebookPaths:
    """What a notebook needs to find its inputs and place its outputs."""

    preset: str
    data: Path
    runs: Path
    results: Path
    checkpoint: Path

    def manifest(self, task: str) -> Path:
        """``<data>/<task>/manifest.csv``."""
        return self.data / task / "manifest.csv"


def notebook_paths(
    preset: str = "smoke",
    data_dir: str = "",
    runs_dir: str = "",
    results_dir: str = "",
    checkpoint: str = "",
) -> NotebookPaths:
    """Resolve a template's path parameters: empty strings mean the pipeline's defaults
    (``data/<corpus preset>``, ``runs/<preset>``, ``<runs>/results``, ``<runs>/pretrain``),
    relative to the repository root, so a template also runs by hand from the root. Creates
    the results folder."""
    try:
        root = find_root()
    except UserError:
        root = Path.cwd()
    layout = Layout.make(root, preset, data_dir or None, runs_dir or None)
    results = Path(results_dir).resolve() if results_dir else layout.results
    results.mkdir(parents=True, exist_ok=True)
    ckpt = Path(checkpoint).resolve() if checkpoint else layout.runs / "pretrain"
    return NotebookPaths(preset, layout.data, layout.runs, results, ckpt)


@dataclass
class Clip:
    """A short example clip for a figure: mono audio at ``sample_rate`` and what it is."""

    wave: Any  # float32 NumPy array
    sample_rate: int
    source: str  # "corpus" or "synthetic"
    description: str
    onsets: list[float] = field(default_factory=list)


def synthetic_clip(seconds: float = 4.0, sample_rate: int = 16_000) -> Clip:
    """A C major arpeggio (C4 E4 G4 C5, repeated) of decaying harmonic tones, one note every
    half second, with its onset times: an input whose content is known exactly."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    wave = np.zeros(n, dtype=np.float64)
    notes = [60, 64, 67, 72]
    onsets = []
    for i, start in enumerate(np.arange(0.0, seconds - 0.25, 0.5)):
        f0 = 440.0 * 2 ** ((notes[i % len(notes)] - 69) / 12)
        local = t - start
        env = np.where(local >= 0, np.exp(-local * 3.0), 0.0)
        for k in range(1, 7):
            wave += env * np.sin(2 * np.pi * f0 * k * np.clip(local, 0, None)) / k**1.3
        onsets.append(round(float(start), 3))
    wave = 0.5 * wave / np.max(np.abs(wave))
    return Clip(
        wave.astype(np.float32),
        sample_rate,
        "synthetic",
        "a synthetic C major arpeggio, one note every 0.5 s",
        onsets,
    )


def example_clip(
    paths: NotebookPaths,
    task: str = "pretrain",
    index: int = 0,
    seconds: float = 4.0,
    offset: float = 0.0,
) -> Clip:
    """``seconds`` of the ``index``-th audio file of ``<data>/<task>/manifest.csv`` (test split
    first when there is one), or :func:`synthetic_clip` when the corpus is not there."""
    manifest = paths.manifest(task)
    if not manifest.is_file():
        return synthetic_clip(seconds, SAMPLE_RATE)
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "split" in rows[0]:
        rows = sorted(rows, key=lambda r: {"test": 0, "valid": 1}.get(r["split"], 2))
    if not rows:
        return synthetic_clip(seconds, SAMPLE_RATE)
    row = rows[index % len(rows)]
    wave = load_audio(manifest.parent / row["audio"], SAMPLE_RATE)
    start = int(offset * SAMPLE_RATE)
    wave = wave[start : start + int(seconds * SAMPLE_RATE)]
    return Clip(wave, SAMPLE_RATE, "corpus", f"{task} corpus file {row['audio']}")


def data_fingerprint(manifest: Path) -> dict[str, str]:
    """What identifies a training set: the hash of its manifest and, when the manifest lives in
    a corpus built by ``vit1d corpus``, of that corpus's ``corpus.json`` (a rebuilt corpus may
    keep its file names)."""
    manifest = Path(manifest)
    out = {"manifest": file_sha256(manifest) if manifest.is_file() else str(manifest)}
    for folder in (manifest.parent, manifest.parent.parent):
        if (folder / "corpus.json").is_file():
            out["corpus"] = file_sha256(folder / "corpus.json")
            break
    return out


#: Written into a training folder by :func:`fresh_run_dir`: the run's config and data.
RUN_INPUTS = "pipeline_inputs.json"


def template_code_digest(step: str) -> dict[str, str]:
    """Hash of the library files a template declares in its metadata (``vit1d.code``), for
    a notebook to tie what it caches to the code that computed it."""
    root = find_root()
    template = NotebookStep.load(root / "notebooks" / f"{step}.ipynb")
    return code_digest(root / "src" / "vit1d", template.code)


def move_aside(out_dir: Path) -> Path:
    """Move a run folder to ``<out_dir>.previous`` (replacing an older one), so that a run of
    other inputs takes its place without the one there being lost; returns where it went."""
    previous = out_dir.with_name(out_dir.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    out_dir.rename(previous)
    return previous


def fresh_run_dir(
    out_dir: Path,
    config: dict[str, Any],
    data: dict[str, Any],
    code: dict[str, str] | None = None,
) -> bool:
    """Prepare ``out_dir`` for a resumable training run of ``config`` on ``data`` (see
    :func:`data_fingerprint`) with the library ``code`` (see :func:`template_code_digest`).
    A run already there of the same inputs is kept, so training resumes or finds it finished.
    A run of anything else, or of unknown inputs, is moved to ``<out_dir>.previous``
    (replacing an older one) so the new run starts fresh instead of reusing, or refusing to
    resume, a model trained on other inputs or by other code. Records the inputs in
    ``out_dir/pipeline_inputs.json``. Returns whether it moved a run aside."""
    out_dir = Path(out_dir)

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in (d or {}).items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            elif f"{prefix}{k}" not in RESUMABLE_CHANGES:
                out[f"{prefix}{k}"] = v
        return out

    wanted = {
        "config": flat(json.loads(json.dumps(config, default=str))),
        "data": data,
        "code": code or {},
    }
    moved = False
    if out_dir.exists() and any(out_dir.iterdir()):
        try:
            recorded = json.loads((out_dir / RUN_INPUTS).read_text())
        except (OSError, json.JSONDecodeError):
            recorded = None
        if recorded != wanted:
            move_aside(out_dir)
            moved = True
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out_dir / RUN_INPUTS, wanted, indent=2, sort_keys=True)
    return moved
