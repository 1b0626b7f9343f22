"""The ledger's vocabulary: the claims' statements and rules, the thresholds they use, the
three verdicts and how a comparison's interval gives one (:func:`outcome`, :func:`majority`),
and the objects a claim is judged into (:class:`Comparison`, :class:`Claim`, :class:`Ledger`).
The rules are stated in :mod:`vit1d.ledger.claims`' docstring."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vit1d.core import atomic

#: Model names in the probe results.
CONTRASTIVE, MASKED, RANDOM, LOGMEL = "contrastive", "masked", "random-init", "logmel"


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


#: The committed reference checkpoint (:mod:`vit1d.studies.reference`), judged beside the build's.
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
