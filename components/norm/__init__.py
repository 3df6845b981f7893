"""Registered norm components, one per file."""
