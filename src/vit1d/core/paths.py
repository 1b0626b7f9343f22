"""Where the project's files are, found the same way from a source checkout and a wheel.

The reference checkpoint (``checkpoints/reference/``: about 11 MB of weights, its training log
and the committed recipe study) is not package data: it belongs to the repository and its
book, and a wheel that carried it would be many megabytes. :func:`reference_checkpoint` finds
it in this order:

1. ``VIT1D_REFERENCE``, an environment variable naming the folder (``model.safetensors`` +
   ``config.json``), e.g. the ``checkpoints/reference`` of a clone of the repository;
2. the ``checkpoints/reference/`` of the source checkout this package is imported from
   (an editable install or ``PYTHONPATH=src``).

An installed wheel has no checkout (:func:`source_checkout` is ``None``), so there only the
environment variable finds it, and the error says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from vit1d.core.errors import UserError

#: The environment variable naming the reference checkpoint's folder.
REFERENCE_ENV = "VIT1D_REFERENCE"
#: The reference checkpoint's folder inside a source checkout.
REFERENCE_IN_CHECKOUT = Path("checkpoints") / "reference"

#: The installed package's folder (``src/vit1d`` in a source checkout).
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: The preset YAMLs (training, corpus and pipeline), shipped as package data.
PRESET_DIR = PACKAGE_DIR / "presets"
_PACKAGE = PACKAGE_DIR


def source_checkout(package: Path = _PACKAGE) -> Path | None:
    """The repository root when ``package`` (default: this one) is its ``src/vit1d``, else
    ``None`` (an installed wheel lives in ``site-packages``, which is no checkout)."""
    root = package.parents[1]
    if package.name == "vit1d" and package.parent.name == "src":
        if (root / "pyproject.toml").is_file():
            return root
    return None


def reference_checkpoint(package: Path = _PACKAGE) -> Path:
    """The folder of the reference checkpoint (see the module docstring), checked to hold a
    ``config.json``; raises :class:`UserError` naming ``VIT1D_REFERENCE`` when it is absent."""
    value = os.environ.get(REFERENCE_ENV, "")
    if value:
        path = Path(value).expanduser()
        if not (path / "config.json").is_file():
            raise UserError(
                f"{REFERENCE_ENV}={value} holds no checkpoint (no config.json): point it at "
                "the checkpoints/reference folder of a clone of the repository, or unset it"
            )
        return path
    root = source_checkout(package)
    if root is not None:
        path = root / REFERENCE_IN_CHECKOUT
        if (path / "config.json").is_file():
            return path
        where = f"and the checkout {root} has none at {REFERENCE_IN_CHECKOUT}"
        fix = "run `make reference` in the repository (trains and exports it; resumable), "
    else:
        where = "and an installed package carries none"
        fix = ""
    raise UserError(
        f"no reference checkpoint: {REFERENCE_ENV} is not set {where}. Set {REFERENCE_ENV} "
        f"to the checkpoints/reference folder of a clone of the repository, {fix}or pass a "
        "checkpoint folder written by `vit1d pretrain` (model.safetensors + config.json)"
    )
