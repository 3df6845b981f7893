"""`scale:`: derive a smaller variant of a config (a preset) by rules that keep its ratios.

    scale: {width: 0.125, depth: 0.1, experts: 1.0}

Applied last, to the merged layers and overrides, before validation. The rules (`RULES`):

- width scales the model width D, the head count H (and key/value heads), the low-rank
  latents (q_lora_rank, kv_lora_rank) and the FFN widths (dense, expert, first-k dense) by the
  same factor; per-head dims stay. So d_c / D, d'_c / D, H d_h / D, F / D and the RoPE /
  no-RoPE head dims d_R / d_h are kept.
- depth scales the layer count and the leading dense layers (first_k_dense).
- experts scales routed experts, experts per token and shared experts together: X / E and
  N_s / E are kept.

Each value is rounded to its multiple (at least one multiple when it was positive; 0, meaning
off or derived, stays 0). The rule and every derived number go to `Config.notes`; a rounded
ratio is flagged there with the factor actually applied.
"""

from __future__ import annotations

from typing import Any

from ablate.core.layers import ConfigError, Layers

FACTORS = ("width", "depth", "experts")
# dotted key -> (factor, multiple the scaled value is rounded to)
RULES: dict[str, tuple[str, int]] = {
    "model.dim": ("width", 16),
    "model.num_heads": ("width", 1),
    "model.attention.num_kv_heads": ("width", 1),
    "model.attention.q_lora_rank": ("width", 16),
    "model.attention.kv_lora_rank": ("width", 16),
    "model.ffn.hidden_dim": ("width", 16),
    "model.ffn.expert_dim": ("width", 16),
    "model.ffn.dense_hidden_dim": ("width", 16),
    "model.num_layers": ("depth", 1),
    "model.ffn.first_k_dense": ("depth", 1),
    "model.ffn.num_routed_experts": ("experts", 1),
    "model.ffn.topk": ("experts", 1),
    "model.ffn.num_shared_experts": ("experts", 1),
}


def _factors(section: Any, layers: Layers) -> dict[str, float]:
    src = layers.source_of("scale")
    if not isinstance(section, dict):
        raise ConfigError(src, "scale", f"expected a mapping of {', '.join(FACTORS)}")
    out = {}
    for k, v in section.items():
        if k not in FACTORS:
            raise ConfigError(src, f"scale.{k}", f"unknown factor (known: {', '.join(FACTORS)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise ConfigError(src, f"scale.{k}", f"must be a positive number, got {v!r}")
        out[k] = float(v)
    return out


def scaled_value(value: int, factor: float, multiple: int) -> int:
    """`value * factor` rounded to `multiple`, at least one multiple; 0 stays 0."""
    if value <= 0:
        return value
    return max(multiple, multiple * round(value * factor / multiple))


def apply_scale(data: dict, layers: Layers) -> tuple[dict, list[str]]:
    """Pop `scale:` from a merged raw config and scale the keys the rules name."""
    if "scale" not in data:
        return data, []
    factors = _factors(data.pop("scale"), layers)
    changes = []
    for key, (name, multiple) in RULES.items():
        if factors.get(name, 1.0) == 1.0:
            continue
        *path, leaf = key.split(".")
        node = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or not isinstance(node.get(leaf), int):
            continue  # not set in the config (a default, or another component's field)
        old = node[leaf]
        node[leaf] = new = scaled_value(old, factors[name], multiple)
        if old and new != old * factors[name]:
            changes.append(f"{key} {old} -> {new} (rounded: x{new / old:.4g})")
        elif new != old:
            changes.append(f"{key} {old} -> {new}")
    _keep_dense_below_depth(data, changes)
    rule = ", ".join(f"{k}={v:g}" for k, v in factors.items())
    return data, [f"scale {rule} (ablate.core.scale rules): " + "; ".join(changes)]


def _keep_dense_below_depth(data: dict, changes: list[str]) -> None:
    """Leading dense layers stay fewer than the layers (at least one MoE layer)."""
    model = data.get("model", {})
    ffn = model.get("ffn") if isinstance(model, dict) else None
    layers, dense = model.get("num_layers"), isinstance(ffn, dict) and ffn.get("first_k_dense")
    if isinstance(layers, int) and isinstance(dense, int) and dense >= layers > 1:
        ffn["first_k_dense"] = layers - 1
        changes.append(f"model.ffn.first_k_dense -> {layers - 1} (below model.num_layers)")
