"""Registered attention components, one per file."""
