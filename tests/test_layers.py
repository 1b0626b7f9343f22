"""The import contract of ``src/vit1d`` (docs/design.md, "Layers"): each subpackage is a stage
of the pipeline, a stage imports only from the stages below it (function bodies included:
they run when called), and no module imports itself back through others.

The graph is read from the source with :mod:`ast`, so the test needs no import of the library
and states the layers in one list that the design notes show as a table.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vit1d"

#: The stages, lowest first. A module may import from its own stage and from earlier ones.
LAYERS = [
    "core",  # errors, atomic writes, paths, provenance, fault points, extras, memory
    "audio",  # the time-frequency grid and the log-mel front end
    "corpus",  # the rendered corpus and its labels
    "datasets",  # adapters from real datasets to the corpus's manifests
    "models",  # ViT-1D, checkpoints, device and precision
    "pretrain",  # config and presets, pair sampling, augmentations, objectives, the loop
    "features",  # windowing, the feature cache, extraction, the HEAR API
    "probing",  # tasks, linear probes, metrics, tidy results, statistics
    "analysis",  # attention onsets, self-similarity, novelty
    "ledger",  # the claims ledger
    "studies",  # the recipe study, the reference export
    "viz",  # figures and explorers
    "book",  # the book build; nothing below imports it
    "bench",  # throughput benchmarks against an fp32 eager reference
    "cli",  # the vit1d command's subcommands that are not their stage's own
    "",  # the package's top: vit1d/__init__ and the public HEAR module
]


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage(module: str) -> str:
    """The stage of ``vit1d.<stage>.<...>``; top-level modules are the package's top ("")."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def imports(path: Path) -> set[str]:
    """Library modules (or names in them) that ``path`` imports anywhere in its body."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("vit1d.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "vit1d" or node.module.startswith("vit1d."):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    out.add(
                        full
                        if (SRC.parent / (full.replace(".", "/") + ".py")).exists()
                        or (SRC.parent / full.replace(".", "/")).is_dir()
                        else node.module
                    )
    return out


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    return {
        name: {m for m in imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_every_subpackage_is_a_stage():
    packages = {p.parent.name for p in SRC.glob("*/__init__.py")}
    assert packages <= set(LAYERS), f"add {sorted(packages - set(LAYERS))} to LAYERS"


def test_stages_import_only_from_stages_below():
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for module, targets in sorted(graph().items()):
        for target in sorted(targets):
            if target == "vit1d":
                continue  # __version__ and the public names: the package's own __init__
            if rank[stage(target)] > rank[stage(module)]:
                bad.append(f"{module} -> {target}")
    assert not bad, "a lower stage imports a higher one:\n" + "\n".join(bad)


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    g = {m: {t for t in ts if t != "vit1d"} for m, ts in graph().items()}
    assert _cycles(g) == []


@pytest.mark.parametrize(
    "g, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_the_cycle_finder(g, expected):
    assert _cycles(g) == expected


def test_the_contract_sees_an_upward_import(tmp_path, monkeypatch):
    """A probing module importing the book is reported (the check can fail)."""
    pkg = tmp_path / "vit1d"
    for stage_name in ("probing", "book"):
        (pkg / stage_name).mkdir(parents=True)
        (pkg / stage_name / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "book" / "chapters.py").write_text("X = 1\n")
    (pkg / "probing" / "solvers.py").write_text(
        "def main():\n    from vit1d.book.chapters import X\n"
    )
    monkeypatch.setattr(f"{__name__}.SRC", pkg)
    with pytest.raises(AssertionError, match="vit1d.probing.solvers -> vit1d.book.chapters"):
        test_stages_import_only_from_stages_below()
