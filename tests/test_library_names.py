"""Every library name the notebooks, scripts and library modules use exists:
``from vit1d.m import n`` and ``module.attr`` on an imported library module are resolved
against the installed library.

A renamed or moved function otherwise surfaces only when the code runs (for a notebook,
minutes into the smoke build); this finds it in the fast tests, from the source alone.
"""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest

from vit1d.book.stamps import cell_sources

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MODULES = sorted((ROOT / "src" / "vit1d").rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))
PACKAGE = "vit1d"


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        return None


def missing_names(source: str) -> list[str]:
    """``module.attr`` references in ``source`` that the library does not define."""
    tree = ast.parse(source)
    bound: dict[str, ModuleType] = {}  # local name -> library module it names
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE and alias.asname:
                    mod = _module(alias.name)
                    if mod is None:
                        missing.append(alias.name)
                    else:
                        bound[alias.asname] = mod
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != PACKAGE:
                continue
            parent = _module(node.module)
            if parent is None:
                missing.append(node.module)
                continue
            for alias in node.names:
                sub = _module(f"{node.module}.{alias.name}")
                if sub is not None:
                    bound[alias.asname or alias.name] = sub
                elif not hasattr(parent, alias.name):
                    missing.append(f"{node.module}.{alias.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and not hasattr(bound[node.value.id], node.attr)
        ):
            missing.append(f"{bound[node.value.id].__name__}.{node.attr}")
    return sorted(set(missing))


def test_the_checker_finds_a_missing_attribute_and_import():
    src = (
        "from vit1d.book import chapters\n"
        "from vit1d.probing.tasks import GLOBAL_TASKS, NO_SUCH_LIST\n"
        "chapters.run_chapter_probes\n"
        "chapters.NO_SUCH_FUNCTION()\n"
    )
    assert missing_names(src) == [
        "vit1d.book.chapters.NO_SUCH_FUNCTION",
        "vit1d.probing.tasks.NO_SUCH_LIST",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_use_only_names_the_library_defines(path):
    nb = json.loads(path.read_text())
    source = "\n".join(cell_sources(nb))
    assert missing_names(source) == [], f"{path.name} uses names the library does not define"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_scripts_use_only_names_the_library_defines(path):
    assert missing_names(path.read_text()) == []
