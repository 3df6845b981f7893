"""Shared building blocks for components: attention cores, cache update, RoPE/YaRN, gate
helpers, SwiGLU, balance statistics, the optimizer. Components import these, never each other.

Tensor names carry their shape as a suffix of single-letter dims (`x_BTD`, `ids_NX`, `kv_B1SK`).
The one legend for the whole project (engine, components, kernels) is the table in
docs/design.md#shapes; `tests/test_shapes_legend.py` checks every suffix against it.
"""
