"""Registered tokenizer components, one per file."""
