"""The reference checkpoint: a longer-trained ViT-1D committed under ``checkpoints/reference/``.

``make reference`` trains the ``long`` preset (the recipe the study chose, 10x the default's
steps; resumable, so it can be trained in several sittings or on a GPU) and calls
:func:`export_reference`, which writes a small folder loadable with
:func:`vit1d.load_pretrained`:

* ``model.safetensors``: the backbone in float16 (the projection head, used only by the
  loss, is dropped: it would double the size); ``config.json`` as any checkpoint;
* ``training_log.csv`` (the run's ``log.csv``) and ``provenance.json``: steps, preset and
  configuration, hardware and timings, the corpus's seed and the SHA-256 of its
  ``corpus.json`` and pretraining manifest, the code revision, the weights' SHA-256;
* ``check.json``: the model's pooled embeddings of a few deterministic synthetic clips, so
  :func:`verify_reference` (and ``tests/test_reference.py``) can tell that the committed
  weights load and compute what they computed when exported;
* ``recipe-study/``: the summary results of the recipe study that chose the recipe, read by
  ``notebooks/03b_recipe.ipynb`` when a build does not run the study itself;
* ``results/``: the reference probed on every task of the default corpus with the default
  book's probe settings (:func:`probe_committed`), with the key of their inputs: a build whose
  inputs are the same merges them instead of probing the reference again
  (:mod:`vit1d.probing.committed`);
* ``foil/``: the equal-compute masked foil of the default preset, exported the same way
  (``make foil``) with its ``run.json`` (the compute it recorded) and its own ``results/``; a
  pipeline preset with ``foil: committed`` takes it instead of training one
  (:mod:`vit1d.book.foil`);
* ``random-init/results/``: the random-init baseline of the default preset's architecture,
  probed the same way (its weights are a function of the init seeds: nothing else is kept).

Each part is its own artefact: exporting one keeps the others (:data:`KEPT`).

Used by ``make reference``, the pipeline (the book probes the reference beside the model
trained in the build) and ``tests/test_reference.py``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from vit1d.audio.frontend import SAMPLE_RATE, LogMel
from vit1d.core.errors import UserError
from vit1d.core.provenance import file_sha256
from vit1d.features.sources import ModelSpec, architecture_config, checkpoint_step
from vit1d.models.checkpoint import atomic_write_text, load_pretrained, read_config
from vit1d.pretrain.config import config_from_dict
from vit1d.probing.committed import (
    RESULTS_DIR,
    keep_claim_items,
    reuse_key,
    weights_id,
    write_key,
)
from vit1d.probing.runner import baseline_sources, corpus_name, run_probes
from vit1d.probing.settings import probe_config, probe_settings
from vit1d.probing.tasks import GLOBAL_TASKS, LOCAL_TASKS, load_task
from vit1d.studies.variants import preset_variant, variant_of

REFERENCE_DIR = Path("checkpoints") / "reference"
#: The committed masked foil and the random-init baseline's committed probe results.
FOIL_DIR = REFERENCE_DIR / "foil"
RANDOM_INIT_DIR = REFERENCE_DIR / "random-init"
#: Sub-folders of an exported folder that are artefacts of their own: an export keeps them.
KEPT = ("recipe-study", "foil", "random-init")
#: An exported checkpoint's own files (its weights, logs and checks; kept folders aside).
MAX_BYTES = 15 * 1024 * 1024
#: The committed probe results (results/): per-item scores only at the claims' views.
MAX_RESULTS_BYTES = 6 * 1024 * 1024
CHECK_CLIPS = 4


def code_revision(root: str | Path) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool}`` of the git checkout at ``root``.

    A copy of the code without git metadata (an archive unpacked on a cluster or a GPU
    machine) records ``$VIT1D_REVISION`` instead, when set, with ``"dirty": None`` and
    ``"from": "VIT1D_REVISION"``: set it to the commit the copy was made from."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        given = os.environ.get("VIT1D_REVISION", "").strip()
        if given:
            return {"commit": given, "dirty": None, "from": "VIT1D_REVISION"}
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": dirty}


def check_clips(n: int = CHECK_CLIPS, seconds: float = 4.0) -> np.ndarray:
    """``(n, samples)`` deterministic harmonic test signals at 16 kHz (no corpus needed)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    clips = []
    for i in range(n):
        f0 = 110.0 * 2 ** (i * 5 / 12)
        beat = 0.5 + 0.5 * (np.sin(2 * np.pi * (1.5 + 0.5 * i) * t) > 0)
        y = sum(np.sin(2 * np.pi * h * f0 * t) / h**1.5 for h in range(1, 8)) * beat
        clips.append(0.3 * y / np.abs(y).max())
    return np.asarray(clips, dtype=np.float32)


def check_embeddings(model: Any) -> dict[str, list[list[float]]]:
    """The ``avg``-pooled hidden states (mean over class + sequence tokens) of
    :func:`check_clips` at the embeddings, the middle block and the last block, in float32."""
    with torch.inference_mode():
        mel = LogMel()(torch.from_numpy(check_clips()))
        out = model(mel[:, : model.config["max_frames"]], output_hidden_states=True)
    depth = len(out.hidden_states) - 1
    return {
        str(layer): out.hidden_states[layer].float().mean(dim=1).tolist()
        for layer in sorted({0, depth // 2, depth})
    }


def _provenance(
    source: Path, saved: dict, run: dict, steps: Any, corpus_root: Path, tmp: Path, root: Any
) -> dict[str, Any]:
    """``provenance.json`` of an export: the training config and run, the corpus's hashes, the
    code revision and the exported weights' hash (``tmp``: the folder being written)."""
    training = saved.get("training", {})
    corpus = json.loads((corpus_root / "corpus.json").read_text())
    manifest = corpus_root / "pretrain" / "manifest.csv"
    return {
        "steps": steps,
        "planned_steps": training.get("train", {}).get("steps"),
        "source": str(source),
        "training": training,
        "precision": saved.get("precision"),
        "objective": training.get("loss", {}).get("objective", "contrastive"),
        "recipe_variant": _variant_of(training),
        "long_preset_variant": preset_variant("long"),
        "run": {
            k: run.get(k)
            for k in (
                "hardware",
                "train_seconds",
                "views_per_s_median",
                "first_loss",
                "final_loss",
                "finished",
            )
        },
        "corpus": {
            "name": corpus.get("config", {}).get("name"),
            "seed": corpus.get("config", {}).get("seed"),
            "corpus_json_sha256": file_sha256(corpus_root / "corpus.json"),
            "pretrain_manifest_sha256": file_sha256(manifest) if manifest.is_file() else None,
        },
        "code": code_revision(root),
        "weights": "float16 backbone; projection head dropped",
        "weights_sha256": file_sha256(tmp / "model.safetensors"),
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def export_reference(
    run_dir: str | Path,
    corpus_root: str | Path,
    out_dir: str | Path = REFERENCE_DIR,
    study_dir: str | Path | None = None,
    root: str | Path = ".",
) -> Path:
    """Write the reference folder from a finished (or checkpointed) pretraining run."""
    run_dir, corpus_root, out_dir = Path(run_dir), Path(corpus_root), Path(out_dir)
    source = run_dir
    if not (run_dir / "model.safetensors").is_file():
        pointer = run_dir / "checkpoints" / "latest"
        if not pointer.is_file():
            raise UserError(f"{run_dir} holds no model and no checkpoint: train it first")
        source = run_dir / "checkpoints" / pointer.read_text().strip()
    model = load_pretrained(source, head=False)
    saved = read_config(source)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    if source != run_dir:  # a checkpoint of a run still in progress: checkpoints/step-N
        steps = int(source.name.split("-")[-1])
        run = {}  # run.json, if any, describes an earlier finished sitting
    else:
        steps = saved.get("step") or run.get("steps")
    fp16 = load_pretrained_from(tmp, model.config, {**saved, "step": steps})
    log = run_dir / "log.csv"
    if log.is_file():  # up to the exported step (a run in progress has logged further)
        lines = log.read_text().splitlines()
        kept = [lines[0]] + [ln for ln in lines[1:] if int(ln.split(",")[0]) <= int(steps)]
        atomic_write_text(tmp / "training_log.csv", "\n".join(kept) + "\n")
    provenance = _provenance(source, saved, run, steps, corpus_root, tmp, root)
    atomic_write_text(tmp / "provenance.json", json.dumps(provenance, indent=2))
    atomic_write_text(tmp / "check.json", json.dumps(check_embeddings(fp16)))
    if source == run_dir and (run_dir / "run.json").is_file():  # the compute the run recorded
        shutil.copyfile(run_dir / "run.json", tmp / "run.json")
    study = study_dir is not None and (Path(study_dir) / "results" / "probes_summary.csv").is_file()
    if study:
        copy_study(study_dir, tmp / "recipe-study")
    for part in KEPT:  # the other artefacts committed before
        if (out_dir / part).is_dir() and not (study and part == "recipe-study"):
            shutil.copytree(out_dir / part, tmp / part)
    # probe results of other weights do not apply (their key names the weights): none are kept
    size = own_bytes(tmp)
    if size > MAX_BYTES:
        shutil.rmtree(tmp)
        raise UserError(f"the reference folder would take {size / 2**20:.1f} MB (limit 15 MB)")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def own_bytes(folder: str | Path) -> int:
    """Bytes of an exported folder's own files: its kept sub-folders (:data:`KEPT`) and its
    probe results aside."""
    folder = Path(folder)
    skip = {*KEPT, RESULTS_DIR}
    return sum(
        p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).parts[0] not in skip
    )


def copy_study(study_dir: str | Path, dest: str | Path) -> Path:
    """Copy what the recipe chapter reads of a study (``study.json``, the probe summary and
    the probe runs' provenance) to ``dest``, e.g. ``checkpoints/reference/recipe-study``."""
    study_dir, dest = Path(study_dir), Path(dest)
    (dest / "results").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(study_dir / "study.json", dest / "study.json")
    for name in ("probes_summary.csv", "probes_runs.json"):
        src = study_dir / "results" / name
        if src.is_file():
            shutil.copyfile(src, dest / "results" / name)
    return dest


def _variant_of(training: dict[str, Any]) -> str | None:
    return variant_of(config_from_dict(training)) if training else None


def load_pretrained_from(folder: Path, model_config: dict[str, Any], saved: dict[str, Any]) -> Any:
    """Write ``config.json`` beside exported weights and load them back (float16 -> float32)."""
    config = {"model": {**model_config, "head": "none"}}
    for key in ("training", "precision", "vit1d_version", "step"):
        if key in saved:
            config[key] = saved[key]
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2, sort_keys=True))
    return load_pretrained(folder)


#: Largest deviation of a recomputed check embedding, relative to the RMS of its layer's
#: values in ``check.json``. float32 sums through 12 blocks land differently on other CPU
#: kernels (AMX, AVX512, AVX2 order their accumulations differently): about 2e-4 of the
#: RMS seen at layers 6 and 12 between the exporting machine and an Intel Xeon with AMX;
#: ten times that still flags any change of the computation the embeddings see.
CHECK_RTOL = 2e-3


def check_deviation(expected: dict[str, Any], got: dict[str, Any]) -> dict[str, float]:
    """Per layer, ``max |got - expected| / rms(expected)``: the deviation on the scale of
    that layer's values (layer 0 is about 0.4, layers 6 and 12 about 10)."""
    out = {}
    for k in expected:
        e, g = np.asarray(expected[k], dtype=float), np.asarray(got[k], dtype=float)
        if e.shape != g.shape:
            raise UserError(f"check.json layer {k} has shape {e.shape}, the model gives {g.shape}")
        scale = max(float(np.sqrt(np.mean(e**2))), 1e-12)
        out[k] = float(np.max(np.abs(g - e))) / scale
    return out


def verify_reference(folder: str | Path = REFERENCE_DIR, rtol: float = CHECK_RTOL) -> float:
    """Check the reference in two ways and return the largest relative deviation.

    * **Weights:** ``model.safetensors`` must hash to ``provenance.json``'s
      ``weights_sha256`` (any changed weight, however small, fails; the embeddings alone
      cannot see most single weights: a change of 1e-3 in a late block moves them by 1e-7).
    * **Computation:** the recomputed :func:`check_embeddings` must lie within ``rtol`` of
      ``check.json`` per layer, relative to the layer's scale (:func:`check_deviation`), so a
      change of the code the reference runs through fails, but float32 rounding on another
      CPU does not.

    Raises :class:`UserError` naming what differs and the fix.
    """
    folder = Path(folder)
    prov_path = folder / "provenance.json"
    if prov_path.is_file():
        recorded = json.loads(prov_path.read_text()).get("weights_sha256")
        actual = file_sha256(folder / "model.safetensors")
        if recorded and recorded != actual:
            raise UserError(
                f"the weights in {folder}/model.safetensors (SHA-256 {actual[:12]}) are not "
                f"the exported ones ({recorded[:12]} in provenance.json): restore them from git "
                "or re-export with `make reference`"
            )
    expected = json.loads((folder / "check.json").read_text())
    got = check_embeddings(load_pretrained(folder))
    if set(got) != set(expected):
        raise UserError(f"{folder}/check.json has layers {sorted(expected)}, model {sorted(got)}")
    deviation = check_deviation(expected, got)
    layer, worst = max(deviation.items(), key=lambda kv: kv[1])
    if worst > rtol:
        raise UserError(
            f"the reference in {folder} computes layer-{layer} embeddings {worst:.2e} (relative "
            f"to the layer's RMS) away from check.json, tolerance {rtol:.0e}: the weights or "
            "the code changed since export; re-export with `make reference`"
        )
    return worst


def committed_sources(
    folder: str | Path = REFERENCE_DIR, preset: str = "default"
) -> dict[str, tuple[list[ModelSpec], Path]]:
    """The models whose probe results are committed in the reference ``folder``, by their
    ``model`` name: the reference and its ``foil/`` (when exported) and ``preset``'s
    random-init baseline (its architecture and init seeds; ``random-init/``), each with the
    folder its ``results/`` go to."""
    folder = Path(folder)
    out: dict[str, tuple[list[ModelSpec], Path]] = {}
    for name, where in (("reference", folder), ("masked", folder / FOIL_DIR.name)):
        if (where / "model.safetensors").is_file():
            spec = ModelSpec("checkpoint", str(where), label=name, step=checkpoint_step(where))
            out[name] = ([spec], where)
    seeds = probe_settings(preset).random_init_seeds
    group = baseline_sources(architecture_config(preset), seeds, False)[0]
    out["random-init"] = (group, folder / RANDOM_INIT_DIR.name)
    return out


def probe_committed(
    group: list[ModelSpec],
    folder: str | Path,
    corpus_root: str | Path = "data/default",
    preset: str = "default",
    progress: bool = True,
    say: Any = print,
) -> Path:
    """Probe the source ``group`` on every task of the corpus at ``corpus_root`` with
    ``preset``'s probe settings, as the book's probing chapters would, and write the results
    with the key of their inputs to ``<folder>/results`` (:mod:`vit1d.probing.committed`; the
    folder is replaced only when the run is complete). Returns that folder."""
    folder, corpus_root = Path(folder), Path(corpus_root)
    settings, cfg = probe_settings(preset), probe_config(preset)
    tasks = [
        load_task(corpus_root / name / "manifest.csv", name)
        for name in GLOBAL_TASKS + LOCAL_TASKS
        if (corpus_root / name / "manifest.csv").is_file()
    ]
    if not tasks:
        raise UserError(f"no task manifests under {corpus_root}: build the corpus first")
    out = folder / RESULTS_DIR
    tmp = folder / f".{RESULTS_DIR}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    run_probes(tasks, [group], tmp, seeds=settings.seeds, config=cfg, progress=progress, say=say)
    keep_claim_items(tmp, group[0].name)
    key = reuse_key(weights_id(group), tasks, corpus_name(corpus_root), settings.seeds, cfg)
    write_key(tmp, key)
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    if size > MAX_RESULTS_BYTES:
        shutil.rmtree(tmp)
        raise UserError(
            f"the {group[0].name} model's probe results would take {size / 2**20:.1f} MB "
            f"(limit {MAX_RESULTS_BYTES / 2**20:.0f} MB)"
        )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
