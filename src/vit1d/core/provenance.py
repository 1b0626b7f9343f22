"""Provenance helpers shared by every step that records where its results came from."""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from typing import Any

#: The libraries whose versions a results file records: what computes the numbers.
COMPUTE_PACKAGES = (
    "vit1d",
    "torch",
    "numpy",
    "scipy",
    "scikit-learn",
    "librosa",
    "mir_eval",
    "soundfile",
    "pandas",
)
#: The book's appendix adds what renders the corpus and builds the pages.
BOOK_PACKAGES = (
    *COMPUTE_PACKAGES,
    "music21",
    "tinysoundfont",
    "pretty_midi",
    "safetensors",
    "matplotlib",
    "seaborn",
    "ipywidgets",
    "papermill",
    "jupyter-book",
    "myst-nb",
    "sphinx",
)


def library_versions(packages: Sequence[str] = COMPUTE_PACKAGES) -> dict[str, str]:
    """``{"python": ..., package: version}`` from the installed distributions' metadata
    (nothing is imported); a package that is not installed reads ``"not installed"``. The one
    collector behind every provenance record and the book's reproducibility appendix."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


#: The first component of the projection heads' parameter names (``head.*``, ``twin_head.*``):
#: used only by the losses, read by no feature.
HEAD_PARAMETERS = ("head", "twin_head")


def is_head_parameter(name: str) -> bool:
    """Whether a parameter (``state_dict`` key) belongs to a projection head, not the backbone."""
    return name.split(".", 1)[0] in HEAD_PARAMETERS


def weights_fingerprint(model: Any) -> str:
    """The model's identity in every provenance record (features, HEAR embeddings, analyses):
    SHA-256 over the backbone's parameters and buffers, sorted by name, each as its name then
    its float32 bytes; the projection heads (``head.*``, ``twin_head.*``), which no feature reads,
    are left out.
    The same weights give the same fingerprint whatever file, dtype or device they came from.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if is_head_parameter(name):
            continue
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (weights, manifests, SoundFonts)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
