"""The model x backend x pool test matrix: plan, engine, probes, reports. No UI here (the TUI and the
headless runner both consume the engine's events)."""
