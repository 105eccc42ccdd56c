"""Correctness against a reference: the versioned prompt/golden/perplexity suites, the dtype
tolerances, recording a model's fingerprint from a worker and certifying a worker against it.

Pure Python over the worker's HTTP API (no torch): the pool agent records fingerprints with it
and the matrix engine certifies cells with it.
"""
