"""The book pipeline: corpus -> papermill over the notebooks -> ``jupyter-book build book/``.

Usage (``make book`` calls the first form)::

    python -m vit1d.pipeline --preset smoke|default|long|paper [--data DIR] [--runs DIR]
                             [--set section.key=value ...] [--seed N] [--force STEP ...]
    python -m vit1d.pipeline status --preset smoke      # which steps would run, and why
    python -m vit1d.pipeline site --out public/         # self-contained static site

Steps, in order, each printed on one progress line with its time:

1. ``assets``: the JavaScript the pages load (require.js, the ipywidgets HTML manager,
   MathJax), installed from the npm registry as pinned in ``package.json`` and copied, trimmed,
   into ``node_modules/.book-static/`` (Sphinx's ``html_static_path`` in ``_config.yml``), so
   that maths and widgets work with no network. Never under ``book/_static`` (Jupyter Book
   turns every ``.js`` there into a script tag on every page) and never committed.
2. ``corpus``: ``python -m vit1d corpus --preset P --out DIR`` (``smoke`` for the smoke
   preset, ``default`` otherwise). A corpus folder that already holds ``corpus.json`` but was
   not built by this pipeline (a user's own data) is used as it is.
3. one step per template ``notebooks/NN_name.ipynb``, in name order: papermill executes it into
   ``<runs>/notebooks/NN_name.ipynb`` with the standard parameters below, and the result is
   copied to ``book/NN_name.ipynb`` (git-ignored), where the book build renders it.
4. ``book``: ``jupyter-book build book/ -W --keep-going`` (rendering only:
   ``execute_notebooks`` is off; a warning, such as a glue key no cell defined, fails it).

**Incremental.** A notebook step is skipped when its *key* is the one stamped by its last
successful run (``<runs>/.stamps/NAME.json``) and its executed notebook still exists. The key
hashes the template's cells, the parameters, the resolved training config (``vit1d.config``:
preset + overrides, so a changed config redoes what depends on it), the library source files
the notebook declares, and what it needs upstream: the hash of the corpus's ``corpus.json`` and
the run id of each notebook step it needs (so any rerun of an upstream step, forced or not,
redoes its dependants). A template declares these in its notebook metadata::

    "vit1d": {"needs": ["corpus", "03_pretrain"], "code": ["model.py", "train*"],
              "config": true, "files": ["checkpoints/reference/*"]}

``needs`` defaults to every earlier step (safe, never stale), ``code`` to nothing, ``config``
to true, ``files`` (globs relative to the repository root, e.g. a committed checkpoint the
notebook reads) to nothing. The corpus enters keys through a hash of its ``corpus.json``. ``--force NAME`` (or
``--force all``) redoes a step whatever its stamp says. Each preset has its own runs folder, so
switching presets re-copies executed notebooks into ``book/`` instead of recomputing them.

**Parameters** passed to every template that declares them in its ``parameters`` cell:
``preset``, ``data_dir`` (corpus root), ``runs_dir`` (this preset's runs folder),
``results_dir`` (``<runs>/results``: every results file the book reads), ``seed`` (``None``:
the preset's), ``checkpoint`` (``""``: the model trained in this build) and ``overrides``
(a list of ``section.key=value`` strings for :func:`vit1d.config.load_config`). Paths are
absolute; execution happens with the repository root as working directory, so
``papermill notebooks/03_pretrain.ipynb out.ipynb -p preset smoke`` run from the root works the
same way with the templates' defaults (see :func:`notebook_paths`).

**Failures.** A failing notebook stops the pipeline with the notebook's name, the failing
cell's number in the template, its first lines, the error and what to do; the partly executed
notebook is kept in ``<runs>/failed/``, nothing is stamped, and what earlier runs published
(executed notebooks, stamps, ``book/``) is left as it was.

**Timings.** Per-step wall times (this invocation) and compute times (when each step last
really ran) go to ``<runs>/results/pipeline.json``, rewritten after every step; the
reproducibility appendix reads it.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vit1d import atomic
from vit1d.errors import UserError
from vit1d.paths import source_checkout
from vit1d.provenance import file_sha256

#: Pipeline presets and the corpus preset each one reads.
CORPUS_PRESET = {"smoke": "smoke", "default": "default", "long": "default", "paper": "default"}
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
#: Folder (under the repository root) where the trimmed JavaScript assets are copied.
ASSETS_DIR = Path("node_modules") / ".book-static"
#: What the built pages load, copied from ``node_modules``: destination -> source (a file or a
#: folder copied whole). Everything else in the npm packages stays out of the site.
ASSET_FILES = {
    "require/require.js": "requirejs/require.js",
    "html-manager/embed-amd.js": "@jupyter-widgets/html-manager/dist/embed-amd.js",
    "mathjax/tex-mml-chtml.js": "mathjax/es5/tex-mml-chtml.js",
    "mathjax/output/chtml/fonts/woff-v2": "mathjax/es5/output/chtml/fonts/woff-v2",
    "mathjax/input/tex/extensions": "mathjax/es5/input/tex/extensions",
    "mathjax/a11y": "mathjax/es5/a11y",
    "mathjax/ui": "mathjax/es5/ui",
}
#: Font files of the HTML manager's bundled icon font (only the woff2 ones: every browser
#: that runs the bundle reads woff2).
ASSET_GLOBS = {"html-manager": ("@jupyter-widgets/html-manager/dist", "*.woff2")}


# --------------------------------------------------------------------------------------------
# Layout and parameters
# --------------------------------------------------------------------------------------------


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
        if preset not in CORPUS_PRESET:
            raise UserError(f"unknown preset {preset!r}: use one of {', '.join(CORPUS_PRESET)}")
        root = Path(root).resolve()
        data_dir = Path(data) if data else root / "data" / CORPUS_PRESET[preset]
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
    import numpy as np

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
    import csv

    from vit1d.frontend import SAMPLE_RATE, load_audio

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
    try:
        from vit1d.train import RESUMABLE_CHANGES
    except ImportError:
        RESUMABLE_CHANGES = set()

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
            previous = out_dir.with_name(out_dir.name + ".previous")
            if previous.exists():
                shutil.rmtree(previous)
            out_dir.rename(previous)
            moved = True
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out_dir / RUN_INPUTS, wanted, indent=2, sort_keys=True)
    return moved


# --------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------


def _sha(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def _json_sha(obj: Any) -> str:
    return _sha(json.dumps(obj, sort_keys=True, default=str))


def _read_notebook(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read notebook {path}: {exc}") from None


def notebook_digest(nb: dict[str, Any]) -> str:
    """Hash of what a template computes and shows: cell types, sources and tags, its
    ``vit1d`` metadata and kernel name; stored outputs and cosmetic metadata do not count."""
    cells = []
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        if isinstance(src, list):
            src = "".join(src)
        tags = sorted(cell.get("metadata", {}).get("tags", []))
        cells.append([cell.get("cell_type"), src, tags])
    meta = nb.get("metadata", {})
    kernel = meta.get("kernelspec", {}).get("name")
    return _json_sha([cells, meta.get("vit1d", {}), kernel])


def code_digest(src_dir: Path, patterns: Iterable[str]) -> dict[str, str]:
    """``{relative path: sha256}`` of the library files matching ``patterns`` (globs relative
    to ``src_dir``; a folder's files count recursively)."""
    out: dict[str, str] = {}
    for pattern in patterns:
        for path in sorted(src_dir.glob(pattern)):
            files = sorted(path.rglob("*")) if path.is_dir() else [path]
            for f in files:
                if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                    out[f.relative_to(src_dir).as_posix()] = file_sha256(f)
    return out


def _imported_modules(source: str, package: str) -> set[str]:
    """Dotted names of ``package``'s modules that ``source`` imports anywhere (function bodies
    included: they run when called). ``from pkg.a import b`` names ``pkg.a`` and ``pkg.a.b``
    (``b`` may be a submodule); names that are not modules are dropped by the caller."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if a.name != "*"}
    return {m for m in out if m == package or m.startswith(package + ".")}


def _module_files(src_dir: Path, module: str) -> list[Path]:
    """The files Python runs to import ``module`` from ``src_dir`` (named as the package):
    every package ``__init__.py`` on the way, then the module's own file."""
    parts = module.split(".")[1:]
    files = []
    for depth in range(len(parts) + 1):
        folder = src_dir.joinpath(*parts[:depth])
        if depth == len(parts) and depth and (folder.with_suffix(".py")).is_file():
            files.append(folder.with_suffix(".py"))
        elif (folder / "__init__.py").is_file():
            files.append(folder / "__init__.py")
    return files


def cell_sources(nb: dict[str, Any]) -> list[str]:
    """The code cells' sources with IPython's ``%magic`` and ``!shell`` lines made ``pass``
    (same indentation), so that they parse as Python."""
    out = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        lines = []
        for line in src.splitlines():
            body = line.lstrip()
            indent = line[: len(line) - len(body)]
            lines.append(indent + "pass" if body.startswith(("%", "!")) else line)
        out.append("\n".join(lines))
    return out


def imported_library_files(src_dir: Path, sources: Iterable[str]) -> list[str]:
    """Library files (relative to ``src_dir``, the package folder) that the code ``sources``
    imports, directly or through other library modules: the transitive closure of their
    ``import`` statements. A notebook's stamp hashes these (:meth:`Pipeline.step_key`), so
    editing any module a chapter runs marks the chapter stale, with no list kept by hand;
    imports made from strings (``importlib``) are not seen."""
    src_dir = Path(src_dir)
    package = src_dir.name
    seen: set[Path] = set()
    todo = [m for source in sources for m in _imported_modules(source, package)]
    done: set[str] = set()
    while todo:
        module = todo.pop()
        if module in done:
            continue
        done.add(module)
        for f in _module_files(src_dir, module):
            if f not in seen:
                seen.add(f)
                todo += _imported_modules(f.read_text(encoding="utf-8"), package)
    return sorted(f.relative_to(src_dir).as_posix() for f in seen)


def config_fingerprint(preset: str, overrides: list[str], seed: int | None) -> Any:
    """The resolved training config as a dict (falls back to the preset file's hash while
    ``vit1d.config`` is not importable). Raises UserError for a bad override."""
    items = list(overrides) + ([f"seed={seed}"] if seed is not None else [])
    try:
        from vit1d.config import load_config
    except ImportError:
        preset_file = Path(__file__).parent / "presets" / f"{preset}.yaml"
        return {
            "preset": preset,
            "file": file_sha256(preset_file) if preset_file.is_file() else None,
            "overrides": items,
        }
    return load_config(preset, items).to_dict()


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


@dataclass
class NotebookStep:
    """One template of ``notebooks/``."""

    name: str
    template: Path
    needs: list[str] | None = None  # None: every earlier step
    code: list[str] = field(default_factory=list)
    uses_config: bool = True
    declared: tuple[str, ...] = ()  # parameter names in its parameters cell
    files: list[str] = field(default_factory=list)  # repository files it reads (globs)

    @classmethod
    def load(cls, path: Path) -> NotebookStep:
        nb = _read_notebook(path)
        meta = nb.get("metadata", {}).get("vit1d", {}) or {}
        needs = meta.get("needs")
        return cls(
            name=path.stem,
            template=path,
            needs=list(needs) if needs is not None else None,
            code=list(meta.get("code", [])),
            uses_config=bool(meta.get("config", True)),
            declared=tuple(declared_parameters(nb)),
            files=list(meta.get("files", [])),
        )


def declared_parameters(nb: dict[str, Any]) -> list[str]:
    """Names assigned in the cell tagged ``parameters`` (top-level ``name = ...`` lines)."""
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            try:
                tree = ast.parse(src)
            except SyntaxError:
                return []
            names = []
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else []
                if isinstance(node, ast.AnnAssign):
                    targets = [node.target]
                names += [t.id for t in targets if isinstance(t, ast.Name)]
            return names
    return []


def discover(notebooks_dir: Path) -> list[NotebookStep]:
    """The templates in name order (files starting with ``_`` or ``.`` are skipped)."""
    paths = sorted(
        p
        for p in notebooks_dir.glob("*.ipynb")
        if not p.name.startswith(("_", ".")) and p.is_file()
    )
    return [NotebookStep.load(p) for p in paths]


class StepFailed(Exception):
    """A pipeline step failed; the message names the step (and for a notebook, the cell)."""

    def __init__(self, step: str, message: str, cell: int | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.cell = cell


# --------------------------------------------------------------------------------------------
# Executing a notebook
# --------------------------------------------------------------------------------------------


def _cell_source(cell: Any) -> str:
    src = cell.get("source", "") if isinstance(cell, dict) else ""
    return "".join(src) if isinstance(src, list) else str(src)


def _failing_line(traceback: list[str]) -> str | None:
    """The source line IPython marks with an arrow in the notebook cell's frame of a
    traceback (ANSI colours removed)."""
    import re

    ansi = re.compile(r"\x1b\[[0-9;]*m")
    marked = None
    for block in traceback:
        for line in ansi.sub("", block).splitlines():
            match = re.match(r"^-+>\s*(\d+\s+)?(.*)$", line)
            if match:
                marked = marked or match[2].strip()
    return marked


def describe_failure(template: Path, executed: Path | None, exc: BaseException) -> StepFailed:
    """A :class:`StepFailed` naming the notebook, the failing cell's number in the template
    (1-based, counting every cell), its first lines and the error."""
    name = template.name
    source = getattr(exc, "source", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    cell_no = None
    if source is None and executed is not None and executed.is_file():
        # papermill marks the failing cell's metadata; find it in the partial output
        nb = _read_notebook(executed)
        for cell in nb.get("cells", []):
            if cell.get("metadata", {}).get("papermill", {}).get("exception"):
                source = _cell_source(cell)
    if source is not None:
        tpl = _read_notebook(template)
        for i, cell in enumerate(tpl.get("cells", []), start=1):
            if _cell_source(cell).strip() == str(source).strip():
                cell_no = i
                break
    where = f"cell {cell_no} of notebooks/{name}" if cell_no else f"notebooks/{name}"
    lines = [f"notebook {name} failed at {where}"]
    if source:
        shown = str(source).strip().splitlines()
        lines += ["    | " + line for line in shown[:6]]
        if len(shown) > 6:
            lines.append(f"    | ... ({len(shown) - 6} more lines)")
    failing_line = _failing_line(getattr(exc, "traceback", None) or [])
    if failing_line:
        lines.append(f"  at: {failing_line}")
    lines.append(f"  {ename}: {evalue}".rstrip())
    if executed is not None and executed.is_file():
        lines.append(f"  partly executed notebook: {executed}")
    lines.append(
        "  fix: correct that cell or the input it reads, then run the build again; the notebooks "
        "that finished are kept and skipped, this one reruns from its start"
    )
    return StepFailed(template.stem, "\n".join(lines), cell_no)


def papermill_execute(template: Path, output: Path, parameters: dict[str, Any], cwd: Path) -> None:
    """Execute ``template`` into ``output`` with papermill (kernel ``python3``: the Python
    running this pipeline). Raises papermill's errors."""
    import papermill

    papermill.execute_notebook(
        str(template),
        str(output),
        parameters=parameters,
        cwd=str(cwd),
        kernel_name="python3",
        progress_bar=False,
        log_output=False,
        report_mode=False,
        # the kernel's own start-up warnings (transport, debugger) are not the reader's
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    _hide_injected_parameters(output)


def _hide_injected_parameters(path: Path) -> None:
    """Collapse papermill's injected-parameters cell in the book (tag ``hide-cell``)."""
    nb = _read_notebook(path)
    changed = False
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
            changed = True
    if changed:
        atomic.write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def _library_on_path(root: Path):
    """Make the kernels import this checkout's ``vit1d`` (``src/`` first on PYTHONPATH)."""
    src = str(root / "src")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = src + (os.pathsep + old if old else "")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@contextlib.contextmanager
def _one_precision(say: Callable[[str], None]):
    """Decide once what precision ``auto`` means on this CPU and hold it for every chapter
    (``VIT1D_PRECISION``, :func:`vit1d.device.choose_precision`); a value already set wins."""
    # torch is imported here, not at the top: status and site never need it
    from vit1d.device import PRECISION_ENV, choose_precision, select_device

    old = os.environ.get(PRECISION_ENV)
    if old is None and select_device("auto").type == "cpu":
        os.environ[PRECISION_ENV] = choose_precision(select_device("auto"), "auto")
        say(f"precision on this CPU: {os.environ[PRECISION_ENV]} (held for every chapter)")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(PRECISION_ENV, None)
        else:
            os.environ[PRECISION_ENV] = old


@contextlib.contextmanager
def _heartbeat(label: str, every: float = 60.0, out=None):
    """Print ``label ... still running (Ns)`` every ``every`` seconds while the block runs."""
    stop = threading.Event()
    start = time.perf_counter()

    def beat() -> None:
        while not stop.wait(every):
            print(
                f"      {label} still running ({_fmt_s(time.perf_counter() - start)})",
                file=out or sys.stdout,
                flush=True,
            )

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _fmt_s(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------

Executor = Callable[[Path, Path, dict[str, Any], Path], None]


@dataclass
class StepResult:
    name: str
    status: str  # ran | skipped | failed
    seconds: float
    compute_seconds: float | None = None
    reason: str = ""


class Pipeline:
    """Runs the steps of one preset; see the module docstring."""

    def __init__(
        self,
        layout: Layout,
        overrides: list[str] | None = None,
        seed: int | None = None,
        checkpoint: str = "",
        force: Iterable[str] = (),
        execute: Executor = papermill_execute,
        out=None,
    ) -> None:
        self.layout = layout
        self.overrides = list(overrides or [])
        self.seed = seed
        self.checkpoint = checkpoint
        self.force = set(force)
        self.execute = execute
        self.out = out or sys.stdout
        self.results: list[StepResult] = []
        self.started = _now()
        self._t0 = time.perf_counter()
        self._config_fp: Any = None

    # -- reporting --------------------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _record(self, result: StepResult) -> None:
        self.results = [r for r in self.results if r.name != result.name] + [result]
        self.write_timings()

    def write_timings(self, finished: bool = False) -> None:
        lay = self.layout
        lay.results.mkdir(parents=True, exist_ok=True)
        data = {
            "preset": lay.preset,
            "data_dir": str(lay.data),
            "runs_dir": str(lay.runs),
            "overrides": self.overrides,
            "seed": self.seed,
            "started_at": self.started,
            "finished_at": _now() if finished else None,
            "wall_seconds": round(time.perf_counter() - self._t0, 3),
            "steps": [
                {
                    "name": r.name,
                    "status": r.status,
                    "seconds": round(r.seconds, 3),
                    "compute_seconds": (
                        round(r.compute_seconds, 3) if r.compute_seconds is not None else None
                    ),
                    "reason": r.reason,
                }
                for r in self.results
            ],
        }
        atomic.write_json(lay.timings, data, indent=2)

    # -- stamps -----------------------------------------------------------------------------

    def read_stamp(self, name: str) -> dict[str, Any] | None:
        path = self.layout.stamps / f"{name}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def write_stamp(self, name: str, key: str, seconds: float, **extra: Any) -> None:
        stamp = {"key": key, "seconds": round(seconds, 3), "finished_at": _now(), **extra}
        atomic.write_json(self.layout.stamps / f"{name}.json", stamp, indent=2)

    # -- keys -------------------------------------------------------------------------------

    def config_fp(self) -> Any:
        if self._config_fp is None:
            self._config_fp = config_fingerprint(self.layout.preset, self.overrides, self.seed)
        return self._config_fp

    def corpus_fingerprint(self) -> str:
        meta = self.layout.data / "corpus.json"
        return file_sha256(meta) if meta.is_file() else "no corpus"

    def parameters(self, step: NotebookStep) -> dict[str, Any]:
        lay = self.layout
        values = {
            "preset": lay.preset,
            "data_dir": str(lay.data),
            "runs_dir": str(lay.runs),
            "results_dir": str(lay.results),
            "seed": self.seed,
            "checkpoint": self.checkpoint,
            "overrides": self.overrides,
        }
        if not step.declared:
            return values
        return {k: v for k, v in values.items() if k in step.declared}

    def _portable(self, params: dict[str, Any]) -> dict[str, Any]:
        """Parameters with paths inside the repository made relative (so moving the
        checkout does not invalidate every stamp)."""
        out = {}
        for k, v in params.items():
            if isinstance(v, str) and v.startswith(str(self.layout.root) + os.sep):
                v = os.path.relpath(v, self.layout.root)
            out[k] = v
        return out

    def step_code(self, step: NotebookStep, nb: dict[str, Any]) -> dict[str, str]:
        """Hashes of the library code a step runs: the files its cells import (computed,
        :func:`imported_library_files`) and the ones its metadata declares (``vit1d.code``:
        data such as ``presets`` that no import names)."""
        src = self.layout.root / "src" / "vit1d"
        return code_digest(src, [*step.code, *imported_library_files(src, cell_sources(nb))])

    def step_key(self, step: NotebookStep, upstream: dict[str, str]) -> str:
        nb = _read_notebook(step.template)
        key = {
            "notebook": notebook_digest(nb),
            "parameters": self._portable(self.parameters(step)),
            "config": self.config_fp() if step.uses_config else None,
            "code": self.step_code(step, nb),
            "upstream": upstream,
        }
        if step.files:  # only then, so the keys of steps that declare none stay as they were
            key["files"] = code_digest(self.layout.root, step.files)
        return _json_sha(key)

    # -- planning ---------------------------------------------------------------------------

    def steps(self) -> list[NotebookStep]:
        steps = discover(self.layout.notebooks)
        names = {s.name for s in steps} | {"corpus"}
        for s in steps:
            for need in s.needs or []:
                if need not in names:
                    raise UserError(
                        f"notebooks/{s.name}.ipynb needs step {need!r}, which does not exist "
                        f"(steps: {', '.join(sorted(names))}); fix its metadata 'vit1d.needs'"
                    )
        return steps

    def upstream(self, step: NotebookStep, earlier: list[str]) -> dict[str, str]:
        """What a step's key records of the steps it needs: the corpus's ``corpus.json``
        hash, and for notebooks the run id of their last successful run (so any rerun of an
        upstream step, forced or not, redoes its dependants)."""
        needs = step.needs if step.needs is not None else earlier
        out = {}
        for name in needs:
            if name == "corpus":
                out[name] = self.corpus_fingerprint()
            else:
                out[name] = (self.read_stamp(name) or {}).get("run", "never ran")
        return out

    def plan(self) -> list[tuple[NotebookStep, str, str | None]]:
        """``(step, key, reason to run or None)`` for every notebook step, in order, as a
        dry run: a step whose upstream would run is reported as running too."""
        out = []
        earlier: list[str] = ["corpus"]
        pending: set[str] = set()
        for step in self.steps():
            key = self.step_key(step, self.upstream(step, earlier))
            why = self._why(step, key)
            needs = step.needs if step.needs is not None else earlier
            if why is None:
                waiting = [n for n in needs if n in pending]
                if waiting:
                    why = f"upstream {', '.join(waiting)} will run"
            if why is not None:
                pending.add(step.name)
            earlier = [*earlier, step.name]
            out.append((step, key, why))
        return out

    def _why(self, step: NotebookStep, key: str) -> str | None:
        if step.name in self.force or "all" in self.force:
            return "forced"
        stamp = self.read_stamp(step.name)
        if stamp is None:
            return "never ran"
        if not (self.layout.executed / f"{step.name}.ipynb").is_file():
            return "executed notebook missing"
        if stamp.get("key") != key:
            return "inputs changed"
        return None

    # -- running ----------------------------------------------------------------------------

    def run_notebooks(self) -> list[StepResult]:
        with _library_on_path(self.layout.root):
            return self._run_notebooks()

    def _run_notebooks(self) -> list[StepResult]:
        lay = self.layout
        steps = self.steps()
        self.check_placeholders(steps)
        total = len(steps)
        earlier: list[str] = ["corpus"]
        for i, step in enumerate(steps, start=1):
            key = self.step_key(step, self.upstream(step, earlier))
            why = self._why(step, key)
            earlier = [*earlier, step.name]
            label = f"[{i}/{total}] {step.name}"
            published = lay.book / f"{step.name}.ipynb"
            executed = lay.executed / f"{step.name}.ipynb"
            if why is None:
                copied = self._publish(executed, published)
                stamp = self.read_stamp(step.name) or {}
                note = " (copied into book/)" if copied else ""
                self.say(f"{label}: up to date, skipped{note}")
                self._record(StepResult(step.name, "skipped", 0.0, stamp.get("seconds")))
                continue
            self.say(f"{label}: running ({why}) ...")
            t0 = time.perf_counter()
            lay.executed.mkdir(parents=True, exist_ok=True)
            lay.failed.mkdir(parents=True, exist_ok=True)
            partial = lay.failed / f"{step.name}.ipynb"
            partial.unlink(missing_ok=True)
            try:
                with _heartbeat(step.name, out=self.out):
                    self.execute(step.template, partial, self.parameters(step), lay.root)
            except Exception as exc:  # papermill errors, dead kernels, missing kernels ...
                seconds = time.perf_counter() - t0
                self._record(StepResult(step.name, "failed", seconds, None, why))
                raise describe_failure(step.template, partial, exc) from exc
            seconds = time.perf_counter() - t0
            partial.replace(executed)
            self._publish(executed, published)
            self.write_stamp(step.name, key, seconds, run=uuid.uuid4().hex)
            self.say(f"{label}: done in {_fmt_s(seconds)}")
            self._record(StepResult(step.name, "ran", seconds, seconds, why))
        return self.results

    @staticmethod
    def _publish(executed: Path, published: Path) -> bool:
        """Copy an executed notebook into ``book/`` when it differs (a fresh mtime, so that
        Sphinx re-reads it). Returns whether it copied."""
        published.parent.mkdir(parents=True, exist_ok=True)
        if published.is_file() and file_sha256(published) == file_sha256(executed):
            return False
        shutil.copyfile(executed, published)
        return True

    def check_placeholders(self, steps: list[NotebookStep]) -> None:
        """A chapter is either a markdown placeholder or a notebook, never both."""
        clashes = [s.name for s in steps if (self.layout.book / f"{s.name}.md").exists()]
        if clashes:
            raise UserError(
                "these chapters now have notebooks; delete their markdown placeholders: "
                + ", ".join(f"book/{n}.md" for n in clashes)
            )

    def timed(self, name: str, label: str, func: Callable[[], str | None]) -> None:
        """Run a non-notebook step with a progress line; ``func`` returns ``"skipped"`` when
        it had nothing to do."""
        self.say(f"{label}: running ...")
        t0 = time.perf_counter()
        try:
            status = func()
        except StepFailed:
            self._record(StepResult(name, "failed", time.perf_counter() - t0))
            raise
        seconds = time.perf_counter() - t0
        if status == "skipped":
            stamp = self.read_stamp(name) or {}
            self.say(f"{label}: up to date, skipped")
            self._record(StepResult(name, "skipped", seconds, stamp.get("seconds")))
        else:
            self.say(f"{label}: done in {_fmt_s(seconds)}")
            self._record(StepResult(name, "ran", seconds, seconds))

    # -- the other steps --------------------------------------------------------------------

    def corpus(self) -> str | None:
        lay = self.layout
        cpreset = CORPUS_PRESET[lay.preset]
        code = code_digest(lay.root / "src" / "vit1d", ["corpus", "corpus*.py", "presets/corpus*"])
        key = _json_sha({"preset": cpreset, "code": code})
        stamp = self.read_stamp("corpus")
        meta = lay.data / "corpus.json"
        forced = "corpus" in self.force or "all" in self.force
        if meta.is_file() and not forced:
            if stamp is None:
                self.say(f"      using the existing corpus at {lay.data} (not built here)")
                return "skipped"
            if stamp.get("key") == key and stamp.get("data") == str(lay.data):
                return "skipped"
        cmd = [sys.executable, "-m", "vit1d", "corpus", "--preset", cpreset, "--out", str(lay.data)]
        t0 = time.perf_counter()
        run_command(cmd, "corpus", cwd=lay.root)
        if not meta.is_file():
            raise StepFailed("corpus", f"the corpus builder did not write {meta}")
        self.write_stamp("corpus", key, time.perf_counter() - t0, data=str(lay.data))
        return None

    def assets(self) -> str | None:
        stamp_key = prepare_assets(self.layout.root, say=self.say)
        return "skipped" if stamp_key == "up to date" else None

    def build_book(self) -> None:
        self.check_toc()
        # warnings are errors: a missing glue key or a broken reference fails the build
        # instead of leaving a hole in the prose
        cmd = [jupyter_book_exe(), "build", str(self.layout.book), "--builder", "html"]
        cmd += ["--warningiserror", "--keep-going"]
        run_command(cmd, "book", cwd=self.layout.root)

    def check_toc(self) -> None:
        """Every chapter of ``_toc.yml`` must exist in ``book/`` before the build."""
        missing = [
            f for f in toc_files(self.layout.root) if not chapter_source(self.layout.book, f)
        ]
        if missing:
            raise StepFailed(
                "book",
                "chapters in _toc.yml with no file in book/: "
                + ", ".join(missing)
                + " (a notebook step that did not run, or a missing placeholder)",
            )

    def run(self, corpus: bool = True, assets: bool = True, book: bool = True) -> None:
        lay = self.layout
        self.say(
            f"vit1d pipeline: preset {lay.preset}, data {lay.data}, runs {lay.runs}"
            + (f", overrides {' '.join(self.overrides)}" if self.overrides else "")
        )
        # subprocesses and kernels use this checkout, and one precision decision
        with _library_on_path(lay.root), _one_precision(self.say):
            if assets:
                self.timed("assets", "[assets] offline JavaScript", self.assets)
            if corpus:
                self.timed("corpus", f"[corpus] {CORPUS_PRESET[lay.preset]} corpus", self.corpus)
            self.run_notebooks()
            if book:
                self.timed("book", "[book] jupyter-book build book/", self.build_book)
        self.write_timings(finished=True)
        lines = [f"{r.name} {r.status} {_fmt_s(r.seconds)}" for r in self.results]
        self.say("timings: " + "; ".join(lines))
        self.say(f"total {_fmt_s(time.perf_counter() - self._t0)}; timings in {lay.timings}")
        if book:
            self.say(f"book: {lay.book / '_build' / 'html' / 'index.html'}")


def run_command(cmd: list[str], step: str, cwd: Path, tail: int = 40) -> None:
    """Run a command, streaming nothing unless it fails; then raise StepFailed with the last
    lines of its output."""
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    except FileNotFoundError as exc:
        raise StepFailed(step, f"step {step}: cannot run {cmd[0]}: {exc}") from None
    if proc.returncode != 0:
        shown = "\n".join("    | " + x for x in proc.stdout.strip().splitlines()[-tail:])
        raise StepFailed(
            step,
            f"step {step} failed: `{' '.join(cmd)}` exited with {proc.returncode}\n{shown}",
        )


def jupyter_book_exe() -> str:
    candidate = Path(sys.executable).parent / "jupyter-book"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("jupyter-book")
    if not found:
        raise UserError("jupyter-book is not installed: pip install -e '.[book]'")
    return found


def toc_files(root: Path) -> list[str]:
    """Every ``file:`` (and the root) of ``_toc.yml``, in reading order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    out = [toc["root"]]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                out.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return out


def chapter_source(book: Path, name: str) -> Path | None:
    for ext in (".ipynb", ".md", ".rst"):
        path = book / f"{name}{ext}"
        if path.is_file():
            return path
    return None


# --------------------------------------------------------------------------------------------
# Offline JavaScript
# --------------------------------------------------------------------------------------------


def prepare_assets(root: Path, say: Callable[[str], None] = print) -> str:
    """Install the pinned npm packages (if needed) and copy the trimmed files the pages load
    into ``node_modules/.book-static/``. Returns ``"up to date"`` when nothing was done."""
    lock = root / "package-lock.json"
    spec = lock if lock.is_file() else root / "package.json"
    if not spec.is_file():
        raise UserError(f"{root / 'package.json'} is missing: it pins the book's JavaScript")
    key = file_sha256(spec) + ":" + _json_sha([ASSET_FILES, ASSET_GLOBS, ASSETS_PATH_JS])
    dest = root / ASSETS_DIR
    stamp = dest.with_name(dest.name + ".stamp")
    if stamp.is_file() and stamp.read_text() == key:
        return "up to date"
    nm = root / "node_modules"
    sources = [nm / src for src in ASSET_FILES.values()]
    installed = nm / ".package-lock.json"
    if not all(p.exists() for p in sources) or not _npm_matches(lock, installed):
        npm = shutil.which("npm")
        if npm is None:
            raise UserError(
                "npm is not installed: the book needs it once to fetch require.js, the "
                "ipywidgets HTML manager and MathJax (Debian: apt-get install npm)"
            )
        verb = "ci" if lock.is_file() else "install"
        say(f"      npm {verb} (pinned in package.json)")
        run_command([npm, verb, "--no-audit", "--no-fund", "--ignore-scripts"], "assets", cwd=root)
    copy_assets(nm, dest)
    atomic.write_text(stamp, key)
    return "copied"


def _npm_matches(lock: Path, installed: Path) -> bool:
    """Whether node_modules was installed from this lock file (npm keeps its own copy)."""
    if not lock.is_file() or not installed.is_file():
        return installed.is_file()
    try:
        want = json.loads(lock.read_text()).get("packages", {})
        have = json.loads(installed.read_text()).get("packages", {})
    except json.JSONDecodeError:
        return False
    return all(have.get(k, {}).get("version") == v.get("version") for k, v in want.items() if k)


def copy_assets(node_modules: Path, dest: Path) -> None:
    """Copy :data:`ASSET_FILES` and :data:`ASSET_GLOBS` from ``node_modules`` to ``dest``
    (emptied first)."""
    if dest.exists():
        shutil.rmtree(dest)
    for target, source in ASSET_FILES.items():
        src = node_modules / source
        if not src.exists():
            raise StepFailed("assets", f"{src} is missing after npm install")
        out = dest / target
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out)
        else:
            shutil.copyfile(src, out)
    for target, (folder, pattern) in ASSET_GLOBS.items():
        for src in sorted((node_modules / folder).glob(pattern)):
            out = dest / target / src.name
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
    (dest / "html-manager" / "require-paths.js").write_text(ASSETS_PATH_JS)


#: Loaded between require.js and the HTML manager (``_config.yml``). The manager's bundle is
#: the AMD module ``@jupyter-widgets/html-manager/dist/embed-amd`` and loads its icon fonts
#: beside the address require.js gives that name (by default, under the page's folder, where
#: nothing is); map the name to this folder so the fonts come from ``_static``. The widget
#: modules it defines (``@jupyter-widgets/controls``, ...) place their fonts beside their own
#: addresses too, so the ``@jupyter-widgets`` prefix maps here as well (require.js uses the
#: longest matching prefix).
ASSETS_PATH_JS = """// written by vit1d.pipeline: the ipywidgets HTML manager finds its fonts beside this file
(function () {
  var here = document.currentScript.src.replace(/[?#].*$/, "").replace(/\\/[^/]*$/, "");
  window.require.config({
    paths: {"@jupyter-widgets/html-manager/dist": here, "@jupyter-widgets": here}
  });
})();
"""


# --------------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------------

#: Attributes that make a browser fetch something when the page loads.
_FETCH_ATTRS = ("src", "data-src", "poster")


def _book_presets(book: Path) -> set[str]:
    """Presets the executed notebooks in ``book/`` were run with (papermill records them)."""
    found = set()
    for path in book.glob("*.ipynb"):
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        except (OSError, json.JSONDecodeError):
            continue
        preset = meta.get("papermill", {}).get("parameters", {}).get("preset")
        if preset:
            found.add(preset)
    return found


def external_references(html_dir: Path) -> list[str]:
    """``file: url`` for every resource a page of the site would fetch from another host
    (scripts, styles, images, media, fonts in CSS); links to other sites are fine."""
    import re

    found = []
    tag_attr = re.compile(
        r"<(script|img|audio|video|source|iframe|embed)\b[^>]*?\s(?:src|data-src|poster)"
        r"\s*=\s*[\"']((?:https?:)?//[^\"']+)",
        re.IGNORECASE,
    )
    link_css = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
    css_url = re.compile(r"url\(\s*[\"']?((?:https?:)?//[^)\"']+)", re.IGNORECASE)
    for path in sorted(html_dir.rglob("*")):
        if path.suffix not in (".html", ".css") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(html_dir).as_posix()
        if path.suffix == ".css":
            found += [f"{rel}: {u}" for u in css_url.findall(text)]
            continue
        found += [f"{rel}: {m[1]}" for m in tag_attr.findall(text)]
        for tag in link_css.findall(text):
            rel_attr = re.search(r"rel\s*=\s*[\"']([^\"']+)", tag, re.IGNORECASE)
            href = re.search(r"href\s*=\s*[\"']((?:https?:)?//[^\"']+)", tag, re.IGNORECASE)
            if (
                href
                and rel_attr
                and rel_attr[1].lower()
                in (
                    "stylesheet",
                    "preload",
                    "modulepreload",
                    "icon",
                    "shortcut icon",
                    "manifest",
                )
            ):
                found.append(f"{rel}: {href[1]}")
    return found


def publish_site(root: Path, out: Path, preset: str | None = None) -> Path:
    """Copy the built HTML book into ``out`` as a self-contained static site (every asset
    local, ``.nojekyll`` for GitHub Pages). Fails if a page would fetch from another host,
    or, given ``preset``, if the book's notebooks were executed for another preset."""
    html = root / "book" / "_build" / "html"
    if not (html / "index.html").is_file():
        raise UserError(f"no built book at {html}: run `make book` (python -m vit1d.pipeline)")
    if preset is not None:
        built = _book_presets(root / "book")
        if built and built != {preset}:
            raise UserError(
                f"the book in book/ was executed for preset(s) {', '.join(sorted(built))}, "
                f"not {preset}: run `python -m vit1d.pipeline --preset {preset}` first"
            )
    external = external_references(html)
    if external:
        raise UserError(
            "the built book fetches from other hosts, so it is not self-contained:\n  "
            + "\n  ".join(external[:20])
        )
    out = Path(out).resolve()
    if out == html.resolve() or html.resolve() in out.parents:
        raise UserError(f"--out must be outside {html}")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(html, out, ignore=shutil.ignore_patterns(".buildinfo", ".doctrees"))
    (out / ".nojekyll").write_text("")
    return out


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _add_build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default", choices=sorted(CORPUS_PRESET))
    p.add_argument("--data", help="corpus root (default: data/<corpus preset>)")
    p.add_argument("--runs", help="runs folder of this preset (default: runs/<preset>)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override passed to every notebook (repeatable), e.g. train.steps=20",
    )
    p.add_argument("--seed", type=int, default=None, help="seed (default: the preset's)")
    p.add_argument(
        "--checkpoint",
        default="",
        help="checkpoint folder the analyses read (default: the model trained in this build)",
    )
    p.add_argument("--root", help="repository root (default: found from the working directory)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vit1d.pipeline",
        description="Build the book: corpus -> notebooks (papermill) -> jupyter-book build.",
        epilog="Without an action, the arguments go to build: "
        "python -m vit1d.pipeline --preset smoke. See build --help.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    b = sub.add_parser("build", help="run the pipeline (the default action)")
    _add_build_args(b)
    b.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STEP",
        help="redo STEP even if up to date (repeatable; 'all' for every step)",
    )
    b.add_argument("--no-corpus", action="store_true", help="use --data as it is")
    b.add_argument("--no-book", action="store_true", help="stop before jupyter-book build")
    s = sub.add_parser("status", help="show which notebook steps would run, and why")
    _add_build_args(s)
    site = sub.add_parser("site", help="copy the built book into a self-contained folder")
    site.add_argument("--out", default="public", help="output folder (default: public/)")
    site.add_argument(
        "--preset",
        choices=sorted(CORPUS_PRESET),
        help="check that the built book is of this preset (the last pipeline run's)",
    )
    site.add_argument("--root", help="repository root")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("build", "status", "site", "-h", "--help"):
        argv = ["build", *argv]
    args = build_parser().parse_args(argv)
    try:
        root = Path(args.root).resolve() if args.root else find_root()
        if args.action == "site":
            out = publish_site(root, Path(args.out), preset=args.preset)
            print(f"static site in {out} (open {out / 'index.html'} or serve the folder)")
            return 0
        layout = Layout.make(root, args.preset, args.data, args.runs)
        pipe = Pipeline(
            layout,
            overrides=args.overrides,
            seed=args.seed,
            checkpoint=args.checkpoint,
            force=getattr(args, "force", ()),
        )
        if args.action == "status":
            for step, _key, why in pipe.plan():
                print(f"{step.name:28s} {'up to date' if why is None else 'would run: ' + why}")
            return 0
        pipe.run(corpus=not args.no_corpus, book=not args.no_book)
    except StepFailed as exc:
        print(f"\nBUILD FAILED: {exc}", file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"vit1d pipeline: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vit1d pipeline: interrupted", file=sys.stderr)
        return 130
    return 0


def register(subparsers: Any) -> None:
    """``vit1d book ...``: the same as ``python -m vit1d.pipeline ...``."""
    p = subparsers.add_parser(
        "book",
        help="build the book (corpus -> notebooks -> jupyter-book); see python -m vit1d.pipeline",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: main(args.rest))


if __name__ == "__main__":
    sys.exit(main())
