"""Where a build's masked foil comes from: trained in the build, or the committed one.

The foil (``notebooks/03_pretrain_masked.ipynb``) is the default preset's backbone trained
with the masked objective at the contrastive run's compute. It does not depend on the
contrastive model the build trains, so training it in every build is work done twice
(docs/design.md, "No work done twice"): 12.5 of the default book's minutes on a 2-core CPU.
``make foil`` trains it once and exports it to ``checkpoints/reference/foil``
(:func:`vit1d.studies.reference.export_reference`: float16 backbone, ``run.json``,
``training_log.csv``, ``provenance.json``) with its probe results. A pipeline preset with
``foil: committed`` takes that folder when :func:`choose_foil` finds it trained with the
build's settings on the build's pretraining pool, and :func:`place_foil` copies it into the
build's foil folder, so that every chapter after reads it as it reads a foil trained in the
build (the probing chapters then merge its committed probes: the weights match their key).
Any difference, and the build trains its own, as ``foil: train`` does.

Used by ``notebooks/03_pretrain_masked.ipynb``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vit1d.book.layout import move_aside
from vit1d.core.presets import pipeline_preset
from vit1d.core.provenance import file_sha256
from vit1d.pretrain.run_files import RESUMABLE_CHANGES

#: Training settings that do not change what is computed, only where and how fast (the
#: resumable ones) or in which precision the matrix products run (bf16 where the CPU has it):
#: a foil trained in bf16 stands for one that would be trained in float32 here.
RUN_TIME_SETTINGS = RESUMABLE_CHANGES | {"train.precision"}
#: What the build's foil folder receives: file in the committed folder -> name in the run.
FILES = {
    "model.safetensors": "model.safetensors",
    "config.json": "config.json",
    "run.json": "run.json",
    "training_log.csv": "log.csv",
    "provenance.json": "provenance.json",
}


@dataclass(frozen=True)
class FoilChoice:
    """``folder``: the committed foil to take (None: train one); ``reason``: why, in words."""

    folder: Path | None
    reason: str


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif f"{prefix}{k}" not in RUN_TIME_SETTINGS:
            out[f"{prefix}{k}"] = v
    return out


def training_differences(committed: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The settings (``section.key``) in which two training configs differ, run-time settings
    (:data:`RUN_TIME_SETTINGS`) aside; tuples and lists compare alike."""
    a, b = (_flat(json.loads(json.dumps(c))) for c in (committed, wanted))
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def choose_foil(preset: str, config: Any, manifest: str | Path, committed: Path) -> FoilChoice:
    """Whether the build of pipeline preset ``preset``, about to train the foil ``config``
    (a :class:`vit1d.pretrain.config.Config`) on the pretraining ``manifest``, takes the
    committed foil folder ``committed`` instead: only with ``foil: committed`` in the preset,
    a foil exported there, the same training settings and the same pretraining pool."""
    if pipeline_preset(preset).foil != "committed":
        return FoilChoice(None, f"the {preset} pipeline preset trains its foil (foil: train)")
    if not (committed / "model.safetensors").is_file():
        return FoilChoice(None, f"no committed foil at {committed} (`make foil` exports one)")
    missing = [f for f in FILES if not (committed / f).is_file()]
    if missing:
        return FoilChoice(None, f"the committed foil at {committed} lacks {', '.join(missing)}")
    prov = json.loads((committed / "provenance.json").read_text())
    differ = training_differences(prov.get("training", {}), config.to_dict())
    if differ:
        shown = ", ".join(differ[:4]) + (" ..." if len(differ) > 4 else "")
        return FoilChoice(None, f"the committed foil was trained with other settings ({shown})")
    recorded = prov.get("corpus", {}).get("pretrain_manifest_sha256")
    if recorded != file_sha256(manifest):
        return FoilChoice(None, "the committed foil was trained on another pretraining pool")
    where = prov.get("run", {}).get("hardware", {}).get("cpu", {}).get("model") or "unknown"
    return FoilChoice(
        committed,
        f"the committed foil ({committed}): trained with these settings on this pretraining "
        f"pool ({prov.get('steps')} steps, {prov.get('precision')}, on {where})",
    )


def place_foil(committed: Path, out_dir: str | Path) -> Path:
    """Copy the committed foil into the build's foil folder ``out_dir`` (:data:`FILES`) and
    return it. A folder already holding these weights is kept; one holding anything else is
    moved to ``<out_dir>.previous`` (replacing an older one), as a retrained run would be."""
    out_dir = Path(out_dir)
    weights = out_dir / "model.safetensors"
    if weights.is_file() and file_sha256(weights) == file_sha256(committed / "model.safetensors"):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()):
        move_aside(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for src, dest in FILES.items():
        shutil.copyfile(committed / src, tmp / dest)
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked above)
    tmp.rename(out_dir)
    return out_dir
