"""The recipe study's variants: each a set of switches relative to the paper's recipe, the
budget variants that spend the same compute differently, and the run labels of the study's
results (:mod:`vit1d.studies.recipes` runs them; its docstring describes every variant).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from vit1d.core.errors import UserError
from vit1d.pretrain.config import Config, load_config

#: The augmentation strengths of the ``augment`` variants.
AUGMENT = {"gain_db": 6.0, "eq_db": 12.0, "noise_snr_db": 25.0}
HARD = {"group_by": "instrumentation"}
#: Second views from twin renders of the same excerpt (orchestration and production redrawn),
#: at the same score time: the best of the pilot (``notebooks/03b_recipe.ipynb``).
TWINS = {"twin_prob": 1.0, "twin": "both", "twin_max_distance_s": 0.0}
#: The switches the study varies (``section.key``). A variant sets some of them; every other
#: one takes the paper's value, the :class:`vit1d.pretrain.config.Config` default, whatever the base
#: preset holds, so each variant differs from ``paper`` by exactly its own switches.
SWITCHES = (
    "data.group_by",
    "data.max_distance_s",
    "data.twin_prob",
    "data.twin",
    "data.twin_max_distance_s",
    "augment.gain_db",
    "augment.eq_db",
    "augment.noise_snr_db",
    "augment.noise_prob",
    "augment.reverb_s",
    "augment.reverb_wet",
    "loss.temperature",
    "loss.twin_head",
)
#: Variant name -> its switches, relative to the paper's recipe.
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {},
    "hard-negatives": {"data": HARD},
    "augment": {"augment": AUGMENT},
    "hard-negatives+augment": {"data": HARD, "augment": AUGMENT},
    "hard-negatives+augment+temp0.2": {
        "data": HARD,
        "augment": AUGMENT,
        "loss": {"temperature": 0.2},
    },
    "hard-negatives+augment+far-crops": {
        "data": {**HARD, "max_distance_s": 12.0},
        "augment": AUGMENT,
    },
    "hard-negatives+augment+lr1e-3": {"data": HARD, "augment": AUGMENT, "optim": {"lr": 1e-3}},
    "hard-negatives+augment+reverb": {"data": HARD, "augment": {**AUGMENT, "reverb_s": 2.0}},
    "collection-negatives+augment": {"data": {"group_by": "collection"}, "augment": AUGMENT},
    "twins": {"data": TWINS},
    "twins-within-4s": {"data": {**TWINS, "twin_max_distance_s": 4.0}},
    "twins-half": {"data": {**TWINS, "twin_prob": 0.5}},
    "production-twins+hard-negatives": {"data": {**TWINS, "twin": "production", **HARD}},
    "production-twins": {"data": {**TWINS, "twin": "production"}},
    "twins+twin-head": {"data": TWINS, "loss": {"twin_head": True}},
    "twins+hard-negatives": {"data": {**TWINS, **HARD}},
    "twins+augment": {"data": TWINS, "augment": AUGMENT},
}
#: The variants a default study screens (one seed each), a subset of :data:`VARIANTS`; the
#: others stay available with ``--variants``.
SCREENED = (
    "paper",
    "hard-negatives+augment",
    "twins",
    "twins-within-4s",
    "twins-half",
    "production-twins+hard-negatives",
    "twins+hard-negatives",
    "twins+augment",
    "production-twins",
    "twins+twin-head",
)
#: The recipe the budget variants start from (the one the default preset uses).
BUDGET_RECIPE = "paper"
#: Budget variant -> (config field, factor): that field of the base preset is scaled by the
#: factor and the steps by its inverse, at the same training compute.
BUDGETS: dict[str, tuple[str, float]] = {
    "batch-x0.5": ("train.batch_size", 0.5),
    "batch-x4": ("train.batch_size", 4.0),
    "depth-x0.5": ("model.depth", 0.5),
}


def run_label(variant: str, seed: int) -> str:
    """The ``model`` column of a study run's probe results: ``variant/seed-N``."""
    return f"{variant}/seed-{seed}"


def parse_label(label: str) -> tuple[str, int] | None:
    """``("variant", seed)`` from :func:`run_label`, or None for a baseline."""
    variant, sep, seed = label.rpartition("/seed-")
    return (variant, int(seed)) if sep and seed.isdigit() else None


def paper_recipe() -> dict[str, Any]:
    """Every switch of :data:`SWITCHES` at the paper's value (the config defaults), as nested
    overrides."""
    base, out = Config(), {}
    for name in SWITCHES:
        section, key = name.split(".")
        out.setdefault(section, {})[key] = getattr(getattr(base, section), key)
    return out


def _on_paper(switches: dict[str, Any]) -> dict[str, Any]:
    """A variant's switches over :func:`paper_recipe`."""
    out = paper_recipe()
    for section, values in copy.deepcopy(switches).items():
        out.setdefault(section, {}).update(values)
    return out


def variant_overrides(
    variant: str, seed: int, settings: Any, preset: str | Path = "default"
) -> dict[str, Any]:
    """The config overrides of one study run on top of ``preset``: a recipe variant
    (:data:`VARIANTS`) or a budget variant (:data:`BUDGETS`, which reads the preset's batch,
    depth and warm-up to scale them)."""
    if variant in BUDGETS:
        out = _on_paper(VARIANTS[BUDGET_RECIPE])
        field_name, factor = BUDGETS[variant]
        section, key = field_name.split(".")
        base = load_config(preset)
        current = getattr(getattr(base, section), key)
        value = max(1, round(current * factor))
        scale = current / value  # steps go the other way
        out.setdefault(section, {})[key] = value
        out.setdefault("optim", {})["warmup_steps"] = round(base.optim.warmup_steps * scale)
        steps = max(2, round(settings.steps * scale))
    elif variant in VARIANTS:
        out = _on_paper(VARIANTS[variant])
        steps = settings.steps
    else:
        known = ", ".join([*VARIANTS, *BUDGETS])
        raise UserError(f"unknown recipe variant {variant!r}: use one of {known}")
    out["seed"] = seed
    out.setdefault("train", {}).update(
        steps=steps, snapshot_fractions=list(settings.snapshot_fractions)
    )
    return out


def preset_variant(preset: str | Path) -> str | None:
    """Which study variant a preset's recipe switches match (None: none of them), so the book
    can check that the ``default`` preset follows the study's choice."""
    return variant_of(load_config(preset))


def variant_of(cfg: Any) -> str | None:
    """Which study variant a :class:`vit1d.pretrain.config.Config`'s recipe switches match: every one of
    :data:`SWITCHES` equal, and the learning rate where the variant sets it (presets tune it
    to their step count)."""

    def switches(c: Any) -> tuple:
        return tuple(getattr(getattr(c, n.split(".")[0]), n.split(".")[1]) for n in SWITCHES)

    mine = switches(cfg)
    # a variant that sets the learning rate first: it is the more specific match
    for name, overrides in sorted(VARIANTS.items(), key=lambda kv: "optim" not in kv[1]):
        want = load_config(Config(), _on_paper(overrides))
        if switches(want) == mine and ("optim" not in overrides or cfg.optim.lr == want.optim.lr):
            return name
    return None
