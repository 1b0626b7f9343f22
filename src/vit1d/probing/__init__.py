"""Linear probes on frozen features: task data, the two solvers, MIR metrics, tidy
results, per-item scores, paired bootstrap and the choice of a layer on validation."""
