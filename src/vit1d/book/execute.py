"""Executing one template with papermill: the kernel finds this library, every chapter shares
one CPU precision decision, a heartbeat shows long cells are alive, and a failure names the
notebook, the cell in the template, the error and the fix."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vit1d.book.stamps import read_notebook
from vit1d.core import atomic
from vit1d.models import device


class StepFailed(Exception):
    """A pipeline step failed; the message names the step (and for a notebook, the cell)."""

    def __init__(self, step: str, message: str, cell: int | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.cell = cell


def _cell_source(cell: Any) -> str:
    src = cell.get("source", "") if isinstance(cell, dict) else ""
    return "".join(src) if isinstance(src, list) else str(src)


def _failing_line(traceback: list[str]) -> str | None:
    """The source line IPython marks with an arrow in the notebook cell's frame of a
    traceback (ANSI colours removed)."""
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
        nb = read_notebook(executed)
        for cell in nb.get("cells", []):
            if cell.get("metadata", {}).get("papermill", {}).get("exception"):
                source = _cell_source(cell)
    if source is not None:
        tpl = read_notebook(template)
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
    nb = read_notebook(path)
    changed = False
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
            changed = True
    if changed:
        atomic.write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def library_on_path(root: Path):
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
def one_precision(say: Callable[[str], None]):
    """Decide once what precision ``auto`` means on this CPU and hold it for every chapter
    (``VIT1D_PRECISION``, :func:`vit1d.models.device.choose_precision`); a value already set wins."""
    old = os.environ.get(device.PRECISION_ENV)
    if old is None and device.select_device("auto").type == "cpu":
        precision = device.choose_precision(device.select_device("auto"), "auto")
        os.environ[device.PRECISION_ENV] = precision
        say(f"precision on this CPU: {precision} (held for every chapter)")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(device.PRECISION_ENV, None)
        else:
            os.environ[device.PRECISION_ENV] = old


@contextlib.contextmanager
def heartbeat(label: str, every: float = 60.0, out=None):
    """Print ``label ... still running (Ns)`` every ``every`` seconds while the block runs."""
    stop = threading.Event()
    start = time.perf_counter()

    def beat() -> None:
        while not stop.wait(every):
            print(
                f"      {label} still running ({fmt_seconds(time.perf_counter() - start)})",
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


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
