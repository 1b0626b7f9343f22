"""Short modules and short functions (docs/design.md, "Layers"): no module of ``src/vit1d``
over 500 lines and no function over 80, unless a ``# long: <why>`` comment says why (on
the line above the ``def``, or within a module's first 40 lines for the module)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vit1d"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
REASON = "# long:"


def oversized(path: Path) -> list[str]:
    """``"path: what"`` for the module and each function of ``path`` over the limits that
    gives no reason."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found = []
    if len(lines) > MAX_MODULE_LINES and not any(REASON in line for line in lines[:40]):
        found.append(f"{path}: {len(lines)} lines")
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        length = node.end_lineno - node.lineno + 1
        above = lines[first - 2] if first >= 2 else ""
        if length > MAX_FUNCTION_LINES and REASON not in above:
            found.append(f"{path}:{node.lineno}: {node.name} has {length} lines")
    return found


def test_modules_and_functions_are_short_or_say_why() -> None:
    found = [item for path in sorted(SRC.rglob("*.py")) for item in oversized(path)]
    assert not found, (
        f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function: split it, "
        f"or write '{REASON} <why>' above it:\n" + "\n".join(found)
    )


def test_the_size_check_can_fail(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "m.py"
    path.write_text(f"def f():\n{body}\n")
    assert [item.split(": ", 1)[1] for item in oversized(path)] == [
        f"f has {MAX_FUNCTION_LINES + 1} lines"
    ]
    path.write_text(f"{REASON} one table of cases\ndef f():\n{body}\n")
    assert oversized(path) == []
    path.write_text("\n".join(["x = 1"] * (MAX_MODULE_LINES + 1)))
    assert len(oversized(path)) == 1
