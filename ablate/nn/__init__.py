"""Shared building blocks for components: attention cores, cache update, RoPE/YaRN, gate
helpers, SwiGLU, balance statistics, the optimizer. Components import these, never each other."""
