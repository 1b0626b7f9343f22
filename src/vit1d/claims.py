"""The claims ledger: each claim of the paper, the evidence it rests on, and a computed verdict.

Every verdict is computed here from the results files; nothing is typed by hand, so a
different result gives a different verdict (``notebooks/09_claims.ipynb`` shows the table,
``tests/test_claims.py`` feeds fabricated results for both outcomes of every claim).

**Inputs** (all in the build's results folder, ``<runs>/results``):

* ``probes_summary.csv`` (:mod:`vit1d.results`): per model, checkpoint, task, layer, pooling
  and metric the mean over probe seeds with its 95 % bootstrap interval. Models by their
  ``model`` column: ``contrastive`` (the model trained in the build), ``masked`` (the
  equal-compute foil), ``random-init``, ``logmel``, and ``chance`` (the prior-only
  predictor). Both the valid and the test split: layers are chosen on valid. Emergence
  snapshots (``.../snapshots/step-N``) are left out: the claims are about the final model.
* ``probe_items/`` (:mod:`vit1d.items`): every probe's per-item test scores (tagging: its
  per-clip predictions), for the paired intervals.
* ``analyses/`` (:mod:`vit1d.analyses` of the contrastive model; or ``attention/`` and
  ``ssm/``, the chapters' runs of one part each): ``onsets.csv`` and
  ``onsets_summary.csv`` (attention onsets, per clip), ``ssm.csv`` / ``ssm_summary.csv``
  (layer x dimension SSM scores, per window), ``novelty.csv`` / ``novelty_summary.csv``
  (chord changes from SSM novelty, per clip).
* ``pretrain_runs.json``: the run metadata of both pretraining runs (objective, steps, views
  per step, frames per view, training FLOPs per step), written by the masked-pretraining
  chapter.

**Comparisons.** A claim rests on comparisons ``a - b`` in the claimed direction (``a`` should
be higher), each with a 95 % interval of the difference:

* probe results (:mod:`vit1d.compare`): each side at its layer and pooling chosen on the
  **validation** split, scored on the test split, primary metric per task
  (:data:`PRIMARY_METRIC`); the interval is a **paired** bootstrap over the test items both
  sides were scored on (and their seeds), from the per-item results ``probe_items/``
  (:mod:`vit1d.items`, :mod:`vit1d.paired`). Results without per-item files (written before
  they existed) fall back to the normal approximation of the two summary intervals, which
  ignores the pairing; the ``method`` column says which was used;
* analyses results: paired bootstrap over test clips (onsets, chord changes) or test windows
  (SSMs) of the mean difference, :data:`N_BOOT` replicates. Each side's best curve or layer
  is chosen as the analyses chose it: onsets on the validation clips (``f_valid``), SSM
  and novelty layers by their test mean.

A comparison is **for** the claim when its interval lies above zero, **against** when it
lies below zero, **unclear** otherwise. With ``n`` comparisons that have results and
``k = ceil(n / 2)`` (a majority):

* **holds** when at least ``k`` are for and more are for than against;
* **does not hold** when at least ``k`` are against and more are against than for;
* **inconclusive** otherwise, and with the reason ``no results`` when ``n = 0``.

Claim by claim (:data:`RULES` holds the same text, shown in the chapter):

* **C1** (global: class + sequence average beats the class token): per global task, the
  contrastive model's ``avg`` pooling minus its ``cls`` pooling, each at its own layer chosen
  on validation among layers 1-12; majority rule. Layer 0 is left out: there the class token
  is a learned vector plus the mean of the projected frames, so for a linear probe ``cls``,
  ``seq`` and ``avg`` are the same features.
* **C2** (local: sequence tokens do well on chords and beats): per local task, the
  contrastive model's frame tokens minus the random-init model's and minus the log-mel
  frames (up to 4 comparisons); majority rule.
* **C3** (attention shows onsets): the trained model's best attention onset curve minus the
  random-init model's best curve, minus spectral flux and minus chance (onset F, 50 ms;
  3 comparisons, so 2 must agree); majority rule, and the claim is about what training
  made emerge, so the comparison with random init is *required*: the claim holds only when
  it is for, and does not hold when it is against.
* **C4** (SSMs of different layers capture different dimensions): two parts. (a) per
  musical dimension (chroma, chord labels, MFCC, loudness, tempogram; the position control
  is left out), the trained model's best layer minus the random-init model's best layer, in
  Spearman score above its shuffled chance; majority rule. (b) *different layers peak on
  different dimensions*: a **crossing** is a pair of dimensions of different groups X, Y
  whose best layers differ, ``l_X != l_Y``, with ``l_X`` beating ``l_Y`` on X and ``l_Y``
  beating ``l_X`` on Y, both intervals above zero. Holds when (a) holds and a crossing
  exists; does not hold when (a) does not hold or every dimension peaks at the same layer;
  inconclusive otherwise.
* **C4b** (chord changes emerge from layer-wise SSMs): the trained model's best layer's
  chord-change F (SSM novelty, 0.5 s) minus the random-init model's best layer, minus
  chroma novelty and minus chance; majority rule with random init required, as for C3.
* **C5** (the best layer depends on the task): per task, the contrastive model's layer
  curve (global tasks: the best pooling at each layer; local tasks: frame tokens). Holds
  when a crossing exists between two tasks (as in C4 (b), with the probe intervals); does
  not hold when every task peaks at the same layer; inconclusive otherwise.
* **E** (pretraining adds to its input at our scale; the laptop-scale target, not a claim of
  the paper): per task, the model against the random-init model and the log-mel features,
  each at its chosen layer and pooling; a task counts when both paired intervals lie above
  zero. A task on which neither the model nor a baseline lies above the prior-only
  predictor's score (``chance`` in the summary; the best one's 95 % interval wholly above it)
  cannot tell them apart and is left out, with the computed reason. Holds with at least :data:`EMERGENCE_MIN_TASKS` tasks.
* **Reference**: C1, C2, C5 and E are judged again for the committed reference checkpoint
  (model ``reference``) when its probes are in the results, as ``C1 (reference)`` etc.
* **Foil** (contrastive sequence tokens match or beat the masked model on local tasks at
  equal compute): per local task, contrastive frame tokens minus masked frame tokens, each
  at its best layer, judged by non-inferiority with margin :data:`MARGIN`: for when the
  interval's lower end is above ``-MARGIN``, against when its upper end is below ``-MARGIN``.
  Holds when every local task with results is for; does not hold when any is against;
  inconclusive otherwise, and inconclusive whatever the probes say when the two runs'
  recorded steps, views per step and training FLOPs per step differ by more than
  :data:`COMPUTE_TOLERANCE` (or are not recorded).

Choosing each side's layer on the validation split answers "at the layer a user would pick,
does A beat B" without letting the test split's noise choose for either side.

Used by ``notebooks/09_claims.ipynb``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vit1d import atomic
from vit1d.compare import (
    PRIMARY_METRIC,
    best_row,
    chance_levels,
    final_rows,
    normal_diff,
    probe_difference,
)
from vit1d.items import ItemStore
from vit1d.probe import GLOBAL_TASKS, LOCAL_TASKS

#: Bootstrap replicates for the paired intervals of the analyses comparisons.
N_BOOT = 2000
#: Non-inferiority margin of the foil (absolute, on metrics in [0, 1]).
MARGIN = 0.02
#: Relative difference of steps, views and FLOPs tolerated as "equal compute".
COMPUTE_TOLERANCE = 0.01

#: What a task should reach against chance to be informative (the tempo task's design
#: target, shown beside its scores); claim E leaves out a task whose best model is not
#: significantly above chance at all.
CHANCE_FACTOR = 2.0
#: Target half-widths of a paired 95 % interval between two of our models (global, local).
TARGET_HALF_WIDTH = {"global": 0.02, "local": 0.03}
#: SSM reference dimensions the claim is about (``position`` is a control, left out).
SSM_DIMENSIONS = ("chroma", "chords", "mfcc", "rms", "tempogram")
#: Model names in the probe results.
CONTRASTIVE, MASKED, RANDOM, LOGMEL = "contrastive", "masked", "random-init", "logmel"
#: The committed reference checkpoint (:mod:`vit1d.reference`), judged beside the build's.
REFERENCE = "reference"
#: Claim E: tasks on which a model must beat both baselines (the recipe study's laptop-scale target).
EMERGENCE_MIN_TASKS = 4

VERDICTS = ("holds", "does not hold", "inconclusive")

#: The statement of each claim, as the book tests it.
STATEMENTS = {
    "C1": "Global tasks: averaging class and sequence tokens beats the class token alone.",
    "C2": "Local tasks: per-frame sequence tokens do well on chords and beats, "
    "beyond the random-init and log-mel baselines.",
    "C3": "Layer-wise attention maps show note onsets.",
    "C4": "SSMs of different layers capture different musical dimensions.",
    "C4b": "Chord changes emerge from layer-wise SSMs.",
    "C5": "Which layer is best depends on the task.",
    "Foil": "Contrastive sequence tokens match or beat an equal-compute masked model "
    "on chords and beats.",
    "E": "Pretraining adds to its input at our scale: the model beats both the random-init "
    f"model and the log-mel features on at least {EMERGENCE_MIN_TASKS} of the 7 probe tasks.",
}

#: The rule of each claim, in words (the module docstring gives the details).
RULES = {
    "C1": "Per global task: contrastive avg minus cls, each at its own layer chosen on the "
    "validation split among layers 1-12 (at layer 0 the three poolings are the same features "
    "for a linear probe), scored on test; paired bootstrap over the test clips. Holds when a "
    "majority of tasks have the 95 % CI of the difference above zero (and more above than "
    "below); does not hold when a majority are below zero (and more below than above).",
    "C2": "Per local task: contrastive frame tokens minus random-init, and minus log-mel, "
    "each at its layer chosen on validation; paired bootstrap over test tracks. Same "
    "majority rule over these comparisons.",
    "C3": "Trained model's best attention onset curve (chosen on validation clips) minus "
    "random init's best, minus spectral flux, minus chance; paired bootstrap over test "
    "clips. Same majority rule (2 of 3), and the comparison with random init must be above "
    "zero for the claim to hold (below zero: does not hold), since the claim is about what "
    "training made emerge.",
    "C4": "(a) Per dimension: trained best layer minus random-init best layer (score above "
    "chance, paired bootstrap over windows), majority rule; (b) a crossing: two dimensions "
    "of different groups whose best layers each beat the other's on their own dimension. "
    "Holds: (a) holds and a crossing exists. Does not hold: (a) does not hold, or every "
    "dimension peaks at one layer.",
    "C4b": "Trained best layer's chord-change F from SSM novelty minus random init's best "
    "layer, minus chroma novelty, minus chance; paired bootstrap over test clips. Same "
    "majority rule, with the random-init comparison required as for C3.",
    "C5": "Per task, the contrastive model's best layer, chosen on validation. Holds when two "
    "tasks cross (on test, each one's layer beats the other's layer on it, paired CIs above "
    "zero). Does not hold when every task peaks at the same layer.",
    "Foil": f"Per local task: contrastive minus masked, each at its layer chosen on "
    f"validation, paired bootstrap over test tracks. Holds when "
    f"every task is non-inferior (CI lower end above -{MARGIN}); does not hold when any task "
    f"is inferior (CI upper end below -{MARGIN}); inconclusive when the runs' steps, views "
    f"or FLOPs per step differ by more than {COMPUTE_TOLERANCE:.0%}.",
    "E": "Per task (primary metric), the model against each baseline, each at its layer and "
    "pooling chosen on validation: it beats a baseline when the paired 95 % CI of the "
    "difference over the test items lies above zero. A task on which neither the model nor "
    "a baseline lies above the prior-only predictor's score (95 % CI wholly above it) is "
    "left out: it cannot tell them apart. Holds when at least "
    f"{EMERGENCE_MIN_TASKS} tasks beat both; does not hold when fewer do and the tasks "
    "without results could not make up the difference; inconclusive otherwise.",
}


# ----------------------------------------------------------------------------------------
# Data structures
# ----------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """One difference ``a - b`` with its 95 % interval and what it says about its claim."""

    claim: str
    name: str
    a: str
    b: str
    a_value: float
    b_value: float
    diff: float
    ci_low: float
    ci_high: float
    method: str
    outcome: str = ""  # for | against | unclear
    primary: bool = True  # shown in the ledger's numbers column (else only in the details)
    n_items: int = 0  # test items (clips, tracks, windows) the interval resamples

    def __post_init__(self) -> None:
        if not self.outcome:
            self.outcome = outcome(self.ci_low, self.ci_high)

    def text(self) -> str:
        return f"{self.name}: {self.diff:+.3f} [{self.ci_low:+.3f}, {self.ci_high:+.3f}]"


@dataclass
class Claim:
    """A row of the ledger."""

    id: str
    statement: str
    evidence: str
    rule: str
    verdict: str
    reason: str
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def numbers(self) -> str:
        parts = [c.text() for c in self.comparisons if c.primary] + self.notes
        return "; ".join(parts) if parts else "-"


@dataclass
class Ledger:
    """All claims, as a table (:meth:`table`) and their comparisons (:meth:`details`)."""

    claims: list[Claim]
    sources: dict[str, str] = field(default_factory=dict)
    precision: Any = None  # precision_table(): paired half-widths per task

    def __getitem__(self, claim_id: str) -> Claim:
        for c in self.claims:
            if c.id == claim_id:
                return c
        raise KeyError(claim_id)

    @property
    def verdicts(self) -> dict[str, str]:
        return {c.id: c.verdict for c in self.claims}

    def table(self) -> Any:
        return pd.DataFrame(
            [
                {
                    "claim": c.id,
                    "statement": c.statement,
                    "evidence": c.evidence,
                    "numbers": c.numbers,
                    "verdict": c.verdict,
                    "reason": c.reason,
                }
                for c in self.claims
            ]
        )

    def details(self) -> Any:
        cols = list(Comparison.__dataclass_fields__)
        rows = [asdict(x) for c in self.claims for x in c.comparisons]
        return pd.DataFrame(rows, columns=cols)

    def write(self, folder: str | Path) -> dict[str, Path]:
        """``claims.csv`` (the table), ``claims_details.csv`` (every comparison) and
        ``claims_precision.csv`` (the paired half-widths per task, when computed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = {"claims": folder / "claims.csv", "details": folder / "claims_details.csv"}
        atomic.write_text(out["claims"], self.table().to_csv(index=False))
        atomic.write_text(out["details"], self.details().to_csv(index=False, float_format="%.6g"))
        if self.precision is not None and len(self.precision):
            out["precision"] = folder / "claims_precision.csv"
            atomic.write_text(out["precision"], self.precision.to_csv(index=False))
        return out


# ----------------------------------------------------------------------------------------
# Rules
# ----------------------------------------------------------------------------------------


def outcome(ci_low: float, ci_high: float, threshold: float = 0.0) -> str:
    """``for`` when the interval lies above ``threshold``, ``against`` when below, else
    ``unclear`` (also for NaN bounds)."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "unclear"
    if ci_low > threshold:
        return "for"
    if ci_high < threshold:
        return "against"
    return "unclear"


def majority(comparisons: Sequence[Comparison], required: Sequence[str] = ()) -> tuple[str, str]:
    """The majority rule of the module docstring: ``(verdict, reason)``. Comparisons named
    in ``required`` must be for the claim for it to hold, and one of them against it makes
    it not hold."""
    n = len(comparisons)
    if n == 0:
        return "inconclusive", "no results"
    k = math.ceil(n / 2)
    n_for = sum(c.outcome == "for" for c in comparisons)
    n_against = sum(c.outcome == "against" for c in comparisons)
    counts = f"{n_for} of {n} for, {n_against} against (needs {k})"
    req = [c for c in comparisons if c.name in set(required)]
    if any(c.outcome == "against" for c in req):
        names = ", ".join(c.name for c in req if c.outcome == "against")
        return "does not hold", f"{counts}; against: {names}"
    if n_for >= k and n_for > n_against:
        missing = [c.name for c in req if c.outcome != "for"]
        if missing:
            return "inconclusive", f"{counts}; not shown: {', '.join(missing)}"
        return "holds", counts
    if n_against >= k and n_against > n_for:
        return "does not hold", counts
    return "inconclusive", counts


def paired_bootstrap(
    diffs: Sequence[float], n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of paired differences and the percentile bootstrap 95 % interval (units
    resampled with replacement)."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(d.mean()), float(lo), float(hi)


# ----------------------------------------------------------------------------------------
# Reading results
# ----------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """What the ledger reads (any part may be missing: ``None``)."""

    probes: Any = None  # probes_summary.csv
    onsets: Any = None  # analyses onsets.csv
    onsets_summary: Any = None
    ssm: Any = None  # analyses ssm.csv
    novelty: Any = None  # analyses novelty.csv
    runs: dict[str, Any] | None = None  # pretrain_runs.json
    items: ItemStore | None = None  # probe_items/: per-item test scores for paired intervals
    sources: dict[str, str] = field(default_factory=dict)


def _read_csv(path: Path) -> Any:
    if path.is_file() and path.stat().st_size > 0:
        return pd.read_csv(path, dtype={"head": str, "checkpoint": str, "run_id": str})
    return None


#: Folders under the results folder searched for the analyses CSVs, in order: one
#: ``vit1d analyses`` run with both parts, or the attention and self-similarity chapters'
#: runs of one part each.
ANALYSES_DIRS = ("analyses", "attention", "ssm")


def load_inputs(results_dir: str | Path, analyses_dir: str | Path | None = None) -> Inputs:
    """Read the ledger's inputs from a results folder; each analyses CSV is taken from the
    first of ``analyses_dir`` (when given) and :data:`ANALYSES_DIRS` that holds it."""
    results_dir = Path(results_dir)
    folders = ([Path(analyses_dir)] if analyses_dir else []) + [
        results_dir / d for d in ANALYSES_DIRS
    ]

    def find(name: str) -> Path:
        for folder in folders:
            if (folder / name).is_file():
                return folder / name
        return folders[0] / name

    files = {
        "probes": results_dir / "probes_summary.csv",
        "onsets": find("onsets.csv"),
        "onsets_summary": find("onsets_summary.csv"),
        "ssm": find("ssm.csv"),
        "novelty": find("novelty.csv"),
    }
    inputs = Inputs(**{k: _read_csv(p) for k, p in files.items()})
    runs_path = results_dir / "pretrain_runs.json"
    if runs_path.is_file():
        inputs.runs = json.loads(runs_path.read_text())
    files["runs"] = runs_path
    store = ItemStore(results_dir)
    if store.available():
        inputs.items = store
        files["items"] = store.folder
    inputs.sources = {k: str(p) for k, p in files.items() if p.exists()}
    return inputs


def _view_text(label: str, row: Any) -> str:
    """``label (layer N pooling)``, with ``, test-chosen`` when no valid rows existed."""
    where = f"layer {int(row['layer'])} {row['pooling']}"
    if row.get("chosen_on", "valid") == "test":
        where += ", chosen on test"
    return f"{label} ({where})"


def _probe_comparison(
    claim: str,
    name: str,
    a: Any,
    b: Any,
    a_label: str,
    b_label: str,
    items: ItemStore | None,
    threshold: float = 0.0,
) -> Comparison:
    """``a - b`` of two summary rows: a paired bootstrap over the test items both were scored
    on (:func:`vit1d.compare.probe_difference`), or, without per-item results, the normal
    approximation from the two summary intervals."""
    res = probe_difference(a, b, items)
    if res is not None and np.isfinite(res.diff):
        d, lo, hi, n = res.diff, res.ci_low, res.ci_high, res.n_items
        unit = str(a.get("unit", "item"))
        method = f"paired bootstrap over {n} test {unit}s and the seeds"
    else:
        (d, lo, hi), n = normal_diff(a, b), int(a.get("n", 0) or 0)
        method = "normal approximation from the summary CIs (no per-item results)"
    c = Comparison(
        claim,
        name,
        _view_text(a_label, a),
        _view_text(b_label, b),
        float(a["mean"]),
        float(b["mean"]),
        float(d),
        float(lo),
        float(hi),
        method,
        n_items=n,
    )
    c.outcome = outcome(c.ci_low, c.ci_high, threshold)
    return c


def final_both(summary: Any, model: str) -> Any:
    """The valid and test rows of ``model``'s final checkpoint (what :func:`best_row` needs)."""
    return final_rows(summary, model, split=None)


# ----------------------------------------------------------------------------------------
# The claims
# ----------------------------------------------------------------------------------------


def _claim_id(claim: str, model: str) -> str:
    """``C1`` for the build's model, ``C1 (reference)`` for another one."""
    return claim if model == CONTRASTIVE else f"{claim} ({model})"


def claim_c1(inp: Inputs, model: str = CONTRASTIVE) -> Claim:
    rows = final_both(inp.probes, model)
    comps = []
    for task in GLOBAL_TASKS:
        # layer 0: cls = learned vector + frame mean, the same features as avg for a probe
        a = best_row(rows, task, ["avg"], min_layer=1)
        b = best_row(rows, task, ["cls"], min_layer=1)
        if a is not None and b is not None:
            comps.append(_probe_comparison("C1", task, a, b, "avg", "cls", inp.items))
    verdict, reason = majority(comps)
    return Claim(
        _claim_id("C1", model),
        STATEMENTS["C1"],
        f"probes_summary.csv, probe_items/: {model} model, global tasks, avg vs cls pooling "
        "(layers 1-12)",
        RULES["C1"],
        verdict,
        reason,
        comps,
    )


def claim_c2(inp: Inputs, model: str = CONTRASTIVE) -> Claim:
    rows = {m: final_both(inp.probes, m) for m in (model, RANDOM, LOGMEL)}
    comps = []
    for task in LOCAL_TASKS:
        a = best_row(rows[model], task, ["frame"])
        if a is None:
            continue
        for base in (RANDOM, LOGMEL):
            b = best_row(rows[base], task, ["frame"])
            if b is not None:
                name = f"{task} vs {base}"
                comps.append(_probe_comparison("C2", name, a, b, model, base, inp.items))
    verdict, reason = majority(comps)
    return Claim(
        _claim_id("C2", model),
        STATEMENTS["C2"],
        f"probes_summary.csv, probe_items/: frame-token probes on chords and beats, {model} "
        "vs random-init and log-mel",
        RULES["C2"],
        verdict,
        reason,
        comps,
    )


def _eval_split(df: Any) -> Any:
    """The rows of the evaluation split (``test`` when present)."""
    if df is None or df.empty or "split" not in df.columns:
        return df
    splits = set(df["split"].astype(str))
    return df[df["split"] == ("test" if "test" in splits else sorted(splits)[-1])]


def _per_unit(df: Any, keys: Sequence[str], value: str) -> Any:
    """``value`` indexed by ``keys`` (the paired units)."""
    return df.groupby(list(keys))[value].mean()


def _paired(
    claim: str,
    name: str,
    a: Any,
    b: Any,
    a_label: str,
    b_label: str,
    unit: str,
    seed: int = 0,
) -> Comparison | None:
    """A paired-bootstrap comparison of two per-unit Series (joined on their index)."""
    joined = a.to_frame("a").join(b.to_frame("b"), how="inner").dropna()
    if joined.empty:
        return None
    d, lo, hi = paired_bootstrap(joined["a"] - joined["b"], seed=seed)
    return Comparison(
        claim,
        name,
        a_label,
        b_label,
        float(joined["a"].mean()),
        float(joined["b"].mean()),
        d,
        lo,
        hi,
        f"paired bootstrap over {len(joined)} test {unit}",
    )


def claim_c3(inp: Inputs) -> Claim:
    comps: list[Comparison] = []
    notes: list[str] = []
    if inp.onsets is not None and inp.onsets_summary is not None:
        per = _eval_split(inp.onsets)
        summ = inp.onsets_summary

        def best(model: str) -> tuple[Any, str] | None:
            s = summ[summ["model"] == model]
            if s.empty:
                return None
            col = "f_valid" if "f_valid" in s and s["f_valid"].notna().any() else "f"
            r = s.loc[s[col].astype(float).idxmax()]
            sel = per[
                (per["model"] == model)
                & (per["method"] == r["method"])
                & (per["layer"] == r["layer"])
                & (per["head"].astype(str) == str(r["head"]))
            ]
            label = (
                f"{model} {r['method']} layer {int(r['layer'])} head {r['head']}"
                if model in ("trained", "random")
                else model.replace("_", " ")
            )
            return _per_unit(sel, ["clip"], "f"), label

        trained = best("trained")
        if trained is not None:
            for other in ("random", "spectral_flux", "chance"):
                b = best(other)
                if b is None:
                    continue
                name = {"random": "vs random init"}.get(other, f"vs {other.replace('_', ' ')}")
                c = _paired("C3", name, trained[0], b[0], trained[1], b[1], "clips")
                if c is not None:
                    comps.append(c)
    verdict, reason = majority(comps, required=["vs random init"])
    return Claim(
        "C3",
        STATEMENTS["C3"],
        "onsets.csv, onsets_summary.csv (vit1d analyses, attention chapter): onset F "
        "(50 ms) of attention curves per "
        "test clip, best curve chosen on validation clips",
        RULES["C3"],
        verdict,
        reason,
        comps,
        notes,
    )


def _ssm_units(ssm: Any) -> Any:
    df = _eval_split(ssm).copy()
    df["above"] = df["score"].astype(float) - df["chance"].astype(float)
    return df


def _best_layer(df: Any, model: str, dimension: str) -> int | None:
    s = df[(df["model"] == model) & (df["dimension"] == dimension)]
    if s.empty:
        return None
    return int(s.groupby("layer")["above"].mean().idxmax())


def _layer_series(df: Any, model: str, dimension: str, layer: int) -> Any:
    s = df[(df["model"] == model) & (df["dimension"] == dimension) & (df["layer"] == layer)]
    return _per_unit(s, ["clip", "window"], "above")


def _crossings(
    items: Sequence[str],
    best: dict[str, int],
    compare: Any,
    group: dict[str, str] | None = None,
) -> tuple[list[Comparison], list[tuple[str, str]]]:
    """Comparisons ``X at l_X minus X at l_Y`` for every pair of items with different best
    layers (and different groups, when given), and the pairs that cross (both for)."""
    comps, crossing = [], []
    done: dict[tuple[str, int, int], Comparison | None] = {}
    for i, x in enumerate(items):
        for y in items[i + 1 :]:
            if best[x] == best[y] or (group and group.get(x) == group.get(y)):
                continue
            pair = []
            for u, lu, lv, v in ((x, best[x], best[y], y), (y, best[y], best[x], x)):
                key = (u, lu, lv)
                if key not in done:
                    done[key] = compare(u, lu, lv, v)
                    if done[key] is not None:
                        done[key].primary = False
                        comps.append(done[key])
                pair.append(done[key])
            if all(c is not None and c.outcome == "for" for c in pair):
                if not crossing:  # the first crossing found is shown in the ledger
                    for c in pair:
                        c.primary = True
                crossing.append((x, y))
    return comps, crossing


def claim_c4(inp: Inputs) -> Claim:
    comps_a: list[Comparison] = []
    comps_b: list[Comparison] = []
    notes: list[str] = []
    crossing: list[tuple[str, str]] = []
    best: dict[str, int] = {}
    if inp.ssm is not None and not inp.ssm.empty:
        df = _ssm_units(inp.ssm)
        groups = df.drop_duplicates("dimension").set_index("dimension")["group"].to_dict()
        dims = [d for d in SSM_DIMENSIONS if d in set(df["dimension"])]
        for dim in dims:
            lt, lr = _best_layer(df, "trained", dim), _best_layer(df, "random", dim)
            if lt is None:
                continue
            best[dim] = lt
            if lr is None:
                continue
            c = _paired(
                "C4",
                f"{dim} vs random init",
                _layer_series(df, "trained", dim, lt),
                _layer_series(df, "random", dim, lr),
                f"trained layer {lt}",
                f"random layer {lr}",
                "windows",
            )
            if c is not None:
                comps_a.append(c)

        def compare(u: str, lu: int, lv: int, v: str) -> Comparison | None:
            return _paired(
                "C4",
                f"{u}: layer {lu} (best) vs layer {lv} (best for {v})",
                _layer_series(df, "trained", u, lu),
                _layer_series(df, "trained", u, lv),
                f"layer {lu}",
                f"layer {lv}",
                "windows",
            )

        comps_b, crossing = _crossings(list(best), best, compare, groups)
        notes.append("best layers: " + ", ".join(f"{d} {lay}" for d, lay in best.items()))
    va, ra = majority(comps_a)
    if va == "inconclusive" and ra == "no results":
        verdict, reason = va, ra
    elif va == "does not hold":
        verdict, reason = va, f"(a) vs random init: {ra}"
    elif best and len(set(best.values())) == 1:
        verdict = "does not hold"
        reason = f"every dimension peaks at layer {next(iter(best.values()))}; (a): {ra}"
    elif va == "holds" and crossing:
        x, y = crossing[0]
        verdict = "holds"
        reason = f"(a): {ra}; layers cross on {x} (layer {best[x]}) and {y} (layer {best[y]})"
    else:
        what = "a crossing" if crossing else "no crossing of best layers"
        verdict, reason = "inconclusive", f"(a): {ra}; (b): {what}"
    return Claim(
        "C4",
        STATEMENTS["C4"],
        "ssm.csv (vit1d analyses, self-similarity chapter): Spearman score of each "
        "layer's token SSM against reference SSMs "
        "(minus shuffled chance) per test window, trained vs random init",
        RULES["C4"],
        verdict,
        reason,
        comps_a + comps_b,
        notes,
    )


def claim_c4b(inp: Inputs) -> Claim:
    comps: list[Comparison] = []
    if inp.novelty is not None and not inp.novelty.empty:
        df = _eval_split(inp.novelty)

        def best(model: str) -> tuple[Any, str] | None:
            s = df[df["model"] == model]
            if s.empty:
                return None
            layer = int(s.groupby("layer")["f"].mean().idxmax())
            label = f"{model} layer {layer}" if model in ("trained", "random") else model
            return _per_unit(s[s["layer"] == layer], ["clip"], "f"), label

        trained = best("trained")
        if trained is not None:
            for other in ("random", "chroma", "chance"):
                b = best(other)
                if b is None:
                    continue
                name = "vs random init" if other == "random" else f"vs {other}"
                c = _paired("C4b", name, trained[0], b[0], trained[1], b[1], "clips")
                if c is not None:
                    comps.append(c)
    verdict, reason = majority(comps, required=["vs random init"])
    return Claim(
        "C4b",
        STATEMENTS["C4b"],
        "novelty.csv (vit1d analyses, self-similarity chapter): chord-change F (0.5 s) "
        "of SSM novelty per test clip",
        RULES["C4b"],
        verdict,
        reason,
        comps,
    )


def _layer_views(rows: Any, task: str) -> dict[int, Any]:
    """Per layer, the test row of ``task``'s primary metric at the pooling chosen on
    validation at that layer."""
    out = {}
    for layer in sorted(set(rows["layer"].astype(int))):
        r = best_row(rows[rows["layer"].astype(int) == layer], task)
        if r is not None:
            out[layer] = r
    return out


def claim_c5(inp: Inputs, model: str = CONTRASTIVE) -> Claim:
    rows = final_both(inp.probes, model)
    curves: dict[str, dict[int, Any]] = {}
    best: dict[str, int] = {}
    if rows is not None:
        for task in GLOBAL_TASKS + LOCAL_TASKS:
            views = _layer_views(rows, task)
            chosen = best_row(rows, task)
            if len(views) > 1 and chosen is not None:
                curves[task], best[task] = views, int(chosen["layer"])

    def compare(u: str, lu: int, lv: int, v: str) -> Comparison | None:
        if lv not in curves[u]:
            return None
        a, b = curves[u][lu], curves[u][lv]
        name = f"{u}: layer {lu} (chosen) vs layer {lv} (chosen for {v})"
        return _probe_comparison("C5", name, a, b, f"layer {lu}", f"layer {lv}", inp.items)

    comps, crossing = _crossings(list(best), best, compare)
    notes = ["best layers: " + ", ".join(f"{t} {lay}" for t, lay in best.items())] if best else []
    if len(best) < 2:
        verdict, reason = "inconclusive", "no results" if not best else "fewer than two tasks"
    elif crossing:
        x, y = crossing[0]
        verdict = "holds"
        reason = f"{x} peaks at layer {best[x]}, {y} at layer {best[y]}, each significantly"
    elif len(set(best.values())) == 1:
        verdict = "does not hold"
        reason = f"every task peaks at layer {next(iter(best.values()))}"
    else:
        verdict = "inconclusive"
        reason = "best layers differ, but no pair of tasks differs significantly both ways"
    return Claim(
        _claim_id("C5", model),
        STATEMENTS["C5"],
        f"probes_summary.csv, probe_items/: the {model} model's layer curves per task (pooling "
        "chosen on validation at each layer)",
        RULES["C5"],
        verdict,
        reason,
        comps,
        notes,
    )


def compute_check(runs: dict[str, Any] | None) -> tuple[bool | None, str]:
    """Whether the contrastive and masked runs had equal compute: ``(True/False, note)``,
    ``(None, why)`` when it cannot be told."""
    if not runs or CONTRASTIVE not in runs or MASKED not in runs:
        return None, "no run metadata for both models (pretrain_runs.json)"
    a, b = runs[CONTRASTIVE], runs[MASKED]
    diffs = []
    for key in ("steps", "views_per_step", "train_flops_per_step"):
        va, vb = a.get(key), b.get(key)
        if va is None or vb is None:
            return None, f"{key} not recorded for both runs"
        rel = abs(float(va) - float(vb)) / max(abs(float(va)), abs(float(vb)), 1e-12)
        if rel > COMPUTE_TOLERANCE:
            diffs.append(f"{key} {va:g} vs {vb:g}")
    if diffs:
        return False, "not equal compute: " + ", ".join(diffs)
    return True, (
        f"equal compute: {a['steps']} steps of {a['views_per_step']} views, "
        f"{float(a['train_flops_per_step']):.3g} vs {float(b['train_flops_per_step']):.3g} "
        "training FLOPs per step"
    )


def claim_foil(inp: Inputs) -> Claim:
    a_rows, b_rows = final_both(inp.probes, CONTRASTIVE), final_both(inp.probes, MASKED)
    comps = []
    for task in LOCAL_TASKS:
        a, b = best_row(a_rows, task, ["frame"]), best_row(b_rows, task, ["frame"])
        if a is not None and b is not None:
            comps.append(
                _probe_comparison("Foil", task, a, b, CONTRASTIVE, MASKED, inp.items, -MARGIN)
            )
    equal, note = compute_check(inp.runs)
    n_for = sum(c.outcome == "for" for c in comps)
    against = [c.name for c in comps if c.outcome == "against"]
    if not comps:
        verdict, reason = "inconclusive", "no results"
    elif equal is not True:
        verdict, reason = "inconclusive", note
    elif against:
        verdict, reason = (
            "does not hold",
            f"masked better by more than {MARGIN} on " + ", ".join(against),
        )
    elif n_for == len(comps):
        verdict, reason = "holds", f"non-inferior on {n_for} of {len(comps)} local tasks"
    else:
        verdict, reason = "inconclusive", f"non-inferior on {n_for} of {len(comps)} local tasks"
    return Claim(
        "Foil",
        STATEMENTS["Foil"],
        "probes_summary.csv, probe_items/: frame-token probes of the contrastive and masked "
        "models; pretrain_runs.json: the runs' compute",
        RULES["Foil"],
        verdict,
        reason,
        comps,
        [note],
    )


def above_chance(
    task: str, rows: Sequence[Any], chance: dict[tuple[str, str], float]
) -> tuple[bool, str]:
    """Whether the best of ``rows`` (the model and its baselines at their chosen views) lies
    above ``task``'s chance level on the primary metric, its 95 % interval wholly above it,
    and the reason in words (with the ratio to chance; :data:`CHANCE_FACTOR` is the target
    the tempo task is designed for). Tasks without a chance level (local ones) count."""
    metric = PRIMARY_METRIC[task]
    level = chance.get((task, metric))
    if level is None or not np.isfinite(level) or level <= 0:
        return True, ""
    top = max(rows, key=lambda r: float(r["mean"]))
    mean, low = float(top["mean"]), float(top["ci_low"])
    ok = bool(np.isfinite(low) and low > level)
    return ok, (
        f"{task}: best {metric} {mean:.3f} (CI low {low:.3f}) is {mean / level:.1f}x chance "
        f"({level:.3f}; target {CHANCE_FACTOR:g}x): {'above' if ok else 'not above'} chance"
    )


def claim_e(inp: Inputs, model: str = CONTRASTIVE) -> Claim:
    rows = {m: final_both(inp.probes, m) for m in (model, RANDOM, LOGMEL)}
    chance = chance_levels(inp.probes)
    comps, beaten, probed, notes, left_out = [], [], 0, [], []
    for task in GLOBAL_TASKS + LOCAL_TASKS:
        a = best_row(rows[model], task)
        if a is None:
            continue
        bases = {base: best_row(rows[base], task) for base in (RANDOM, LOGMEL)}
        bases = {k: v for k, v in bases.items() if v is not None}
        ok, why = above_chance(task, [a, *bases.values()], chance)
        if why:
            notes.append(why)
        if not ok:
            left_out.append(task)
            continue
        probed += 1
        wins = 0
        for base, b in bases.items():
            c = _probe_comparison("E", f"{task} vs {base}", a, b, model, base, inp.items)
            comps.append(c)
            wins += c.outcome == "for"
        if wins == 2:
            beaten.append(task)
    n = len(beaten)
    counts = f"beats both baselines on {n} of {probed} tasks" + (
        f" ({', '.join(beaten)})" if beaten else ""
    )
    if left_out:
        counts += f"; left out at chance: {', '.join(left_out)}"
    unprobed = len(GLOBAL_TASKS + LOCAL_TASKS) - probed - len(left_out)
    if n >= EMERGENCE_MIN_TASKS:
        verdict = "holds"
    elif n + unprobed < EMERGENCE_MIN_TASKS:  # even the missing tasks could not lift it
        verdict = "does not hold"
    else:
        verdict = "inconclusive"
    return Claim(
        _claim_id("E", model),
        STATEMENTS["E"],
        f"probes_summary.csv, probe_items/: {model} vs random-init and log-mel, every task at "
        "its layer and pooling chosen on validation; chance: the prior-only predictor",
        RULES["E"],
        verdict,
        counts if probed or left_out else "no results",
        comps,
        notes,
    )


def precision_table(inp: Inputs, model: str = CONTRASTIVE) -> pd.DataFrame:
    """How precisely the probe comparisons are measured: per task (primary metric), the
    number of test items and the paired 95 % half-width of ``model`` minus each other model
    (each at its layer chosen on validation), with the target of :data:`TARGET_HALF_WIDTH`
    for differences between two of our models (masked, reference), whether it is met, and
    the number of test items that would meet it (half-widths shrink as ``1 / sqrt(n)``)."""
    others = [m for m in (MASKED, REFERENCE, RANDOM, LOGMEL) if m != model]
    rows_by = {m: final_both(inp.probes, m) for m in [model, *others]}
    out = []
    for task in GLOBAL_TASKS + LOCAL_TASKS:
        a = best_row(rows_by[model], task)
        if a is None:
            continue
        kind = "local" if task in LOCAL_TASKS else "global"
        entry: dict[str, Any] = {"task": task, "metric": PRIMARY_METRIC[task]}
        ours = []
        for m in others:
            b = best_row(rows_by[m], task)
            if b is None:
                continue
            c = _probe_comparison("precision", task, a, b, model, m, inp.items)
            half = (c.ci_high - c.ci_low) / 2
            entry["test items"] = c.n_items
            entry[f"vs {m}"] = round(half, 4)
            if m in (MASKED, REFERENCE):
                ours.append(half)
        target = TARGET_HALF_WIDTH[kind]
        entry["target"] = target
        entry["met"] = ("yes" if max(ours) <= target else "no") if ours else "-"
        # a half-width shrinks as 1/sqrt(n): the test items the target would need
        n = entry.get("test items", 0)
        entry["items for target"] = math.ceil(n * (max(ours) / target) ** 2) if ours and n else "-"
        out.append(entry)
    return pd.DataFrame(out)


#: Claims judged again for every other pretrained model in the results (the reference).
PER_MODEL_CLAIMS = {"C1": claim_c1, "C2": claim_c2, "C5": claim_c5, "E": claim_e}

CLAIMS = {
    "C1": claim_c1,
    "C2": claim_c2,
    "C3": claim_c3,
    "C4": claim_c4,
    "C4b": claim_c4b,
    "C5": claim_c5,
    "Foil": claim_foil,
    "E": claim_e,
}


def evaluate(inputs: Inputs) -> Ledger:
    """Every claim of :data:`CLAIMS` judged on ``inputs``, then the claims of
    :data:`PER_MODEL_CLAIMS` for the reference checkpoint when its probes are in the
    results (ids such as ``C1 (reference)``)."""
    claims = [fn(inputs) for fn in CLAIMS.values()]
    if final_rows(inputs.probes, REFERENCE) is not None:
        claims += [fn(inputs, REFERENCE) for fn in PER_MODEL_CLAIMS.values()]
    return Ledger(claims, dict(inputs.sources), precision_table(inputs))


def build_ledger(results_dir: str | Path, analyses_dir: str | Path | None = None) -> Ledger:
    """Read the results folder (:func:`load_inputs`) and judge every claim."""
    return evaluate(load_inputs(results_dir, analyses_dir))
