"""`llorch`: the orchestrator CLI (pools over SSH, jobs, doctor). Entry point: llorch_tui.cli.main:main."""
