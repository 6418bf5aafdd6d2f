"""Placeholder: filled in by the probe work."""
