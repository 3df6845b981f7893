"""Inference on trained trials: generation and speculative decoding."""
