"""Throughput benchmark: the project's training path against an fp32 eager reference.

``python -m vit1d.cli.bench`` (or ``make bench``) measures, in one run on one machine
(:mod:`vit1d.bench.training`):

* **training** views/s (forward + NT-Xent + backward + AdamW on the paper's ViT-1D) of
  - the *reference*: fp32, explicit attention, eager, no autocast;
  - the *project's default path*: the precision and attention path :mod:`vit1d.models.device`
    chooses at run time (bf16 with explicit attention on CPUs with native bf16, fp32 with
    fused attention elsewhere; ``torch.compile`` with ``--compile``);
* **inference** x real time: waveform -> :class:`vit1d.LogMel` -> ViT-1D, 4 s clips, with the
  same two settings.

and, in the whole suite (:func:`run_suite`, what ``make bench`` and the book's appendix run):

* **scaling**: training views/s of the project's path against batch size and sequence length,
  with the activation memory a step saves for its backward pass (and peak GPU memory);
* **profile**: where a training step's time goes, by category and top operators
  (:func:`vit1d.bench.timing.step_breakdown`);
* **training variants** (CPU): fp32 eager and fused, autocast bf16 (compiled with
  ``--compile``) and pure bf16 with fp32 master weights, each as a ratio to fp32 eager;
* **probe fitting**: the stacked probes of :class:`vit1d.probing.linear.LinearProbes` (every layer,
  pooling and seed fitted at once) against the same probes fitted one at a time;
* **corpus rendering** x real time of a tiny corpus (when the ``corpus`` extra is installed).

(the last two in :mod:`vit1d.bench.tasks`; timing in alternation and the profiles in
:mod:`vit1d.bench.timing`; on a GPU, what bounds a step in :mod:`vit1d.bench.gpu`, which
``scripts/gpu_check.py`` runs). :mod:`vit1d.bench.suite` runs them all and
prints the tables; ``vit1d bench`` is :mod:`vit1d.cli.bench`.

It writes ``bench.json`` (figures, ratios, CPU model and its AVX2 / AVX-512 / AMX flags,
threads, torch version) and prints tables. Ratios, never absolute timings, are what targets
are checked against, since the reference runs in the same process on the same CPU.
"""
