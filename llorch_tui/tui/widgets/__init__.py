"""Dashboard widgets: live tables, gauges, the event log pane."""
