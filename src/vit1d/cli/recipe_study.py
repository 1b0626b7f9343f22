"""``vit1d recipe-study``: pretrain and probe the recipe variants (:mod:`vit1d.studies.recipes`)."""

from __future__ import annotations

from typing import Any

from vit1d.core.errors import UserError
from vit1d.core.presets import pipeline_names
from vit1d.studies.ranking import budget_table, study_choice
from vit1d.studies.recipes import run_study, seed_study, study_settings
from vit1d.studies.variants import BUDGETS, VARIANTS


def register(subparsers: Any) -> None:
    """Add ``vit1d recipe-study`` to the command line."""
    p = subparsers.add_parser(
        "recipe-study",
        help="pretrain and probe the recipe variants (notebooks/03b_recipe)",
        description="Pretrain every recipe variant with each seed, probe snapshots and final "
        "models on a few fast tasks beside the baselines, and print the ranking. Resumable.",
    )
    p.add_argument("--data", required=True, help="corpus root (with pretrain/ and task folders)")
    p.add_argument("--out", required=True, help="study folder (runs, results, study.json)")
    p.add_argument(
        "--preset",
        default="default",
        choices=pipeline_names(),
        help="pipeline preset: the base training preset and the study size (presets/pipeline.yaml)",
    )
    p.add_argument("--variants", default="", help="comma-separated subset of the variants")
    p.add_argument(
        "--budgets", default="", help="comma-separated subset of the budget variants, or none"
    )
    p.add_argument("--steps", type=int, default=0, help="steps per run (0: the preset's)")
    p.add_argument("--seeds", default="", help="comma-separated screening seeds")
    p.add_argument("--final-seeds", default="", help="comma-separated seeds of the finals, or none")
    p.add_argument(
        "--from",
        dest="source",
        default="",
        help="start from this study's results (e.g. checkpoints/reference/recipe-study): its "
        "runs are kept, only the missing ones (the finals) are trained",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cli)


def _cli(args: Any) -> int:
    settings = study_settings(args.preset)
    if args.variants:
        settings.variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
        for v in settings.variants:
            if v not in VARIANTS:
                raise UserError(f"unknown variant {v!r}: use some of {', '.join(VARIANTS)}")
    if args.budgets:
        names = [v.strip() for v in args.budgets.split(",") if v.strip()]
        settings.budgets = () if names == ["none"] else tuple(names)
        for v in settings.budgets:
            if v not in BUDGETS:
                raise UserError(f"unknown budget {v!r}: use some of {', '.join(BUDGETS)} or none")
    if args.steps:
        settings.steps = args.steps
    if args.seeds:
        settings.seeds = tuple(int(x) for x in args.seeds.split(","))
    if args.final_seeds:
        names = args.final_seeds.split(",")
        settings.final_seeds = () if names == ["none"] else tuple(int(x) for x in names)
    if args.source:
        seed_study(args.out, args.source)
    out = run_study(args.data, args.out, args.preset, settings, progress=not args.no_progress)
    name, ranking = study_choice(out)
    print(ranking.round(3).to_string())
    print(f"best recipe: {name}")
    budgets = budget_table(out)
    if len(budgets):
        print(budgets.round(3).to_string())
    return 0
