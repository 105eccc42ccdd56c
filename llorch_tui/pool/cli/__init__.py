"""The `llorch-pool` command tree. `llorch pool ... --host H` reuses it, executing remotely."""
