"""UI-free core of the dashboard: data sources, snapshots, formatting, row builders. No textual imports."""
