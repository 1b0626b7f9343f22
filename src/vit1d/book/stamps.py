"""What a notebook step's stamp hashes (docs/design.md, "Incremental builds"): the template's
cells, the library files its cells import (found from the source, transitively), the files
its metadata names, the resolved training config; and the steps found in ``notebooks/``."""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vit1d.core.errors import UserError
from vit1d.core.provenance import file_sha256
from vit1d.pretrain.config import load_config


def _sha(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def json_sha(obj: Any) -> str:
    return _sha(json.dumps(obj, sort_keys=True, default=str))


def read_notebook(path: Path) -> dict[str, Any]:
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
    return json_sha([cells, meta.get("vit1d", {}), kernel])


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


#: Library data files a module reads: a notebook that imports the module depends on them too.
DATA_READ_BY = {"core/presets.py": ("presets/pipeline.yaml",)}


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
    files = {f.relative_to(src_dir).as_posix() for f in seen}
    files |= {data for module in files for data in DATA_READ_BY.get(module, ())}
    return sorted(files)


def config_fingerprint(preset: str, overrides: list[str], seed: int | None) -> Any:
    """The resolved training config as a dict. Raises UserError for a bad override."""
    items = list(overrides) + ([f"seed={seed}"] if seed is not None else [])
    return load_config(preset, items).to_dict()


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
        nb = read_notebook(path)
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
