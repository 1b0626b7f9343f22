"""The reference checkpoint is found the same way from a source checkout and an installed
wheel: ``VIT1D_REFERENCE`` first, then the checkout's ``checkpoints/reference``; absent, the
error names the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from vit1d.book import layout
from vit1d.core import paths
from vit1d.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _package(root: Path, checkout: bool) -> Path:
    """A fake package folder: ``root/src/vit1d`` of a checkout, or ``site-packages/vit1d``."""
    if checkout:
        (root / "pyproject.toml").parent.mkdir(parents=True, exist_ok=True)
        (root / "pyproject.toml").write_text("[project]\nname = 'vit1d'\n")
        package = root / "src" / "vit1d"
    else:
        package = root / "lib" / "python3.11" / "site-packages" / "vit1d"
    package.mkdir(parents=True)
    return package


def _checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_this_checkout_is_found_with_its_reference(monkeypatch) -> None:
    monkeypatch.delenv(paths.REFERENCE_ENV, raising=False)
    assert paths.source_checkout() == ROOT
    assert paths.reference_checkpoint() == ROOT / "checkpoints" / "reference"


def test_the_variable_wins_over_the_checkout(tmp_path: Path, monkeypatch) -> None:
    package = _package(tmp_path / "repo", checkout=True)
    _checkpoint(tmp_path / "repo" / "checkpoints" / "reference")
    mine = _checkpoint(tmp_path / "elsewhere")
    monkeypatch.setenv(paths.REFERENCE_ENV, str(mine))
    assert paths.reference_checkpoint(package) == mine
    monkeypatch.delenv(paths.REFERENCE_ENV)
    assert paths.reference_checkpoint(package) == tmp_path / "repo" / "checkpoints" / "reference"


def test_an_installed_package_needs_the_variable(tmp_path: Path, monkeypatch) -> None:
    package = _package(tmp_path / "venv", checkout=False)
    # a checkpoints/reference where a checkout's would be must not be taken for one
    _checkpoint(tmp_path / "venv" / "lib" / "checkpoints" / "reference")
    monkeypatch.delenv(paths.REFERENCE_ENV, raising=False)
    assert paths.source_checkout(package) is None
    with pytest.raises(UserError, match="VIT1D_REFERENCE is not set and an installed package"):
        paths.reference_checkpoint(package)
    ckpt = _checkpoint(tmp_path / "clone" / "checkpoints" / "reference")
    monkeypatch.setenv(paths.REFERENCE_ENV, str(ckpt))
    assert paths.reference_checkpoint(package) == ckpt


def test_a_checkout_without_its_reference_says_how_to_make_it(tmp_path: Path, monkeypatch) -> None:
    package = _package(tmp_path / "repo", checkout=True)
    monkeypatch.delenv(paths.REFERENCE_ENV, raising=False)
    with pytest.raises(UserError, match="VIT1D_REFERENCE.*make reference"):
        paths.reference_checkpoint(package)


def test_a_variable_naming_no_checkpoint_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(paths.REFERENCE_ENV, str(tmp_path))
    with pytest.raises(UserError, match="VIT1D_REFERENCE=.* holds no checkpoint"):
        paths.reference_checkpoint()


def test_the_book_root_falls_back_to_this_checkout(tmp_path: Path) -> None:
    assert layout.find_root(tmp_path) == ROOT
