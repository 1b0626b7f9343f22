"""Corpus presets: readable YAML files, strictly validated.

A preset is ``smoke`` or ``default`` (``src/vit1d/presets/corpus_<name>.yaml``, every key
commented there) or a path to a YAML file of the same shape, for instance a copy of one of
them. Keys left out take the built-in defaults below; an unknown key, a wrong type or an
out-of-range value raises :class:`vit1d.core.errors.UserError` naming the file, the key and the
fix. :func:`preset_digest` fingerprints a validated preset, so a build can tell whether an
output folder holds a corpus made with other settings.

Used by :mod:`vit1d.cli.corpus` and :mod:`vit1d.corpus.build`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from vit1d.core.errors import UserError
from vit1d.core.paths import PRESET_DIR
from vit1d.corpus.scores import COLLECTIONS

PRESETS = ("smoke", "default")

# Leaf specs: (kind, default). Kinds: int, float, str, bool, range (two numbers, low <= high),
# prob (float in [0, 1]), strlist, optstr (str or null).
SCHEMA: dict[str, Any] = {
    "seed": ("int", 0),
    "workers": ("int", 2),
    "soundfont": ("optstr", None),
    "cache_dir": ("optstr", None),
    "audio_format": ("str", "flac"),
    "render_rate": ("int", 32000),
    "splits": {"valid": ("prob", 0.1), "test": ("prob", 0.2)},
    "collections": "collections",
    "pretrain": {
        "renders_per_work": ("int", 1),
        "clip_s": ("float", 24.0),
        "twins": ("strlist", []),
    },
    "music": {
        "renders_per_work": ("int", 1),
        "renders_per_polyphonic_work": ("int", 2),
        "clip_s": ("float", 15.0),
    },
    "notes": {
        "dynamics": ("strlist", ["pp", "p", "mf", "f", "ff"]),
        "pitch_step": ("int", 1),
        "clip_s": ("float", 2.5),
        "hold_s": ("range", [0.8, 1.8]),
        "splits": {"valid": ("prob", 0.1), "test": ("prob", 0.2)},
    },
    "render": {
        "tempo_bpm": ("range", [50.0, 200.0]),
        "min_note_s": ("float", 0.07),
        "transpose": ("range", [-5, 6]),
        "alt_program_prob": ("prob", 0.4),
        "keyboard_prob": ("prob", 0.2),
        "double_prob": ("prob", 0.3),
        "drums_prob": ("prob", 0.3),
        "humanize_ms": ("range", [0.0, 15.0]),
        "velocity_jitter": ("float", 0.08),
    },
    "effects": {
        "reverb_prob": ("prob", 0.7),
        "rt60": ("range", [0.2, 2.5]),
        "wet": ("range", [0.05, 0.45]),
        "eq_prob": ("prob", 0.5),
        "noise_prob": ("prob", 0.4),
        "snr_db": ("range", [20.0, 50.0]),
        "loudness_dbfs": ("float", -23.0),
    },
    "tasks": {
        "chords_min_voices": ("int", 3),
        "min_beats": ("int", 4),
    },
}

DEFAULT_COLLECTIONS = {"bach": {"works": "all"}}
#: What a twin render may redraw (``pretrain.twins``; :mod:`vit1d.corpus.twins`).
REDRAWS = ("orchestration", "production", "both")
DYNAMIC_NAMES = ("pp", "p", "mf", "f", "ff")


def preset_path(preset: str | Path) -> Path:
    """``smoke``/``default`` -> the packaged file; anything else is a path to a YAML file."""
    if str(preset) in PRESETS:
        return PRESET_DIR / f"corpus_{preset}.yaml"
    path = Path(preset).expanduser()
    if not path.is_file():
        raise UserError(
            f"corpus preset {str(preset)!r} is neither {' nor '.join(PRESETS)} nor a YAML "
            f"file that exists; copy {PRESET_DIR / 'corpus_default.yaml'} and pass its path"
        )
    return path


def load_preset(preset: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read, complete and validate a preset; ``overrides`` (top-level keys) win."""
    path = preset_path(preset)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a corpus preset must be a mapping of keys to values")
    raw.pop("name", None)
    for k, v in (overrides or {}).items():
        if v is not None:
            raw[k] = v
    cfg = _validate(raw, SCHEMA, "", path)
    cfg["name"] = str(preset) if str(preset) in PRESETS else path.stem
    return cfg


def _validate(raw: dict[str, Any], schema: dict[str, Any], prefix: str, path: Path) -> dict:
    out: dict[str, Any] = {}
    for k in raw:
        if k not in schema:
            full = prefix + str(k)
            raise UserError(
                f"{path}: unknown key {full!r}; valid keys here: "
                f"{', '.join(sorted(schema))} (check the spelling, or remove it)"
            )
    for k, spec in schema.items():
        full = prefix + k
        if spec == "collections":
            out[k] = _collections(raw.get(k, copy.deepcopy(DEFAULT_COLLECTIONS)), full, path)
        elif isinstance(spec, dict):
            sub = raw.get(k, {})
            if not isinstance(sub, dict):
                raise UserError(f"{path}: {full!r} must be a mapping of keys, got {sub!r}")
            out[k] = _validate(sub, spec, full + ".", path)
        else:
            kind, default = spec
            out[k] = _leaf(raw[k], kind, full, path) if k in raw else copy.deepcopy(default)
    return out


def _leaf(value: Any, kind: str, key: str, path: Path) -> Any:
    def bad(expect: str) -> UserError:
        return UserError(f"{path}: {key!r} must be {expect}, got {value!r}; fix that value")

    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if kind in ("float", "prob"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        if kind == "prob" and not 0.0 <= float(value) <= 1.0:
            raise bad("a probability between 0 and 1")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if kind == "optstr":
        if value is not None and not isinstance(value, str):
            raise bad("a string or null")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "range":
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or value[0] > value[1]
        ):
            raise bad("a list of two numbers [low, high] with low <= high")
        return list(value)
    if kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return list(value)
    raise AssertionError(kind)


def _collections(value: Any, key: str, path: Path) -> dict[str, dict[str, Any]]:

    if not isinstance(value, dict) or not value:
        raise UserError(
            f"{path}: {key!r} must map music21 corpus folders to {{works: N or all}}, "
            f"e.g. 'bach: {{works: all}}'"
        )
    out = {}
    for name, spec in value.items():
        if name not in COLLECTIONS:
            raise UserError(
                f"{path}: unknown collection {key}.{name}; use one of: "
                f"{', '.join(sorted(COLLECTIONS))}"
            )
        spec = {"works": "all"} if spec is None else spec
        if not isinstance(spec, dict):
            raise UserError(f"{path}: {key}.{name} must be a mapping like {{works: all}}")
        for k in spec:
            if k != "works":
                raise UserError(f"{path}: unknown key {key}.{name}.{k}; the only key is works")
        works = spec.get("works", "all")
        if works != "all" and (isinstance(works, bool) or not isinstance(works, int) or works < 1):
            raise UserError(f"{path}: {key}.{name}.works must be 'all' or a positive integer")
        out[name] = {"works": works}
    return out


def check_values(cfg: dict[str, Any], source: str = "preset") -> None:
    """Checks across keys that a type check cannot make."""
    if cfg["audio_format"] not in ("flac", "wav"):
        raise UserError(f"{source}: audio_format must be 'flac' or 'wav'")
    if cfg["workers"] < 1:
        raise UserError(f"{source}: workers must be at least 1")
    if cfg["splits"]["valid"] + cfg["splits"]["test"] >= 1.0:
        raise UserError(f"{source}: splits.valid + splits.test must leave room for train (< 1)")
    for name in cfg["notes"]["dynamics"]:
        if name not in DYNAMIC_NAMES:
            raise UserError(
                f"{source}: notes.dynamics has {name!r}; use some of {', '.join(DYNAMIC_NAMES)}"
            )
    if cfg["render_rate"] < 16000:
        raise UserError(f"{source}: render_rate must be at least 16000 (the output rate)")
    for name in cfg["pretrain"]["twins"]:
        if name not in REDRAWS:
            raise UserError(
                f"{source}: pretrain.twins has {name!r}; each twin redraws one of "
                f"{', '.join(REDRAWS)}"
            )
    for k in ("pretrain", "music"):
        if cfg[k]["clip_s"] <= 1.0 or cfg[k]["renders_per_work"] < 0:
            raise UserError(f"{source}: {k}.clip_s must be > 1 s and renders_per_work >= 0")


def preset_digest(cfg: dict[str, Any]) -> str:
    """A fingerprint of everything that changes the corpus (not workers, not cache)."""
    keep = {k: v for k, v in cfg.items() if k not in ("workers", "cache_dir", "name")}
    blob = json.dumps(keep, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]
