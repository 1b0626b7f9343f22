"""Atomic writes (``vit1d.core.atomic``): whole files or none, and one helper for the library."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import numpy as np
import pytest

from vit1d.core import atomic

SRC = Path(__file__).resolve().parents[1] / "src" / "vit1d"

#: Modules that rename whole *folders*: writers that put one in place (their own temporary
#: folder, then one rename), which a file helper cannot do for them, and the pipeline, which
#: moves an earlier run's folder aside.
FOLDER_WRITERS = {
    "models/checkpoint.py",
    "features/cache.py",
    "studies/reference.py",
    "studies/recipes.py",
    "book/layout.py",
    "book/foil.py",
}


def test_write_text_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.json"
    atomic.write_json(path, {"x": 1}, sort_keys=True)
    atomic.write_text(path, "second")
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text("old rows\n")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic.replacing(path) as tmp:
            tmp.write_text("half of the new ro")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old rows\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_suffix_lets_format_guessing_writers_write_the_temporary(tmp_path: Path) -> None:
    """np.savez appends .npz to a name without it: the temporary keeps the suffix so the
    file written is the one renamed."""
    path = tmp_path / "emb.npz"
    with atomic.replacing(path, suffix=".npz") as tmp:
        np.savez(tmp, a=np.arange(3))
    with np.load(path) as z:
        np.testing.assert_array_equal(z["a"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["emb.npz"]


def test_a_reader_sees_whole_versions_only(tmp_path: Path) -> None:
    """Readers polling while a writer rewrites a large file see one complete version each
    time, never a mixture or a truncated file."""
    path = tmp_path / "big.txt"
    versions = [str(k) * 200_000 for k in range(10)]
    atomic.write_text(path, versions[0], fsync=False)
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(path.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    for text in versions[1:] * 3:
        atomic.write_text(path, text, fsync=False)
    done.set()
    reader.join()
    assert seen and all(s in versions for s in seen)


def _renames(tree: ast.AST) -> list[int]:
    """Lines calling ``os.replace``/``os.rename`` or a ``.rename``/``.replace`` method with one
    argument that is not a string (``Path.rename(target)``; ``str.replace`` takes two)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        on_os = isinstance(node.func.value, ast.Name) and node.func.value.id == "os"
        if on_os and name in ("replace", "rename"):
            lines.append(node.lineno)
        elif name == "rename" and len(node.args) == 1 and not node.keywords:
            lines.append(node.lineno)
    return lines


def test_files_are_written_atomically_through_one_helper() -> None:
    """Only vit1d.core.atomic renames files into place; the few folder writers are named above."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "core/atomic.py" or rel in FOLDER_WRITERS:
            continue
        lines = _renames(ast.parse(path.read_text()))
        offenders += [f"{rel}:{n}" for n in lines]
    assert not offenders, f"write through vit1d.core.atomic instead: {offenders}"


def test_temporaries_are_told_from_final_files(tmp_path: Path) -> None:
    """The corpus builder deletes what a killed writer left by this test of the name: every
    temporary name matches it, no final name does."""
    from vit1d.corpus.build import _clean_temporaries

    names = [atomic.temporary_name(tmp_path / n, sfx).name for n in ("00001.flac", "a.json")
             for sfx in ("", ".npz")]  # fmt: skip
    names.append(".00000.flac.tmp99999")  # a folder writer's, or an earlier version's
    assert all(atomic.is_temporary(n) for n in names)
    finals = ["00001.flac", ".hidden", "a.tmp123", ".a.tmpx", "x.tmp1-zz", "build.json"]
    assert not any(atomic.is_temporary(n) for n in finals)
    (tmp_path / "audio").mkdir()
    for n in names + finals:
        (tmp_path / "audio" / n).write_text("x")
    assert _clean_temporaries(tmp_path) == len(names)
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == sorted(finals)
