"""The recipe study: labels, the ranking rule, and a miniature resumable study."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from vit1d.audio.frontend import SAMPLE_RATE
from vit1d.core.errors import UserError
from vit1d.pretrain.augment import is_active
from vit1d.pretrain.config import Config, load_config
from vit1d.studies import ranking, recipes, variants


def test_labels_round_trip_and_baselines_have_none() -> None:
    assert variants.parse_label(variants.run_label("hard-negatives+augment", 3)) == (
        "hard-negatives+augment",
        3,
    )
    assert variants.parse_label("random-init") is None
    assert variants.parse_label("logmel") is None


def test_variant_overrides_are_valid_configs() -> None:
    settings = recipes.StudySettings(steps=7, snapshot_fractions=(0.5, 1.0))
    for name in variants.VARIANTS:
        cfg = load_config("default", variants.variant_overrides(name, 2, settings))
        assert cfg.seed == 2 and cfg.train.steps == 7
        assert cfg.train.snapshot_fractions == [0.5, 1.0]
    both = load_config("default", variants.variant_overrides("hard-negatives+augment", 0, settings))
    assert both.data.group_by == "instrumentation" and both.augment.eq_db > 0
    with pytest.raises(UserError, match="unknown recipe variant"):
        variants.variant_overrides("pitch-shift", 0, settings)


def _switch_values(cfg: Config) -> dict[str, object]:
    return {n: getattr(getattr(cfg, n.split(".")[0]), n.split(".")[1]) for n in variants.SWITCHES}


def test_variants_are_defined_relative_to_the_papers_recipe() -> None:
    """On the default preset (which holds a chosen recipe), ``paper`` is the authors' recipe
    and every other variant differs from it by exactly its own switches."""
    settings = recipes.StudySettings(steps=7)
    paper = load_config("default", variants.variant_overrides("paper", 0, settings))
    assert paper.data.group_by == "" and paper.data.twin_prob == 0.0
    assert not is_active(paper.augment) and paper.loss.temperature == 0.1
    base = _switch_values(paper)
    for name, switches in variants.VARIANTS.items():
        cfg = load_config("default", variants.variant_overrides(name, 0, settings))
        mine = _switch_values(cfg)
        changed = {k for k in base if mine[k] != base[k]}
        declared = {
            f"{section}.{key}"
            for section, values in switches.items()
            for key, value in values.items()
            if section != "optim" and base.get(f"{section}.{key}") != value
        }
        assert changed == declared, name
        for section, values in switches.items():
            for key, value in values.items():
                assert getattr(getattr(cfg, section), key) == value, (name, section, key)
    twins = load_config("default", variants.variant_overrides("twins", 0, settings))
    assert twins.data.twin_prob == 1.0 and twins.data.group_by == ""
    assert twins.data.twin_max_distance_s == 0.0 and not is_active(twins.augment)


def test_budget_variants_spend_the_same_compute_differently() -> None:
    settings = recipes.StudySettings(steps=300)
    base = load_config("default")
    work = base.train.batch_size * base.model.depth * settings.steps
    seen = set()
    for name in variants.BUDGETS:
        cfg = load_config("default", variants.variant_overrides(name, 1, settings, "default"))
        assert cfg.seed == 1
        assert cfg.train.batch_size * cfg.model.depth * cfg.train.steps == work
        scale = cfg.train.steps / settings.steps
        assert cfg.optim.warmup_steps == round(base.optim.warmup_steps * scale)
        # on top of the recipe the default preset uses
        assert variants.variant_of(cfg) == variants.BUDGET_RECIPE
        seen.add((cfg.train.batch_size, cfg.model.depth))
    assert seen == {(16, 12), (128, 12), (32, 6)}
    assert variants.preset_variant("default") == variants.BUDGET_RECIPE  # budgets of our recipe


def test_variant_of_tells_the_crop_distance_and_learning_rate_apart() -> None:
    settings = recipes.StudySettings(steps=7)
    for name in variants.VARIANTS:  # on the recipe-neutral defaults, as the study's variants
        cfg = load_config(Config(), variants.variant_overrides(name, 0, settings))
        assert variants.variant_of(cfg) == name


def _table(
    values: dict[str, dict[str, list[float]]], baselines: dict[str, float] | None = None
) -> pd.DataFrame:
    baselines = baselines if baselines is not None else {"key": 9.0}
    rows = []
    for variant, tasks in values.items():
        for task, per_seed in tasks.items():
            metric = ranking.STUDY_METRICS[task]
            for seed, v in enumerate(per_seed):
                for step, scale in ((5, 0.5), (10, 1.0)):
                    rows.append(
                        dict(
                            variant=variant,
                            seed=seed,
                            step=step,
                            task=task,
                            metric=metric,
                            layer=3,
                            value=v * scale,
                            ci_low=v * scale - 0.01,
                            ci_high=v * scale + 0.01,
                        )
                    )
                # a non-primary metric must not count
                rows.append(
                    dict(
                        variant=variant,
                        seed=seed,
                        step=10,
                        task=task,
                        metric="other",
                        layer=3,
                        value=100.0 if variant == "paper" else 0,
                    )
                )
    for base in ("random-init", "logmel"):
        for task, value in baselines.items():
            rows.append(
                dict(
                    variant=base,
                    seed=-1,
                    step=0,
                    task=task,
                    metric=ranking.STUDY_METRICS[task],
                    layer=0,
                    value=value,
                    ci_low=value - 0.01,
                    ci_high=value + 0.01,
                )
            )
    return pd.DataFrame(rows)


def test_choose_recipe_ranks_by_mean_rank_at_the_final_step() -> None:
    table = _table(
        {
            "paper": {"key": [0.5, 0.5], "tagging": [0.4, 0.4]},
            "augment": {"key": [0.6, 0.7], "tagging": [0.41, 0.41]},
            "hard-negatives": {"key": [0.55, 0.55], "tagging": [0.3, 0.3]},
        }
    )
    best, ranked = ranking.choose_recipe(table)
    assert best == "augment"
    assert ranked.loc["augment", "key"] == pytest.approx(0.65)
    assert ranked.loc["augment", "mean_rank"] == 1.0
    assert "random-init" not in ranked.index  # baselines are not candidates
    # a tie goes to the variant listed first in VARIANTS
    tie = _table({"augment": {"key": [0.5]}, "paper": {"key": [0.5]}})
    assert ranking.choose_recipe(tie)[0] == "paper"


def test_finalists_are_the_paper_and_the_best_screened_variants() -> None:
    table = _table(
        {
            "paper": {"key": [0.5]},
            "augment": {"key": [0.6]},
            "twins": {"key": [0.8]},
            "hard-negatives": {"key": [0.55]},
        }
    )
    settings = recipes.StudySettings(
        variants=("paper", "augment", "twins", "hard-negatives"), seeds=(0,), finalists=2
    )
    assert ranking.finalists(table, settings) == ["paper", "twins", "augment"]
    # only the screened seeds and variants count: a final seed of another variant does not
    extra = table[table.variant == "hard-negatives"].assign(seed=1, value=9.0)
    both = pd.concat([table, extra])
    assert ranking.finalists(both, settings) == ["paper", "twins", "augment"]


def test_the_best_layer_is_chosen_on_valid_and_reported_on_test(tmp_path: Path) -> None:
    rows = []
    for split, values in (("valid", [0.2, 0.9, 0.1]), ("test", [0.8, 0.3, 0.1])):
        for layer, v in enumerate(values):
            rows.append(
                dict(
                    model="twins/seed-0", checkpoint="-", step=10, corpus="c", task="key",
                    layer=layer, pooling="avg", split=split, metric="weighted", mean=v,
                    ci_low=v - 0.05, ci_high=v + 0.05, n=100,
                )
            )  # fmt: skip
    (tmp_path / "results").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "results" / "probes_summary.csv", index=False)
    row = ranking.study_table(tmp_path).iloc[0]
    assert row["layer"] == 1 and row["value"] == pytest.approx(0.3)  # valid's choice, test's score


def test_beating_both_baselines_comes_before_the_mean_rank() -> None:
    # "augment" is better on average, but only "paper" clears the baselines (0.52 +- 0.01)
    # on a task with non-overlapping intervals
    table = _table(
        {
            "paper": {"key": [0.60, 0.60], "tagging": [0.20, 0.20], "instrument": [0.1, 0.1]},
            "augment": {"key": [0.53, 0.53], "tagging": [0.50, 0.50], "instrument": [0.2, 0.2]},
        },
        baselines={"key": 0.52, "tagging": 0.52},
    )
    # the prior-only rows are shown beside the runs, not a bar to clear
    chance = dict(variant="chance", seed=-1, step=0, task="key", metric="weighted", layer=0)
    table = pd.concat([table, pd.DataFrame([{**chance, "value": 0.9, "ci_high": 0.95}])])
    wins = ranking.beats_baselines(table).set_index(["variant", "seed"])["wins"]
    assert wins[("paper", 0)] == 1 and wins[("augment", 0)] == 0  # 0.53-0.01 < 0.52+0.01
    best, ranked = ranking.choose_recipe(table)
    assert ranked.loc["augment", "mean_rank"] < ranked.loc["paper", "mean_rank"]
    assert best == "paper" and ranked.loc["paper", "wins"] == 1.0


def test_variant_spread_compares_variants_with_their_seeds() -> None:
    table = _table(
        {
            "paper": {"key": [0.50, 0.52], "tagging": [0.30, 0.40]},
            "augment": {"key": [0.70, 0.71], "tagging": [0.36, 0.34]},
        }
    )
    spread = ranking.variant_spread(table)
    assert spread.loc["key", "best"] == "augment"
    assert spread.loc["key", "between"] == pytest.approx(0.705 - 0.51)
    assert spread.loc["key", "within"] == pytest.approx(0.02)
    assert spread.loc["tagging", "within"] == pytest.approx(0.10)
    assert list(spread["separable"]) == [True, False]  # key, tagging
    # one seed per variant: the seeds' spread is not measured, nothing is separable
    single = ranking.variant_spread(_table({"paper": {"key": [0.5]}, "augment": {"key": [0.7]}}))
    assert np.isnan(single.loc["key", "within"]) and not single.loc["key", "separable"]


def test_preset_variant_recognises_the_switches(tmp_path: Path) -> None:
    assert variants.preset_variant("smoke") == "paper"
    path = tmp_path / "p.yaml"
    path.write_text(
        "data:\n  group_by: instrumentation\naugment:\n  gain_db: 6.0\n"
        "  eq_db: 12.0\n  noise_snr_db: 25.0\n"
    )
    assert variants.preset_variant(path) == "hard-negatives+augment"
    path.write_text("augment:\n  gain_db: 1.0\n")
    assert variants.preset_variant(path) is None


def _tone(f0: float, seconds: float, odd: bool) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    y = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in ((1, 3, 5) if odd else (1,)))
    return (0.2 * y * np.minimum(1, t / 0.02)).astype(np.float32)


@pytest.fixture(scope="module")
def study_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pretraining pool with an instrumentation column and a pitch task."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "audio").mkdir()
    pool, notes, twins = [], [], []
    for i in range(8):
        name = f"audio/pool{i}.wav"
        f0s = 220 * 2 ** (np.arange(6) * (i + 1) / 12)
        wave = np.concatenate([_tone(f, 0.7, i % 2 == 1) for f in f0s])
        sf.write(root / name, wave, SAMPLE_RATE)
        pool.append(f"../{name},train,{'odd' if i % 2 else 'sine'},pretrain/{i:05d}")
        # its twin: the same notes in the other timbre
        twin = f"audio/twin{i}.wav"
        sf.write(root / twin, np.concatenate([_tone(f, 0.7, i % 2 == 0) for f in f0s]), SAMPLE_RATE)
        twins.append(f"../{twin},train,pretrain/{i:05d},both")
    for midi in (48, 55, 60, 67):
        for v, split in enumerate(["train", "train", "train", "valid", "test", "test"]):
            name = f"audio/n{midi}_{v}.wav"
            f0 = 440 * 2 ** ((midi - 69) / 12) * (1 + 0.003 * v)
            sf.write(root / name, _tone(f0, 1.0, v % 2 == 1), SAMPLE_RATE)
            notes.append(f"../{name},{split},{midi},n{midi}_{v}")
    for folder, header, rows in (
        ("pretrain", "audio,split,instrumentation,render_id", pool),
        ("pitch", "audio,split,pitch,work", notes),
    ):
        (root / folder).mkdir()
        (root / folder / "manifest.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    header = "audio,split,twin_of,redraw"
    (root / "pretrain" / "twins.csv").write_text(header + "\n" + "\n".join(twins) + "\n")
    return root


@pytest.mark.slow  # trains and probes every run of a small study
def test_miniature_study_runs_resumes_and_tabulates(study_corpus: Path, tmp_path: Path) -> None:
    settings = recipes.StudySettings(
        variants=("paper", "hard-negatives+augment", "twins-within-4s", "twins+twin-head"),
        budgets=("batch-x0.5",),
        seeds=(0,),
        final_seeds=(0, 1),
        finalists=1,
        steps=4,
        tasks=("pitch",),
        probe={"max_epochs": 2, "steps_per_epoch": 4, "patience": 1, "n_boot": 20},
    )
    preset = tmp_path / "tiny.yaml"
    preset.write_text(
        "model:\n  dim: 32\n  depth: 2\n  heads: 2\n  head_dims: [32]\n"
        "train:\n  batch_size: 4\n  num_threads: 1\n  precision: fp32\n  checkpoint_every: 2\n"
    )
    out = recipes.run_study(
        study_corpus, tmp_path / "study", str(preset), settings, progress=False, say=lambda *_: None
    )
    table = ranking.study_table(out)
    runs = table[table.seed >= 0]
    assert set(runs.variant) == {*settings.variants, "batch-x0.5"}
    assert set(runs.step) == {2, 4, 8}  # budget: 8 steps
    study = json.loads((out / ranking.STUDY_JSON).read_text())
    finals = study["finalists"]
    assert finals[0] == "paper" and len(finals) == 2 and finals[1] in settings.variants
    seeds = {v: set(runs[runs.variant == v].seed) for v in set(runs.variant)}
    assert all(seeds[v] == {0, 1} for v in finals)  # the finals ran every final seed
    assert all(seeds[v] == {0} for v in set(runs.variant) - set(finals))
    # each run trained with exactly its variant's switches over the paper's recipe
    for variant in settings.variants:
        ran = json.loads((out / variant / "seed-0" / "run.json").read_text())["config"]
        want = load_config(str(preset), variants.variant_overrides(variant, 0, settings))
        for name in variants.SWITCHES:
            section, key = name.split(".")
            assert ran[section][key] == getattr(getattr(want, section), key), (variant, name)
    twin_run = json.loads((out / "twins-within-4s" / "seed-0" / "run.json").read_text())
    assert (
        twin_run["data"]["tracks_with_twins"] == 8 and twin_run["config"]["data"]["twin_prob"] == 1
    )
    paper_run = json.loads((out / "paper" / "seed-0" / "run.json").read_text())
    assert paper_run["data"]["tracks_with_twins"] == 0 and paper_run["views_per_step"] == 8
    head_run = json.loads((out / "twins+twin-head" / "seed-0" / "run.json").read_text())
    assert head_run["views_per_step"] == 12 and head_run["config"]["loss"]["twin_head"]
    assert {"random-init", "logmel"} <= set(table.variant)
    assert (out / ranking.STUDY_JSON).is_file()
    best, ranked = ranking.choose_recipe(table)
    assert best in settings.variants and list(ranked.columns) == ["pitch", "wins", "mean_rank"]
    # the winner comes from the finals: only finalists are ranked once they ran
    winner, final_ranking = ranking.study_choice(out, table)
    assert winner in finals and set(final_ranking.index) == set(finals)
    assert "batch-x0.5" not in ranked.index  # budgets are compared on their own
    budgets = ranking.budget_table(out)
    assert list(budgets.index) == [variants.BUDGET_RECIPE, "batch-x0.5"]
    assert list(budgets.batch) == [4, 2] and list(budgets.steps) == [4, 8]
    assert budgets.seeds.tolist() == [2 if variants.BUDGET_RECIPE in finals else 1, 1]
    assert (budgets.train_minutes > 0).all()
    # equal compute: the FLOPs counted by the runs themselves agree
    pflops = budgets.train_pflops.to_numpy()
    assert pflops[0] > 0 and abs(pflops[1] / pflops[0] - 1) < 0.02
    assert np.isfinite(budgets["pitch"]).all()
    compute = ranking.with_compute(table, out)
    last = compute[compute.seed == 0].groupby("variant")["train_pflops"].max()
    assert last["batch-x0.5"] == pytest.approx(last[variants.BUDGET_RECIPE], rel=0.02)
    assert last["batch-x0.5"] == pytest.approx(pflops[1], rel=0.02)
    assert (compute[compute.seed < 0].train_pflops == 0).all()
    # resumable: nothing is retrained or probed again
    weights = out / "paper" / "seed-0" / "model.safetensors"
    before = (weights.stat().st_mtime_ns, len(pd.read_csv(out / "results" / "probes.csv")))
    recipes.run_study(study_corpus, out, str(preset), settings, progress=False, say=lambda *_: None)
    after = (weights.stat().st_mtime_ns, len(pd.read_csv(out / "results" / "probes.csv")))
    assert before == after
    # seeded from the finished study (results and study.json only, no runs): a third final
    # seed trains just the finalists' seed 2 and keeps every earlier run's results and facts
    seeded = tmp_path / "seeded"
    recipes.seed_study(seeded, out)
    (seeded / "results" / "baselines.json").unlink()  # committed studies keep no markers
    more = dataclasses.replace(settings, final_seeds=(0, 1, 2))
    recipes.run_study(study_corpus, seeded, str(preset), more, progress=False, say=lambda *_: None)
    trained = sorted(str(p.parent.relative_to(seeded)) for p in seeded.glob("*/seed-*/run.json"))
    assert trained == sorted(f"{v}/seed-2" for v in finals)
    again = ranking.study_table(seeded)
    old = table.merge(again, on=["variant", "seed", "step", "task", "metric", "layer"])
    assert len(old) == len(table) and np.allclose(old.value_x, old.value_y)
    assert set(again[again.variant == finals[1]].seed) == {0, 1, 2}
    facts = json.loads((seeded / ranking.STUDY_JSON).read_text())["runs"]
    assert set(facts) == set(study["runs"]) | {f"{v}/seed-2" for v in finals}
    with pytest.raises(UserError, match="exists"):
        recipes.seed_study(seeded, out)
    with pytest.raises(UserError, match="not a recipe study"):
        recipes.seed_study(tmp_path / "fresh", tmp_path / "nowhere")
    # other probe settings: nothing is taken from the earlier study
    other = dataclasses.replace(settings, probe={**settings.probe, "n_boot": 21})
    assert recipes._held_runs(seeded, other) == ({}, set())
    assert set(recipes._held_runs(seeded, more)[0]) == set(facts)


def test_default_preset_follows_the_committed_study() -> None:
    """The default preset's switches are the ones the committed recipe study ranks first."""
    root = Path(__file__).resolve().parents[1]
    committed = root / "checkpoints" / "reference" / "recipe-study"
    if not (committed / "results" / "probes_summary.csv").is_file():
        pytest.skip("no recipe study committed yet (make recipe-study, then make reference)")
    best, _ = ranking.study_choice(committed)
    assert variants.preset_variant("default") == best
    assert variants.preset_variant("long") == best


def test_the_committed_study_is_held_by_a_study_of_the_default_settings(tmp_path: Path) -> None:
    """`make recipe-finals` seeds its folder from the committed study and must keep every run
    it holds: the committed settings match a default study's, the probe solver included (a
    study.json written before the solver was a setting names none: Adam's protocol)."""
    root = Path(__file__).resolve().parents[1]
    committed = root / "checkpoints" / "reference" / "recipe-study"
    if not (committed / "results" / "probes_summary.csv").is_file():
        pytest.skip("no recipe study committed yet")
    out = tmp_path / "study"
    recipes.seed_study(out, committed)
    held, models = recipes._held_runs(out, recipes.StudySettings())
    study = json.loads((committed / "study.json").read_text())
    assert set(held) == set(study["runs"]) and {"random-init", "logmel"} <= models
    # a study of other probe settings holds nothing: the solver counts
    other = recipes.StudySettings(probe={**recipes.StudySettings().probe, "solver": "lbfgs"})
    assert recipes._held_runs(out, other) == ({}, set())
