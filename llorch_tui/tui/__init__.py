"""The Textual dashboard. `core/` holds the UI-free data layer (sources, snapshots, row builders)."""
