"""The claims ledger: each claim of the paper, the evidence it rests on, and a computed verdict.

Every verdict is computed here from the results files; nothing is typed by hand, so a
different result gives a different verdict (``notebooks/09_claims.ipynb`` shows the table,
``tests/test_claims.py`` feeds fabricated results for both outcomes of every claim).

**Inputs** (all in the build's results folder, ``<runs>/results``):

* ``probes_summary.csv`` (:mod:`vit1d.results`): per model, checkpoint, task, layer, pooling
  and metric the mean over probe seeds with its 95 % bootstrap interval. Models by their
  ``model`` column: ``contrastive`` (the model trained in the build), ``masked`` (the
  equal-compute foil), ``random-init``, ``logmel``. Emergence snapshots
  (``.../snapshots/step-N``) are left out: the claims are about the final model.
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

* probe results: each side at its best layer (highest mean on the test split; the same
  selection for both sides), primary metric per task (:data:`PRIMARY_METRIC`). The
  summary holds each side's bootstrap interval, not the paired units, so the interval of the
  difference is the normal approximation ``d +- 1.96 sqrt(se_a^2 + se_b^2)`` with
  ``se = (ci_high - ci_low) / 3.92``. It ignores the pairing of the two sides on the same
  test clips, so it is wider than a paired interval: it errs toward ``inconclusive``;
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
  contrastive model's ``avg`` pooling minus its ``cls`` pooling; majority rule.
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
* **E** (pretraining adds to its input at our scale; issue 7's target, not a claim of the
  paper): per task, the model at its best layer and pooling against the random-init model
  and the log-mel features at theirs; a task counts when both 95 % intervals lie wholly
  below the model's. Holds with at least :data:`EMERGENCE_MIN_TASKS` of the 7 tasks.
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

Selecting the best layer on the test split flatters both sides alike; it answers "at its
best, does A beat B", which is how the paper's tables read.

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

#: z of a two-sided 95 % interval.
Z95 = 1.959964
#: Bootstrap replicates for the paired intervals of the analyses comparisons.
N_BOOT = 2000
#: Non-inferiority margin of the foil (absolute, on metrics in [0, 1]).
MARGIN = 0.02
#: Relative difference of steps, views and FLOPs tolerated as "equal compute".
COMPUTE_TOLERANCE = 0.01

#: The metric each task is judged on (the first of the paper's metrics for it).
PRIMARY_METRIC = {
    "tagging": "map",
    "key": "weighted",
    "pitch": "accuracy",
    "instrument": "accuracy",
    "tempo": "acc1",
    "chords": "majmin",
    "beats": "f_measure",
}
GLOBAL_TASKS = ("tagging", "key", "pitch", "instrument", "tempo")
LOCAL_TASKS = ("chords", "beats")
#: SSM reference dimensions the claim is about (``position`` is a control, left out).
SSM_DIMENSIONS = ("chroma", "chords", "mfcc", "rms", "tempogram")
#: Model names in the probe results.
CONTRASTIVE, MASKED, RANDOM, LOGMEL = "contrastive", "masked", "random-init", "logmel"
#: The committed reference checkpoint (:mod:`vit1d.reference`), judged beside the build's.
REFERENCE = "reference"
#: Claim E: tasks on which a model must beat both baselines (issue 7's laptop-scale target).
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
    "C1": "Per global task: contrastive avg minus cls, each at its best layer. Holds when a "
    "majority of tasks have the 95 % CI of the difference above zero (and more above than "
    "below); does not hold when a majority are below zero (and more below than above).",
    "C2": "Per local task: contrastive frame tokens minus random-init, and minus log-mel, "
    "each at its best layer. Same majority rule over these comparisons.",
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
    "C5": "Per task, the contrastive model's best layer. Holds when two tasks cross (each "
    "one's best layer beats the other's best layer on it, CIs above zero). Does not hold "
    "when every task peaks at the same layer.",
    "Foil": f"Per local task: contrastive minus masked, each at its best layer. Holds when "
    f"every task is non-inferior (CI lower end above -{MARGIN}); does not hold when any task "
    f"is inferior (CI upper end below -{MARGIN}); inconclusive when the runs' steps, views "
    f"or FLOPs per step differ by more than {COMPUTE_TOLERANCE:.0%}.",
    "E": "Per task (primary metric), the model at its best layer and pooling against each "
    "baseline at its best: it beats a baseline when the two 95 % intervals do not overlap "
    "(the model's lower end above the baseline's upper end). Holds when at least "
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

    def __getitem__(self, claim_id: str) -> Claim:
        for c in self.claims:
            if c.id == claim_id:
                return c
        raise KeyError(claim_id)

    @property
    def verdicts(self) -> dict[str, str]:
        return {c.id: c.verdict for c in self.claims}

    def table(self) -> Any:
        import pandas as pd

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
        import pandas as pd

        cols = list(Comparison.__dataclass_fields__)
        rows = [asdict(x) for c in self.claims for x in c.comparisons]
        return pd.DataFrame(rows, columns=cols)

    def write(self, folder: str | Path) -> dict[str, Path]:
        """``claims.csv`` (the table) and ``claims_details.csv`` (every comparison)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = {"claims": folder / "claims.csv", "details": folder / "claims_details.csv"}
        self.table().to_csv(out["claims"], index=False)
        self.details().to_csv(out["details"], index=False, float_format="%.6g")
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


def normal_diff(a: Any, b: Any) -> tuple[float, float, float]:
    """Difference of two summary rows (``mean``, ``ci_low``, ``ci_high``) and its 95 %
    interval by the normal approximation of the module docstring."""
    d = float(a["mean"]) - float(b["mean"])
    se_a = (float(a["ci_high"]) - float(a["ci_low"])) / (2 * Z95)
    se_b = (float(b["ci_high"]) - float(b["ci_low"])) / (2 * Z95)
    half = Z95 * math.sqrt(max(se_a, 0.0) ** 2 + max(se_b, 0.0) ** 2)
    return d, d - half, d + half


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
    sources: dict[str, str] = field(default_factory=dict)


def _read_csv(path: Path) -> Any:
    import pandas as pd

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
    inputs.sources = {k: str(p) for k, p in files.items() if p.is_file()}
    return inputs


def final_rows(summary: Any, model: str, split: str = "test") -> Any:
    """The summary rows of ``model``'s final checkpoint on ``split``: emergence snapshots
    left out; when several checkpoints remain, the one with the highest step, then the most
    recent run."""
    import pandas as pd

    if summary is None or summary.empty:
        return None
    s = summary[(summary["model"] == model) & (summary["split"] == split)]
    s = s[~s["checkpoint"].astype(str).str.contains("snapshots/", regex=False)]
    if s.empty:
        return None
    s = s.assign(_step=pd.to_numeric(s["step"], errors="coerce").fillna(-1))
    ckpts = s.groupby("checkpoint").agg(step=("_step", "max"), run=("run_id", "max"))
    best = ckpts.sort_values(["step", "run"]).index[-1]
    return s[s["checkpoint"] == best].drop(columns="_step")


def best_row(rows: Any, task: str, poolings: Sequence[str] | None = None) -> Any:
    """The row of ``task``'s primary metric with the highest mean (over layers and the
    given poolings); ``None`` when there is none."""
    if rows is None:
        return None
    r = rows[(rows["task"] == task) & (rows["metric"] == PRIMARY_METRIC.get(task, ""))]
    if poolings is not None:
        r = r[r["pooling"].isin(list(poolings))]
    r = r[np.isfinite(r["mean"].astype(float))]
    if r.empty:
        return None
    return r.loc[r["mean"].astype(float).idxmax()]


def _summary_comparison(claim: str, name: str, a: Any, b: Any, a_text: str, b_text: str):
    """A comparison of two probe-summary rows, interval by :func:`normal_diff`."""
    d, lo, hi = normal_diff(a, b)
    return Comparison(
        claim,
        name,
        a_text,
        b_text,
        float(a["mean"]),
        float(b["mean"]),
        d,
        lo,
        hi,
        "normal approximation from the summary CIs",
    )


def _probe_comparison(claim: str, name: str, a: Any, b: Any, a_label: str, b_label: str):
    return _summary_comparison(
        claim,
        name,
        a,
        b,
        f"{a_label} (layer {int(a['layer'])})",
        f"{b_label} (layer {int(b['layer'])})",
    )


# ----------------------------------------------------------------------------------------
# The claims
# ----------------------------------------------------------------------------------------


def _claim_id(claim: str, model: str) -> str:
    """``C1`` for the build's model, ``C1 (reference)`` for another one."""
    return claim if model == CONTRASTIVE else f"{claim} ({model})"


def claim_c1(inp: Inputs, model: str = CONTRASTIVE) -> Claim:
    rows = final_rows(inp.probes, model)
    comps = []
    for task in GLOBAL_TASKS:
        a, b = best_row(rows, task, ["avg"]), best_row(rows, task, ["cls"])
        if a is not None and b is not None:
            comps.append(_probe_comparison("C1", task, a, b, "avg", "cls"))
    verdict, reason = majority(comps)
    return Claim(
        _claim_id("C1", model),
        STATEMENTS["C1"],
        f"probes_summary.csv: {model} model, global tasks, avg vs cls pooling",
        RULES["C1"],
        verdict,
        reason,
        comps,
    )


def claim_c2(inp: Inputs, model: str = CONTRASTIVE) -> Claim:
    rows = {m: final_rows(inp.probes, m) for m in (model, RANDOM, LOGMEL)}
    comps = []
    for task in LOCAL_TASKS:
        a = best_row(rows[model], task, ["frame"])
        if a is None:
            continue
        for base in (RANDOM, LOGMEL):
            b = best_row(rows[base], task, ["frame"])
            if b is not None:
                comps.append(_probe_comparison("C2", f"{task} vs {base}", a, b, model, base))
    verdict, reason = majority(comps)
    return Claim(
        _claim_id("C2", model),
        STATEMENTS["C2"],
        f"probes_summary.csv: frame-token probes on chords and beats, {model} vs "
        "random-init and log-mel",
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


def _layer_curve(rows: Any, task: str) -> Any:
    """Per layer, the summary row of ``task``'s primary metric with the best pooling."""
    r = rows[(rows["task"] == task) & (rows["metric"] == PRIMARY_METRIC[task])]
    r = r[np.isfinite(r["mean"].astype(float))]
    if r.empty:
        return None
    idx = r.groupby("layer")["mean"].idxmax()
    return r.loc[idx].set_index("layer")


def claim_c5(inp: Inputs, model: str = CONTRASTIVE) -> Claim:
    rows = final_rows(inp.probes, model)
    curves: dict[str, Any] = {}
    if rows is not None:
        for task in GLOBAL_TASKS + LOCAL_TASKS:
            c = _layer_curve(rows, task)
            if c is not None and len(c) > 1:
                curves[task] = c
    best = {t: int(c["mean"].astype(float).idxmax()) for t, c in curves.items()}

    def compare(u: str, lu: int, lv: int, v: str) -> Comparison | None:
        if lv not in curves[u].index:
            return None
        a, b = curves[u].loc[lu], curves[u].loc[lv]
        return _summary_comparison(
            "C5",
            f"{u}: layer {lu} (best) vs layer {lv} (best for {v})",
            a,
            b,
            f"layer {lu} ({a['pooling']})",
            f"layer {lv} ({b['pooling']})",
        )

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
        f"probes_summary.csv: the {model} model's layer curves per task (best pooling per layer)",
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
    a_rows, b_rows = final_rows(inp.probes, CONTRASTIVE), final_rows(inp.probes, MASKED)
    comps = []
    for task in LOCAL_TASKS:
        a, b = best_row(a_rows, task, ["frame"]), best_row(b_rows, task, ["frame"])
        if a is not None and b is not None:
            c = _probe_comparison("Foil", task, a, b, CONTRASTIVE, MASKED)
            c.outcome = outcome(c.ci_low, c.ci_high, threshold=-MARGIN)
            comps.append(c)
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
        "probes_summary.csv: frame-token probes of the contrastive and masked models; "
        "pretrain_runs.json: the runs' compute",
        RULES["Foil"],
        verdict,
        reason,
        comps,
        [note],
    )


def claim_e(inp: Inputs, model: str = CONTRASTIVE) -> Claim:
    rows = {m: final_rows(inp.probes, m) for m in (model, RANDOM, LOGMEL)}
    comps, beaten, probed = [], [], 0
    for task in GLOBAL_TASKS + LOCAL_TASKS:
        a = best_row(rows[model], task)
        if a is None:
            continue
        probed += 1
        wins = 0
        for base in (RANDOM, LOGMEL):
            b = best_row(rows[base], task)
            if b is None:
                continue
            # the interval of (a - b) from the intervals' ends: above zero iff they do not
            # overlap with a on top
            lo = float(a["ci_low"]) - float(b["ci_high"])
            hi = float(a["ci_high"]) - float(b["ci_low"])
            c = Comparison(
                "E",
                f"{task} vs {base}",
                f"{model} (layer {int(a['layer'])} {a['pooling']})",
                f"{base} (layer {int(b['layer'])} {b['pooling']})",
                float(a["mean"]),
                float(b["mean"]),
                float(a["mean"]) - float(b["mean"]),
                lo,
                hi,
                "non-overlap of the two 95 % bootstrap intervals",
            )
            comps.append(c)
            wins += c.outcome == "for"
        if wins == 2:
            beaten.append(task)
    n = len(beaten)
    counts = f"beats both baselines on {n} of {probed} tasks" + (
        f" ({', '.join(beaten)})" if beaten else ""
    )
    unprobed = len(GLOBAL_TASKS + LOCAL_TASKS) - probed
    if n >= EMERGENCE_MIN_TASKS:
        verdict = "holds"
    elif n + unprobed < EMERGENCE_MIN_TASKS:  # even the missing tasks could not lift it
        verdict = "does not hold"
    else:
        verdict = "inconclusive"
    return Claim(
        _claim_id("E", model),
        STATEMENTS["E"],
        f"probes_summary.csv: {model} vs random-init and log-mel, every task at its best "
        "layer and pooling",
        RULES["E"],
        verdict,
        counts if probed else "no results",
        comps,
    )


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
    return Ledger(claims, dict(inputs.sources))


def build_ledger(results_dir: str | Path, analyses_dir: str | Path | None = None) -> Ledger:
    """Read the results folder (:func:`load_inputs`) and judge every claim."""
    return evaluate(load_inputs(results_dir, analyses_dir))
