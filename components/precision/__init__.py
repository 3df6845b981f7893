"""Registered precision components, one per file."""
