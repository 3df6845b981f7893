"""Registered ffn components, one per file."""
