"""The Makefile is the README's entry point: every target it advertises must parse and
expand (``make -n``), and the CI script must call the README's test command."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _advertised_targets() -> list[str]:
    help_lines = re.findall(r'@echo "make ([\w-]+)', (ROOT / "Makefile").read_text())
    return sorted(set(help_lines))


def test_help_lists_the_main_targets():
    targets = _advertised_targets()
    for needed in ("book", "test", "test-book", "reference", "recipe-study", "bench"):
        assert needed in targets


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", _advertised_targets())
def test_target_expands(target):
    # -n prints the recipe without running it; a syntax error or missing rule exits non-zero
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "warning: overriding recipe" not in done.stderr, done.stderr


def test_each_target_is_defined_once():
    names = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M)
    duplicated = {n for n in names if names.count(n) > 1}
    assert not duplicated, f"targets defined twice: {sorted(duplicated)}"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make test\n" in ci


def _recipe(target: str) -> str:
    """The recipe lines of ``target`` in the Makefile."""
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, flags=re.M)
    assert match, f"no rule for {target}"
    return match.group(1)


def test_ci_runs_the_slow_tests_too():
    """No test is left out of CI: ``make test`` runs the fast ones, ``make test-slow`` the
    slow ones but what ``make test-book`` runs after building the book they need."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test-slow\n" in ci and "make test-book\n" in ci
    slow = _recipe("test-slow")
    assert "pytest -m slow" in slow
    book = _recipe("test-book")
    for left_out in re.findall(r"--ignore=(\S+)", slow):
        assert left_out in book, left_out
