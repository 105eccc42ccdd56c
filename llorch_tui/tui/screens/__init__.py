"""Screens (one per App mode) and modals."""
