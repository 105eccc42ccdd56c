"""The pool agent (`llorch-pool`): catalog, downloads, workers, probes. Stateless between calls."""
