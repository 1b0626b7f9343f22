"""Code that could unpickle untrusted data: the check behind "weights load through
safetensors only". :func:`unsafe_loads` parses every Python file under a folder and names each
call that could run a pickle's code; the reproducibility appendix shows its finding for the
library and ``tests/test_bad_inputs.py`` requires it to be empty.
"""

from __future__ import annotations

import ast
from pathlib import Path

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
