"""Registered router components, one per file."""
