"""Registered mtp components, one per file."""
