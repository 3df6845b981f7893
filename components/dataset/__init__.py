"""Registered dataset components, one per file."""
