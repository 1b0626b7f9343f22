"""The book pipeline: corpus -> papermill over the notebooks -> ``jupyter-book build book/``.

Usage (``make book`` calls the first form)::

    python -m vit1d.cli.book --preset smoke|default|long|paper [--data DIR] [--runs DIR]
                             [--set section.key=value ...] [--seed N] [--force STEP ...]
    python -m vit1d.cli.book status --preset smoke      # which steps would run, and why
    python -m vit1d.cli.book site --out public/         # self-contained static site

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
hashes the template's cells, the parameters, the resolved training config (``vit1d.pretrain.config``:
preset + overrides, so a changed config redoes what depends on it), the library source files
the notebook declares, and what it needs upstream: the hash of the corpus's ``corpus.json`` and
the run id of each notebook step it needs (so any rerun of an upstream step, forced or not,
redoes its dependants). A template declares these in its notebook metadata::

    "vit1d": {"needs": ["corpus", "03_pretrain"], "code": ["models/model.py", "pretrain/train*"],
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
(a list of ``section.key=value`` strings for :func:`vit1d.pretrain.config.load_config`). Paths are
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

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vit1d.book.execute import (
    StepFailed,
    describe_failure,
    fmt_seconds,
    heartbeat,
    library_on_path,
    now_iso,
    one_precision,
    papermill_execute,
)
from vit1d.book.layout import Layout
from vit1d.book.site import chapter_source, jupyter_book_exe, prepare_assets, run_command, toc_files
from vit1d.book.stamps import (
    NotebookStep,
    cell_sources,
    code_digest,
    config_fingerprint,
    discover,
    imported_library_files,
    json_sha,
    notebook_digest,
    read_notebook,
)
from vit1d.core import atomic
from vit1d.core.errors import UserError
from vit1d.core.presets import pipeline_preset
from vit1d.core.provenance import file_sha256

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
        self.started = now_iso()
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
            "finished_at": now_iso() if finished else None,
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
        stamp = {"key": key, "seconds": round(seconds, 3), "finished_at": now_iso(), **extra}
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
        nb = read_notebook(step.template)
        key = {
            "notebook": notebook_digest(nb),
            "parameters": self._portable(self.parameters(step)),
            "config": self.config_fp() if step.uses_config else None,
            "code": self.step_code(step, nb),
            "upstream": upstream,
        }
        if step.files:  # only then, so the keys of steps that declare none stay as they were
            key["files"] = code_digest(self.layout.root, step.files)
        return json_sha(key)

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
        with library_on_path(self.layout.root):
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
                with heartbeat(step.name, out=self.out):
                    self.execute(step.template, partial, self.parameters(step), lay.root)
            except Exception as exc:  # papermill errors, dead kernels, missing kernels ...
                seconds = time.perf_counter() - t0
                self._record(StepResult(step.name, "failed", seconds, None, why))
                raise describe_failure(step.template, partial, exc) from exc
            seconds = time.perf_counter() - t0
            partial.replace(executed)
            self._publish(executed, published)
            self.write_stamp(step.name, key, seconds, run=uuid.uuid4().hex)
            self.say(f"{label}: done in {fmt_seconds(seconds)}")
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
            self.say(f"{label}: done in {fmt_seconds(seconds)}")
            self._record(StepResult(name, "ran", seconds, seconds))

    # -- the other steps --------------------------------------------------------------------

    def corpus(self) -> str | None:
        lay = self.layout
        cpreset = pipeline_preset(lay.preset).corpus
        code = code_digest(lay.root / "src" / "vit1d", ["corpus", "corpus*.py", "presets/corpus*"])
        key = json_sha({"preset": cpreset, "code": code})
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
        with library_on_path(lay.root), one_precision(self.say):
            if assets:
                self.timed("assets", "[assets] offline JavaScript", self.assets)
            if corpus:
                self.timed(
                    "corpus", f"[corpus] {pipeline_preset(lay.preset).corpus} corpus", self.corpus
                )
            self.run_notebooks()
            if book:
                self.timed("book", "[book] jupyter-book build book/", self.build_book)
        self.write_timings(finished=True)
        lines = [f"{r.name} {r.status} {fmt_seconds(r.seconds)}" for r in self.results]
        self.say("timings: " + "; ".join(lines))
        self.say(f"total {fmt_seconds(time.perf_counter() - self._t0)}; timings in {lay.timings}")
        if book:
            self.say(f"book: {lay.book / '_build' / 'html' / 'index.html'}")
