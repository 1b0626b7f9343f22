"""Training configuration: presets the user can read and copy, strictly validated.

A configuration is a YAML file with the sections ``model``, ``data``, ``optim``, ``loss``,
``augment`` and ``train`` (see ``src/vit1d/presets/default.yaml``, every key commented).
:func:`load_config` starts from the built-in defaults, applies a preset (a name such as
``smoke`` or a path to a YAML file), then ``section.key=value`` overrides. An unknown key or a value of the wrong
type raises :class:`vit1d.core.errors.UserError` naming the key, the file and how to write the value.
For a text key, an empty value (``--set data.group_by=``) and a YAML null (``group_by:`` with
nothing after it) are the empty string, which text keys use for "none".
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vit1d.core.errors import UserError
from vit1d.core.paths import PRESET_DIR
from vit1d.core.settings import OVERRIDES, merge_settings, read_yaml
from vit1d.corpus.config import REDRAWS
from vit1d.models.model import ModelConfig

PRESETS = ("smoke", "default", "long", "paper")


@dataclass
class DataConfig:
    """Where views come from: two crops of ``max_frames`` frames of the same track."""

    max_distance_s: float = 4.0  # largest gap between the two crops' starts, in seconds
    cache_dir: str = ""  # log-mel cache; empty: ``<manifest folder>/.vit1d_cache``
    split: str = "train"  # manifest rows used when the manifest has a ``split`` column; "" = all
    # hard negatives: fill each batch from as few groups of this manifest column as possible
    # (e.g. "instrumentation"), so that the negatives share it with their anchor; "" = random
    group_by: str = ""
    # a file of the pool that cannot be decoded is left out and listed in the run folder's
    # skipped_files.csv (false: it stops the run before training, naming the file)
    skip_unreadable: bool = True
    decode_workers: int = 0  # processes decoding the pool into the log-mel cache; 0 = this one
    # twin renders (the corpus's pretrain/twins.csv, vit1d.corpus.twins): with this
    # probability the second view of a pair is cropped from a twin of the track, the same
    # excerpt played again; 0 = two crops of one render (the paper's recipe)
    twin_prob: float = 0.0
    twin: str = "both"  # which twins: the redraw they made (orchestration, production, both)
    # largest gap between a view and its twin view, in seconds of the same score time
    twin_max_distance_s: float = 0.0


@dataclass
class AugmentConfig:
    """Content-preserving view augmentations on the log-mel crops (:mod:`vit1d.pretrain.augment`);
    each view gets its own draw. 0 switches an augmentation off."""

    gain_db: float = 0.0  # uniform level offset in [-gain_db, gain_db]
    eq_db: float = 0.0  # random smooth EQ curve over the mel bands, peak |gain| <= eq_db
    noise_snr_db: float = 0.0  # add noise this many dB (+-5) below the view's mean level
    noise_prob: float = 0.5  # fraction of views that get noise when noise_snr_db > 0
    reverb_s: float = 0.0  # add a late-reverb tail of RT60 drawn in [0, reverb_s] seconds
    reverb_wet: float = 0.5  # its energy relative to the dry sound, drawn in [0, reverb_wet]


@dataclass
class OptimConfig:
    """AdamW with linear warm-up, cosine decay and a cosine weight-decay schedule."""

    lr: float = 5e-4
    min_lr: float = 1.5e-6
    warmup_steps: int = 50
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 0.04
    weight_decay_end: float = 0.01
    grad_clip: float = 1.0


@dataclass
class LossConfig:
    """``objective``: contrastive (the paper: NT-Xent on the class token) or masked (the
    foil: BEST-RQ-style prediction of quantised masked frames, :mod:`vit1d.pretrain.masked`)."""

    objective: str = "contrastive"
    temperature: float = 0.1
    mask_ratio: float = 0.4  # masked: fraction of frames hidden per view
    mask_span: int = 5  # masked: frames per masked span (160 ms)
    codebook_size: int = 1024  # masked: random-projection quantiser codes
    code_dim: int = 16
    # contrastive with data.twin_prob > 0: the twin view is a third view with its own
    # projection head and NT-Xent term, and the second view stays a crop of the same render
    # (the first head): two heads, one invariant to what the twins redraw, one not (LooC,
    # Xiao et al. 2021), so the backbone need not forget the timbre to match the twins
    twin_head: bool = False


@dataclass
class TrainConfig:
    """Loop settings. ``precision``: auto | fp32 | bf16 | fp16 (fp16: CUDA only)."""

    batch_size: int = 32  # positive pairs per step (2 x batch_size views)
    steps: int = 1000
    checkpoint_every: int = 100
    # model-only snapshots kept for emergence curves, at these fractions of ``steps``
    snapshot_fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    precision: str = "auto"
    compile: bool = False
    # thread: a worker builds the next batch while a step runs; inline: the loop builds it;
    # auto: thread on accelerators, inline on CPUs (where the thread would take a core)
    prefetch: str = "auto"  # auto | thread | inline
    num_threads: int = 0  # CPU threads; 0 = all cores
    progress: bool = True


@dataclass
class Config:
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def preset_path(preset: str | Path) -> Path:
    """Path of a built-in preset name, or the given YAML path."""
    path = Path(preset)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        return path
    if str(preset) not in PRESETS:
        raise UserError(
            f"unknown preset {preset!r}: use one of {', '.join(PRESETS)} or a path to a .yaml file"
        )
    return PRESET_DIR / f"{preset}.yaml"


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=3e-4", "train.steps=10"]`` -> nested dict, values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        # an empty value is the empty string (``data.group_by=`` turns hard negatives off),
        # not YAML's null
        node[parts[-1]] = "" if not raw.strip() else yaml.safe_load(raw)
    return out


def load_config(
    preset: str | Path | dict[str, Any] | Config | None = "default",
    overrides: dict[str, Any] | list[str] | None = None,
) -> Config:
    """Defaults, then a preset (name, YAML path, dict or Config), then overrides."""
    if isinstance(preset, Config):
        cfg = copy.deepcopy(preset)
    else:
        cfg = Config()
        if isinstance(preset, dict):
            merge_settings(cfg, preset, "", "the given config")
        elif preset is not None:
            path = preset_path(preset)
            merge_settings(cfg, read_yaml(path), "", str(path))
    if overrides:
        if isinstance(overrides, list):
            overrides = parse_overrides(overrides)
        merge_settings(cfg, overrides, "", OVERRIDES)
    validate(cfg)
    return cfg


def _heads_fix(dim: int, heads: int) -> str:
    """How to make ``dim`` divisible by ``heads``: the nearest divisors and multiples."""
    divisors = [h for h in range(1, min(dim, 64) + 1) if dim % h == 0]
    near = sorted(sorted(divisors, key=lambda h: abs(h - heads))[:3])
    multiples = [d for d in ((dim // heads) * heads, (dim // heads + 1) * heads) if d > 0]
    return (
        f"set model.heads to a divisor of {dim} (e.g. {', '.join(map(str, near))}) "
        f"or model.dim to a multiple of {heads} (e.g. {', '.join(map(str, multiples))})"
    )


def validate(cfg: Config) -> None:
    """Range checks that types alone cannot express; each message gives the value and the fix."""
    m, t = cfg.model, cfg.train
    sizes = {"n_mels": m.n_mels, "dim": m.dim, "depth": m.depth, "heads": m.heads}
    sizes["max_frames"] = m.max_frames
    for key, value in sizes.items():
        if value < 1:
            raise UserError(
                f"invalid config: model.{key} is {value}, a size must be at least 1; "
                "fix it in the preset or the --set override"
            )
    if m.dim % m.heads:
        # each head attends with dim / heads channels, so the split must be exact
        raise UserError(
            f"invalid config: model.dim ({m.dim}) must be divisible by model.heads "
            f"({m.heads}); {_heads_fix(m.dim, m.heads)}"
        )
    checks = [
        (m.head in ("none", "linear", "mlp"), "model.head must be none, linear or mlp"),
        (t.batch_size >= 1, f"train.batch_size is {t.batch_size}, it must be at least 1"),
        (t.steps >= 1, f"train.steps is {t.steps}, it must be at least 1"),
        (
            t.checkpoint_every >= 1,
            f"train.checkpoint_every is {t.checkpoint_every}, it must be at least 1",
        ),
        (
            t.precision in ("auto", "fp32", "bf16", "fp16"),
            "train.precision must be auto, fp32, bf16 or fp16",
        ),
        (
            t.prefetch in ("auto", "thread", "inline"),
            "train.prefetch must be auto, thread or inline",
        ),
        (cfg.loss.temperature > 0, "loss.temperature must be positive"),
        (
            cfg.loss.objective in ("contrastive", "masked"),
            "loss.objective must be contrastive or masked",
        ),
        (0 < cfg.loss.mask_ratio < 1, "loss.mask_ratio must lie in (0, 1)"),
        (
            cfg.loss.mask_span >= 1 and cfg.loss.codebook_size >= 2 and cfg.loss.code_dim >= 1,
            "loss.mask_span, loss.codebook_size and loss.code_dim must be positive",
        ),
        (cfg.optim.lr > 0, "optim.lr must be positive"),
        (len(cfg.optim.betas) == 2, "optim.betas must have two values"),
        (cfg.data.max_distance_s >= 0, "data.max_distance_s must be >= 0"),
        (cfg.data.decode_workers >= 0, "data.decode_workers must be >= 0"),
        (0 <= cfg.data.twin_prob <= 1, "data.twin_prob must lie in [0, 1]"),
        (cfg.data.twin in REDRAWS, f"data.twin must be one of {', '.join(REDRAWS)}"),
        (cfg.data.twin_max_distance_s >= 0, "data.twin_max_distance_s must be >= 0"),
        (
            not cfg.loss.twin_head
            or (cfg.data.twin_prob > 0 and cfg.loss.objective == "contrastive"),
            "loss.twin_head needs the contrastive objective and data.twin_prob > 0 (twin views "
            "for its head to see); set loss.twin_head=false or data.twin_prob=1",
        ),
        (
            min(cfg.augment.gain_db, cfg.augment.eq_db, cfg.augment.noise_snr_db) >= 0,
            "augment.gain_db, augment.eq_db and augment.noise_snr_db must be >= 0",
        ),
        (0 <= cfg.augment.noise_prob <= 1, "augment.noise_prob must lie in [0, 1]"),
        (
            cfg.augment.reverb_s >= 0 and cfg.augment.reverb_wet >= 0,
            "augment.reverb_s and augment.reverb_wet must be >= 0",
        ),
        (
            all(0 < f <= 1 for f in t.snapshot_fractions),
            "train.snapshot_fractions must lie in (0, 1]",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(
                f"invalid config: {message}; fix it in the preset or the --set override"
            )


def config_from_dict(data: dict[str, Any], source: str = "config.json") -> Config:
    """Rebuild a :class:`Config` from :meth:`Config.to_dict` output (e.g. a checkpoint)."""
    cfg = Config()
    merge_settings(cfg, data, "", source)
    return cfg


def model_config(cfg: Config) -> dict[str, Any]:
    """The backbone's arguments; the masked objective adds a mask token and makes the head a
    linear map to the codebook (the backbone itself is identical for both objectives)."""
    kwargs = dict(cfg.model.__dict__)
    if cfg.loss.objective == "masked":
        kwargs.update(mask_token=True, head="linear", head_dims=[cfg.loss.codebook_size])
    if cfg.loss.twin_head:
        kwargs.update(twin_head=True)
    return kwargs


def views_per_step(cfg: Config) -> int:
    """Crops one step embeds: two per track, three when the twins are a third view
    (``loss.twin_head``)."""
    return (3 if cfg.loss.twin_head else 2) * cfg.train.batch_size
