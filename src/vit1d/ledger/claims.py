"""The claims ledger: each claim of the paper, the evidence it rests on, and a computed verdict.

Every verdict is computed here from the results files; nothing is typed by hand, so a
different result gives a different verdict (``notebooks/09_claims.ipynb`` shows the table,
``tests/test_claims.py`` feeds fabricated results for both outcomes of every claim).

**Inputs** (all in the build's results folder, ``<runs>/results``):

* ``probes_summary.csv`` (:mod:`vit1d.probing.results`): per model, checkpoint, task, layer, pooling
  and metric the mean over probe seeds with its 95 % bootstrap interval. Models by their
  ``model`` column: ``contrastive`` (the model trained in the build), ``masked`` (the
  equal-compute foil), ``random-init``, ``logmel``, and ``chance`` (the prior-only
  predictor). Both the valid and the test split: layers are chosen on valid. Emergence
  snapshots (``.../snapshots/step-N``) are left out: the claims are about the final model.
* ``probe_items/`` (:mod:`vit1d.probing.items`): every probe's per-item test scores (tagging: its
  per-clip predictions), for the paired intervals.
* ``analyses/`` (:mod:`vit1d.analysis.analyses` of the contrastive model; or ``attention/`` and
  ``ssm/``, the chapters' runs of one part each): ``onsets.csv`` and
  ``onsets_summary.csv`` (attention onsets, per clip), ``ssm.csv`` / ``ssm_summary.csv``
  (layer x dimension SSM scores, per window), ``novelty.csv`` / ``novelty_summary.csv``
  (chord changes from SSM novelty, per clip).
* ``pretrain_runs.json``: the run metadata of both pretraining runs (objective, steps, views
  per step, frames per view, training FLOPs per step), written by the masked-pretraining
  chapter.

**Comparisons.** A claim rests on comparisons ``a - b`` in the claimed direction (``a`` should
be higher), each with a 95 % interval of the difference:

* probe results (:mod:`vit1d.probing.compare`): each side at its layer and pooling chosen on the
  **validation** split, scored on the test split, primary metric per task
  (:data:`PRIMARY_METRIC`); the interval is a **paired** bootstrap over the test items both
  sides were scored on (and their seeds), from the per-item results ``probe_items/``
  (:mod:`vit1d.probing.items`, :mod:`vit1d.probing.paired`). Results without per-item files (written before
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

from pathlib import Path

from vit1d.ledger.analysis_claims import claim_c3, claim_c4, claim_c4b
from vit1d.ledger.evidence import Inputs, load_inputs
from vit1d.ledger.probing_claims import (
    claim_c1,
    claim_c2,
    claim_c5,
    claim_e,
    claim_foil,
    precision_table,
)
from vit1d.ledger.verdicts import REFERENCE, Ledger
from vit1d.probing.compare import (
    final_rows,
)

# ----------------------------------------------------------------------------------------
# Rules
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# The claims
# ----------------------------------------------------------------------------------------


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
