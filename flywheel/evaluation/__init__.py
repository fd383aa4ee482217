"""Judging a model: metrics, the trivial and linear baselines, fairness across slices, performance estimated without labels."""
